//! The money simulation (issue 18): seeded operations against a real
//! credit-ledger process on SQLite and on PostgreSQL, every answer and
//! balance compared with the independent model (`billing_e2e::model`),
//! while the process is killed with SIGKILL and restarted at random
//! points. The short mode runs here; `just simulate SEED OPS` runs a long
//! one (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use billing_e2e::sim::{self, Plan, account_key};
use billing_e2e::{Service, ledger_with};
use billing_testkit::Backend;

/// Accounts running at once.
const ACCOUNTS: u64 = 4;

fn plan() -> Plan {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let operations = number("SIM_OPS", 2_000);
    Plan {
        seed: number("SIM_SEED", 20_261_129),
        operations,
        accounts: number("SIM_ACCOUNTS", ACCOUNTS),
        // About ten kills in a short run, one per ~2,500 operations in a long one.
        crash_every: number("SIM_CRASH_EVERY", (operations / 10).clamp(100, 2_500)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_simulation_on_sqlite() {
    simulate(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_simulation_on_postgres() {
    simulate(Backend::Postgres).await;
}

async fn simulate(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let plan = plan();
    let keys: Vec<String> = (0..plan.accounts).map(|i| account_key(i).1).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let extra = vec![("BILLING_API_KEYS", keys.join(","))];
    let first = ledger_with(&db, &addr, &extra);
    let socket = first.addr;
    let process: Arc<Mutex<Option<Service>>> = Arc::new(Mutex::new(Some(first)));
    let restart = {
        let process = process.clone();
        let url = db.url().to_owned();
        let extra = extra.clone();
        let addr = addr.clone();
        Arc::new(move || {
            let mut slot = process.lock().unwrap();
            if let Some(running) = slot.take() {
                running.kill();
            }
            let mut env = vec![("DATABASE_URL", url.clone()), ("LISTEN_ADDR", addr.clone())];
            env.extend(extra.iter().cloned());
            *slot = Some(Service::start("credit-ledger", &env));
        }) as Arc<dyn Fn() + Send + Sync>
    };
    let started = Instant::now();
    let report = sim::run(plan, socket, restart).await;
    let summary = report.summary(&plan, started.elapsed().as_secs_f64());
    println!("{backend:?}: {summary}");
    drop(process.lock().unwrap().take());
    db.drop_database().await;
    assert!(
        report.violations.is_empty(),
        "{backend:?}: {}",
        report.violations.join("\n")
    );
    assert!(
        report.operations >= plan.operations - plan.accounts,
        "{summary}"
    );
}
