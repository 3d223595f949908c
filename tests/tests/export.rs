//! A million balance transactions exported through the real ledger process
//! and the real `billing ledger export` command, on both backends: the
//! server sends batches of at most 1,000 and neither process's peak memory
//! grows with the range (a million entries would be hundreds of megabytes
//! held at once); the CSV's sums reconcile with GetCreditLiabilityReport.
//! `EXPORT_ROWS` changes the count (default 1,000,000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use billing_e2e::scenario::usd;
use billing_e2e::*;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::{Backend, TestDatabase};
use chrono::{DateTime, TimeZone, Utc};

/// Peak resident memory of a process so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rows() -> i64 {
    std::env::var("EXPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// `count` transactions of one grant written straight into the ledger's
/// table (the API would take hours): kinds in turn, 1 to 7 cents each,
/// one second apart from `start()`.
async fn fill(db: &TestDatabase, grant: &str, count: i64) {
    let pool = billing_db::Db::connect(db.url(), &billing_db::DbOptions::default())
        .await
        .unwrap();
    let start_us = start().timestamp_micros();
    let numbers = match pool.backend() {
        billing_db::Backend::Postgres => "SELECT n FROM generate_series(1, $3) AS n",
        billing_db::Backend::Sqlite => {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $3) SELECT n FROM s"
        }
    };
    let sql = format!(
        "INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, direction, kind, \
         amount, invoice, invoice_line_item, effective_at_us, created_us) \
         SELECT 'acct_e2e', 'cbtxn_x' || CAST(n AS TEXT), 'cus_export', $1, \
         CASE WHEN n % 4 IN (0, 2) THEN 'debit' ELSE 'credit' END, \
         CASE n % 4 WHEN 0 THEN 'credits_applied' WHEN 1 THEN 'credits_granted' \
         WHEN 2 THEN 'credits_expired' ELSE 'credits_application_invoice_voided' END, \
         1 + n % 7, NULL, NULL, $2 + n * 1000000, $2 + n * 1000000 FROM ({numbers}) AS numbers"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(grant)
        .bind(start_us)
        .bind(count)
        .execute(pool.pool())
        .await
        .unwrap();
    // As autovacuum would after a bulk load (PostgreSQL plans on it).
    sqlx::query("ANALYZE").execute(pool.pool()).await.unwrap();
    pool.close().await;
}

async fn check(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let process = ledger(&db, "127.0.0.1:0");
    let mut client = LedgerServiceClient::new(process.channel());
    let grant = client
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: "cus_export".into(),
            name: "export".into(),
            amount: usd(1_000),
            applicability_config: Some(ledger::ApplicabilityConfig {
                scope: Some(ledger::ApplicabilityScope {
                    price_type: ledger::PriceType::Metered.into(),
                    prices: vec![],
                }),
            }),
            cost_basis: Some(ledger::CostBasis {
                currency: "usd".into(),
                unit_amount_decimal: "0.5".into(),
            }),
            effective_at: Some(billing_server::time::to_proto(start())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
        .id;
    let count = rows();
    let began = std::time::Instant::now();
    fill(&db, &grant, count).await;
    eprintln!("{backend:?}: filled {count} in {:?}", began.elapsed());
    let (from, to) = (start(), start() + chrono::TimeDelta::seconds(count + 1));
    let range = ledger::ExportLedgerEntriesRequest {
        from: Some(billing_server::time::to_proto(from)),
        to: Some(billing_server::time::to_proto(to)),
        customer: String::new(),
    };

    // The server sends batches of at most 1,000 (the first twenty looked at).
    let mut stream = client
        .export_ledger_entries(authed(range))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..20 {
        let batch = stream.message().await.unwrap().unwrap();
        assert_eq!(batch.entries.len(), 1_000);
    }
    drop(stream);

    // The command streams everything to a file; neither it nor the ledger
    // holds more than a batch or so at a time.
    let before = peak_kib(process.pid()).unwrap();
    let dir =
        std::env::temp_dir().join(format!("billing-export-{}-{backend:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{backend:?}.csv"));
    let mut child = std::process::Command::new(binary("billing"))
        .args(["ledger", "export", "--format", "csv"])
        .args(["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()])
        .arg("--output")
        .arg(&file)
        .env("LEDGER_URL", format!("http://{}", process.addr))
        .env("BILLING_API_KEY", ACCOUNT_KEY)
        .spawn()
        .unwrap();
    let mut cli_peak = 0;
    let status = loop {
        if let Some(peak) = peak_kib(child.id()) {
            cli_peak = cli_peak.max(peak);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    eprintln!("{backend:?}: command done at {:?}", began.elapsed());
    assert!(
        cli_peak < 64 * 1024,
        "billing ledger export peaked at {cli_peak} KiB"
    );
    let server_growth = peak_kib(process.pid()).unwrap().saturating_sub(before);
    assert!(
        server_growth < 64 * 1024,
        "the ledger's peak memory grew by {server_growth} KiB for {count} transactions"
    );

    // The file's sums by type against the report.
    let reader = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let mut lines = reader.lines();
    let header = lines.next().unwrap().unwrap();
    let columns: Vec<&str> = header.split(',').collect();
    let (kind, amount) = (
        columns.iter().position(|c| *c == "type").unwrap(),
        columns.iter().position(|c| *c == "amount").unwrap(),
    );
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let mut exported = 0;
    for line in lines {
        let line = line.unwrap();
        let fields: Vec<&str> = line.split(',').collect();
        *sums.entry(fields[kind].to_owned()).or_default() += fields[amount].parse::<i64>().unwrap();
        exported += 1;
    }
    assert_eq!(exported, count + 1);
    std::fs::remove_dir_all(&dir).unwrap();
    let report = client
        .get_credit_liability_report(authed(ledger::GetCreditLiabilityReportRequest {
            from: Some(billing_server::time::to_proto(from)),
            to: Some(billing_server::time::to_proto(to)),
        }))
        .await
        .unwrap()
        .into_inner();
    eprintln!("{backend:?}: report at {:?}", began.elapsed());
    assert_eq!(report.rows.len(), 1, "{:?}", report.rows);
    let row = &report.rows[0];
    let value = |amount: &Option<billing_proto::common::v1::Amount>| scenario::value_of(amount);
    let sum = |name: &str| sums.get(name).copied().unwrap_or_default();
    assert_eq!(value(&row.purchased), sum("credits_granted"));
    assert_eq!(
        value(&row.applied),
        sum("credits_applied") - sum("credits_application_invoice_voided")
    );
    assert_eq!(value(&row.expired), sum("credits_expired"));
    assert_eq!(value(&row.opening), 0);
    assert_eq!(
        value(&row.closing),
        value(&row.purchased) - value(&row.applied) - value(&row.expired)
    );
    drop(process);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_transactions_export_in_bounded_memory_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_transactions_export_in_bounded_memory_on_postgres() {
    check(Backend::Postgres).await;
}
