//! Export benchmark (issue 16): `billing ledger export` rows/s to a file on
//! PostgreSQL, against a same-run baseline: psql's `\copy (the same rows,
//! joined and ordered alike) TO` a CSV file.
//!
//! `cargo bench -p billing --bench export` (or `just bench-export`).
//! `BENCH_ROWS` transactions (default 1,000,000) of one grant are written
//! straight into the ledger's table, then `VACUUM ANALYZE`; the release
//! `billing` binary exports them from an in-process ledger on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

use std::time::Instant;

use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::Backend;
use billing_testkit::fixtures::usd;
use credit_ledger::{App, Config};

const KEY: &str = "sk_bench_export";

fn rows() -> i64 {
    billing_testkit::bench::setting("BENCH_ROWS", 1_000_000)
}

fn report(name: &str, rows: i64, seconds: f64, bytes: u64) {
    println!(
        "| {name} | {rows} | {seconds:.2} s | {:.0} | {:.1} MB |",
        rows as f64 / seconds,
        bytes as f64 / 1e6
    );
}

#[tokio::main]
async fn main() {
    let Some(db) = Backend::Postgres.database().await else {
        eprintln!("PostgreSQL unavailable: skipped");
        return;
    };
    let mut keys = ApiKeys::default();
    keys.insert_plain(KEY, "acct_bench", &[Scope::ApplyCredits]);
    let mut config = Config::new(db.url(), "127.0.0.1:0".parse().unwrap());
    config.service.api_keys = keys;
    let app = App::build(config, Clock::system()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let pool = app.state().store().db().pool().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut client = LedgerServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let grant = client
        .create_credit_grant(billing_testkit::authed(
            KEY,
            pb::CreateCreditGrantRequest {
                customer: "cus_bench".into(),
                name: "bench".into(),
                amount: usd(1_000),
                applicability_config: billing_testkit::fixtures::metered(),
                cost_basis: Some(pb::CostBasis {
                    currency: "usd".into(),
                    unit_amount_decimal: "0.5".into(),
                }),
                effective_at: Some(billing_server::time::to_proto(
                    chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
                )),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
        .id;
    let count = rows();
    let start_us = 1_767_225_600_000_000_i64; // 2026-01-01
    sqlx::query(
        "INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, direction, kind, \
         amount, invoice, invoice_line_item, effective_at_us, created_us) \
         SELECT 'acct_bench', 'cbtxn_b' || CAST(n AS TEXT), 'cus_bench', $1, \
         CASE WHEN n % 2 = 0 THEN 'debit' ELSE 'credit' END, \
         CASE WHEN n % 2 = 0 THEN 'credits_applied' ELSE 'credits_granted' END, \
         1 + n % 7, CASE WHEN n % 2 = 0 THEN 'in_' || CAST(n AS TEXT) END, \
         CASE WHEN n % 2 = 0 THEN 'il_' || CAST(n AS TEXT) END, \
         $2 + n * 1000000, $2 + n * 1000000 FROM generate_series(1, $3) AS n",
    )
    .bind(&grant)
    .bind(start_us)
    .bind(count)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    let dir = std::env::temp_dir().join(format!("billing-bench-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (from, to) = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");

    println!(
        "| export of {count} transactions to a file (PostgreSQL) | rows | time | rows/s | file |"
    );
    println!("|---|---|---|---|---|");
    for format in ["csv", "jsonl"] {
        let file = dir.join(format!("export.{format}"));
        let began = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_billing"))
            .args([
                "ledger", "export", "--format", format, "--from", from, "--to", to,
            ])
            .arg("--output")
            .arg(&file)
            .env("LEDGER_URL", format!("http://{addr}"))
            .env("BILLING_API_KEY", KEY)
            .status()
            .unwrap();
        let seconds = began.elapsed().as_secs_f64();
        assert!(status.success());
        let bytes = std::fs::metadata(&file).unwrap().len();
        report(
            &format!("billing ledger export --format {format}"),
            count + 1,
            seconds,
            bytes,
        );
    }
    // Baseline: the same rows, joined and ordered alike, by psql's \copy.
    let file = dir.join("copy.csv");
    let copy = format!(
        "\\copy (SELECT t.id, t.effective_at_us, t.created_us, t.customer, t.credit_grant, g.category, \
         t.direction, t.kind, g.asset, t.amount, t.invoice, t.invoice_line_item, g.cost_basis \
         FROM credit_balance_transactions t JOIN credit_grants g ON g.account = t.account \
         AND g.id = t.credit_grant WHERE t.account = 'acct_bench' ORDER BY t.effective_at_us, t.id) \
         TO '{}' WITH (FORMAT csv, HEADER)",
        file.display()
    );
    let began = Instant::now();
    let status = std::process::Command::new("psql")
        .args(["-q", db.url(), "-c", &copy])
        .status()
        .unwrap();
    let seconds = began.elapsed().as_secs_f64();
    assert!(status.success());
    let bytes = std::fs::metadata(&file).unwrap().len();
    report(
        "baseline: psql \\copy (… ORDER BY …) TO file CSV",
        count + 1,
        seconds,
        bytes,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    db.drop_database().await;
}
