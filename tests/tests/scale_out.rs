//! Scale out (issue 19), PostgreSQL:
//! - three credit-ledger processes on one database, two invoicing
//!   processes each given all three addresses (`LEDGER_URL` with three
//!   URLs). Under a finalize load
//!   every replica serves a share of the ApplyCredits calls (from each
//!   one's metrics), and one replica killed mid-load loses or doubles
//!   nothing: every invoice settles, its credits are the ledger's
//!   applications for it, once, and the audit is clean;
//! - two invoicing processes (instances `a` and `b`) on one database with
//!   500 invoices left mid-saga while the ledger was down: both resume a
//!   share, the ledger sees exactly one ApplyCredits per invoice, and the
//!   attempt log (`invoice_saga_runs`) shows no two runs of one invoice
//!   overlapping (no saga step ran twice at once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::Backend;

/// Invoices per phase.
const INVOICES: usize = 45;
/// Finalizes in flight at once.
const CONCURRENCY: usize = 9;

/// The sum of a process's metric lines that start with `prefix` and
/// contain `label`.
async fn metric(process: &Service, prefix: &str, label: &str) -> u64 {
    scrape(process)
        .await
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Reads invoicing's attempt log and checks that no run of an invoice
/// started while another instance's run of it was open (`others_open`,
/// counted under the invoice's row lock) and none is left open; returns
/// the invoices each instance completed.
async fn runs_never_overlap(url: &str) -> std::collections::BTreeMap<String, usize> {
    use sqlx::Row;
    let db = billing_db::Db::connect(url, &billing_db::DbOptions::default())
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT invoice, instance, ended_us, outcome, others_open FROM invoice_saga_runs",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut completed = std::collections::BTreeMap::new();
    for row in &rows {
        let invoice: String = row.get(0);
        let instance: String = row.get(1);
        let ended: Option<i64> = row.get(2);
        let outcome: Option<String> = row.get(3);
        let others_open: i64 = row.get(4);
        assert!(ended.is_some(), "a run of {invoice} was left open");
        assert_eq!(others_open, 0, "a run of {invoice} overlapped another");
        if outcome.as_deref() == Some("completed") {
            *completed.entry(instance).or_insert(0) += 1;
        }
    }
    db.close().await;
    completed
}

/// ApplyCredits calls a ledger process has handled (any outcome).
async fn apply_calls(process: &Service) -> u64 {
    metric(
        process,
        "grpc_server_handled_total{",
        "grpc_method=\"ApplyCredits\"",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ledger_replicas_share_the_apply_credits_calls_of_two_invoicing_replicas_on_postgres()
{
    let Some(dbs) = Databases::new(Backend::Postgres).await else {
        return;
    };
    let ledgers: Vec<Service> = (0..3).map(|_| ledger(&dbs.ledger, "127.0.0.1:0")).collect();
    let meter_process = meter(&dbs.meter);
    let urls: Vec<String> = ledgers
        .iter()
        .map(|l| format!("http://{}", l.addr))
        .collect();
    let invoicings: Vec<Service> = ["a", "b"]
        .iter()
        .map(|name| {
            invoicing_with(
                &dbs.invoicing,
                ledgers[0].addr,
                meter_process.addr,
                None,
                &[
                    ("LEDGER_URL", urls.join(",")),
                    ("INVOICING_INSTANCE", (*name).to_owned()),
                ],
            )
        })
        .collect();
    let clients: Vec<Clients> = invoicings
        .iter()
        .map(|i| Clients::new(ledgers[0].channel(), meter_process.channel(), i.channel()))
        .collect();
    let mut c = clients[0].clone();
    let (_, price) = metered_price(&mut c, "scale_calls", "3").await;

    // 1. The load spreads.
    let invoices = final_drafts(&mut c, (&price, "scale_calls"), "Spread", INVOICES, 600).await;
    let settled = finalize_all(CONCURRENCY, &clients, &invoices).await;
    let mut served = Vec::new();
    for process in &ledgers {
        served.push(apply_calls(process).await);
    }
    let total: u64 = served.iter().sum();
    assert!(total >= INVOICES as u64, "{served:?}");
    for n in &served {
        let share = *n as f64 / total as f64;
        assert!(
            (0.2..=0.5).contains(&share),
            "each replica serves 20–50 % of ApplyCredits: {served:?}"
        );
    }
    credits_match(&mut c, &invoices, &settled).await;
    println!("ApplyCredits per ledger replica: {served:?}");

    // 2. One replica dies mid-load: calls move to the others; nothing is
    // lost or doubled.
    let invoices = final_drafts(&mut c, (&price, "scale_calls"), "Killed", INVOICES, 600).await;
    let mut ledgers = ledgers;
    let victim = ledgers.remove(1);
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        victim.kill();
    });
    let settled = finalize_all(CONCURRENCY, &clients, &invoices).await;
    killer.await.unwrap();
    assert!(
        settled
            .iter()
            .all(|i| i.status() == inv::InvoiceStatus::Open
                || i.status() == inv::InvoiceStatus::Paid)
    );
    credits_match(&mut c, &invoices, &settled).await;

    drop(invoicings);
    drop(ledgers);
    drop(meter_process);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_invoicing_replicas_split_500_stuck_invoices_on_postgres() {
    const STUCK: usize = 500;
    let Some(dbs) = Databases::new(Backend::Postgres).await else {
        return;
    };
    let ledger_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ledger_addr = format!("127.0.0.1:{ledger_port}");
    let ledger_process = ledger(&dbs.ledger, &ledger_addr);
    let meter_process = meter(&dbs.meter);
    let first = invoicing_with(
        &dbs.invoicing,
        ledger_process.addr,
        meter_process.addr,
        None,
        // Its worker stays out of it: a resume while the ledger is down
        // would set a retry time on this process's test clock, which the
        // replicas' clocks (started anew) might never reach.
        &[
            ("INVOICING_INSTANCE", "a".to_owned()),
            ("INVOICING_WORKER_INTERVAL_SECONDS", "3600".to_owned()),
        ],
    );
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        first.channel(),
    );
    let (_, price) = metered_price(&mut c, "scale_calls", "3").await;
    let invoices = final_drafts(&mut c, (&price, "scale_calls"), "Stuck", STUCK, 600).await;

    // The ledger goes away: every finalize leaves its invoice `finalizing`.
    ledger_process.kill();
    for (_, id) in &invoices {
        let error = finalize(&mut c, id).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    }
    // Their retry comes 10 s after the failure on this process's test
    // clock; the replicas' clocks start at the real time they start, so
    // they start once that time has passed.
    let due = clock_now(&mut c).await + chrono::TimeDelta::seconds(11);
    drop(first);
    let wait = due - billing_server::clock::Clock::system().now();
    if let Ok(wait) = wait.to_std() {
        tokio::time::sleep(wait).await;
    }

    // The ledger is back; two replicas' workers tick every second.
    let ledger_process = ledger(&dbs.ledger, &ledger_addr);
    let replicas: Vec<Service> = ["a", "b"]
        .iter()
        .map(|name| {
            invoicing_with(
                &dbs.invoicing,
                ledger_process.addr,
                meter_process.addr,
                None,
                &[
                    ("INVOICING_INSTANCE", (*name).to_owned()),
                    ("INVOICING_WORKER_INTERVAL_SECONDS", "1".to_owned()),
                ],
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let resumed = loop {
        let mut resumed = Vec::new();
        for replica in &replicas {
            resumed.push(metric(replica, "invoicing_saga_recoveries_total", "finalize").await);
        }
        if resumed.iter().sum::<u64>() >= STUCK as u64 {
            break resumed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "resumed so far: {resumed:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("invoices resumed per invoicing replica: {resumed:?}");
    assert_eq!(resumed.iter().sum::<u64>(), STUCK as u64, "{resumed:?}");
    assert!(
        resumed.iter().all(|n| *n > 0),
        "each resumes a share: {resumed:?}"
    );
    // One ApplyCredits per invoice: no saga step ran twice.
    assert_eq!(apply_calls(&ledger_process).await, STUCK as u64);
    // No two runs of one invoice overlapped; each replica completed a share.
    let completed = runs_never_overlap(dbs.invoicing.url()).await;
    println!("invoices completed per instance (attempt log): {completed:?}");
    assert_eq!(completed.values().sum::<usize>(), STUCK, "{completed:?}");
    assert_eq!(completed.len(), 2, "each resumes a share: {completed:?}");
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        replicas[0].channel(),
    );
    let mut settled = Vec::new();
    for (_, id) in &invoices {
        settled.push(invoice(&mut c, id).await);
    }
    credits_match(&mut c, &invoices, &settled).await;
    drop(replicas);
    drop(ledger_process);
    drop(meter_process);
    dbs.drop_all().await;
}

/// The local ports of the established TCP connections to `port` on
/// loopback (Linux's /proc/net/tcp).
fn connections_to(port: u16) -> std::collections::BTreeSet<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            let remote_port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
            (remote_port == port && *state == "01").then(|| (*local).to_owned())
        })
        .collect()
}

/// A ledger whose connections age out after 1 s, closed 1 s later.
fn aged_ledger(db: &billing_db::testing::TestDatabase) -> Service {
    ledger_with(
        db,
        "127.0.0.1:0",
        &[
            ("GRPC_MAX_CONNECTION_AGE_SECONDS", "1".to_owned()),
            ("GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS", "1".to_owned()),
        ],
    )
}

/// The suite's own peer channel (`billing_server::peer`, what invoicing
/// calls the ledger and meter-ingest through) rides over connection
/// ageing: a call that races an aged connection's close is sent again, so
/// under a steady load of 8 concurrent callers none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_ride_over_connection_ageing() {
    let Some(db) = Backend::Sqlite.database().await else {
        return;
    };
    let process = aged_ledger(&db);
    let channel = billing_server::peer::channel(&format!("http://{}", process.addr)).unwrap();
    let until = std::time::Instant::now() + Duration::from_millis(4_500);
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let mut client = LedgerServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut calls = 0_u32;
                while std::time::Instant::now() < until {
                    client
                        .list_balance_alerts(authed(ledger::ListBalanceAlertsRequest::default()))
                        .await
                        .unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    let mut seen = std::collections::BTreeSet::new();
    while std::time::Instant::now() < until {
        seen.extend(connections_to(process.addr.port()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for caller in callers {
        calls += caller.await.unwrap();
    }
    assert!(calls > 100, "only {calls} calls");
    assert!(
        seen.len() >= 3,
        "one connection per second of age: {seen:?}"
    );
    drop(process);
    db.drop_database().await;
}

/// A server ages its connections out (`GRPC_MAX_CONNECTION_AGE_SECONDS`):
/// a client calling all along is moved to new connections, so behind an
/// L4 balancer it would land on new replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_aged_out_and_calls_go_on() {
    let Some(db) = Backend::Sqlite.database().await else {
        return;
    };
    let process = aged_ledger(&db);
    let mut client = LedgerServiceClient::new(process.channel());
    let mut seen = std::collections::BTreeSet::new();
    let mut resets = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4_500) {
        // Every call is answered across the server's GOAWAYs. A tonic
        // client keeps sending on an aged connection until the server
        // closes it after the grace, so a call can race that close and see
        // a reset (docs/operations.md): retried once, as a client should.
        let call = async |client: &mut LedgerServiceClient<tonic::transport::Channel>| {
            client
                .list_balance_alerts(authed(ledger::ListBalanceAlertsRequest::default()))
                .await
        };
        if let Err(status) = call(&mut client).await {
            assert_eq!(status.message(), "transport error", "{status:?}");
            resets += 1;
            call(&mut client).await.unwrap();
        }
        seen.extend(connections_to(process.addr.port()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 3,
        "one connection per second of age: {seen:?}"
    );
    assert!(
        resets <= seen.len(),
        "at most one reset per aged connection: {resets}"
    );
    drop(process);
    db.drop_database().await;
}
