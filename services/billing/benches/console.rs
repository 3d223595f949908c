//! Console page latency (issue 17): a customer with 100 credit grants and
//! 1,000 balance transactions on PostgreSQL, the release `billing up`
//! (services and console in one process, gRPC on loopback), one operator
//! loading each page in turn. Target: p99 < 100 ms per page.
//!
//! `cargo bench -p billing --bench console` (or `just bench-console`).
//! Same-run baseline: the customer page's longest chain of upstream reads
//! made directly over gRPC (ten pages of 100 balance transactions, which the
//! burn-down chart needs), so the console's own share is visible.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

#[path = "../tests/common/seed.rs"]
mod seed;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use billing_proto::invoicing::v1 as inv;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::bench::{ms, percentile};
use billing_testkit::fixtures::{metered, usd};
use billing_testkit::http::{request, sign_in};
use billing_testkit::{TestDatabase, authed};
use seed::channel;

const KEY: &str = "sk_bench_console_key";
const GRANTS: usize = 100;
const DEBITS: usize = 900;
const SAMPLES: usize = 300;
const WARM_UP: usize = 20;

#[tokio::main]
async fn main() {
    let mut databases = Vec::new();
    let mut env = BTreeMap::new();
    for service in ["LEDGER", "METER", "INVOICING", "NOTIFIER"] {
        let Some(db) = TestDatabase::postgres().await else {
            eprintln!("PostgreSQL unavailable: skipped");
            return;
        };
        env.insert(format!("{service}_DATABASE_URL"), db.url().to_owned());
        databases.push(db);
    }
    let data_dir = std::env::temp_dir().join(format!("bench-console-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args(["up", "--data-dir"])
        .arg(&data_dir)
        .args([
            "--ledger-addr",
            "127.0.0.1:0",
            "--meter-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--invoicing-addr",
            "127.0.0.1:0",
            "--notifier-addr",
            "127.0.0.1:0",
        ])
        .args(["--console-addr", "127.0.0.1:0"])
        .env("BILLING_DEV_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .envs(&env)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addrs = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((name, addr)) = line.split_once(" listening on ") {
            addrs.insert(name.to_owned(), addr.trim().to_owned());
        }
        if addrs.len() == 5 {
            break;
        }
    }
    let seeded = seed(&addrs).await;
    let console = &addrs["console"];
    let cookie = sign_in(console, KEY).await.unwrap().expect("signed in");

    println!(
        "\nConsole pages, one operator, {SAMPLES} loads each after {WARM_UP} (PostgreSQL; {GRANTS} grants, {} transactions)",
        GRANTS + DEBITS + seeded.applied
    );
    println!("| page | p50 | p99 | max | bytes |");
    println!("|---|---|---|---|---|");
    for (name, path) in [
        (
            "customer (grants, chart, invoices)",
            format!("/customers/{}", seeded.customer),
        ),
        ("customers list", "/customers".to_owned()),
        ("customer search", "/customers?q=bench".to_owned()),
        (
            "new credit grant form",
            format!("/customers/{}/grants/new", seeded.customer),
        ),
        (
            "grant (its transactions)",
            format!("/grants/{}", seeded.grant),
        ),
        ("invoice", format!("/invoices/{}", seeded.invoice)),
    ] {
        let mut latencies = Vec::new();
        let mut bytes = 0;
        for i in 0..SAMPLES + WARM_UP {
            let start = Instant::now();
            let answer = request(console, "GET", &path, &cookie, "").await.unwrap();
            let took = start.elapsed();
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            bytes = answer.body.len();
            if i >= WARM_UP {
                latencies.push(took);
            }
        }
        report(name, &mut latencies, bytes);
    }
    // Baseline: the chart's chain of reads, straight to the ledger.
    let mut ledger = LedgerServiceClient::new(channel(&addrs["credit-ledger"]).await);
    let mut latencies = Vec::new();
    for i in 0..SAMPLES + WARM_UP {
        let start = Instant::now();
        let mut page_token = String::new();
        loop {
            let page = ledger
                .list_credit_balance_transactions(authed(
                    KEY,
                    ledger::ListCreditBalanceTransactionsRequest {
                        customer: seeded.customer.clone(),
                        page_size: 100,
                        page_token,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if i >= WARM_UP {
            latencies.push(start.elapsed());
        }
    }
    report(
        "baseline: 10 × ListCreditBalanceTransactions(100) over gRPC",
        &mut latencies,
        0,
    );

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    for db in databases {
        db.drop_database().await;
    }
}

fn report(name: &str, latencies: &mut [Duration], bytes: usize) {
    latencies.sort();
    println!(
        "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {bytes} |",
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99)),
        ms(*latencies.last().unwrap()),
    );
}

struct Seeded {
    customer: String,
    grant: String,
    invoice: String,
    /// Transactions the finalize added.
    applied: usize,
}

/// One customer with GRANTS grants, DEBITS one-cent applications spread
/// over them, and a finalized invoice the grants paid.
async fn seed(addrs: &BTreeMap<String, String>) -> Seeded {
    let ledger = LedgerServiceClient::new(channel(&addrs["credit-ledger"]).await);
    let mut invoicing = InvoicingServiceClient::new(channel(&addrs["invoicing"]).await);
    let seed::Metered {
        customer,
        price,
        subscription,
    } = seed::metered_customer(
        &addrs["meter-ingest"],
        &addrs["invoicing"],
        KEY,
        "Bench Corp",
        "300",
    )
    .await;
    let now = chrono::Utc::now();
    let timestamp = prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap(),
    };
    let mut grant = String::new();
    for i in 0..GRANTS {
        grant = ledger
            .clone()
            .create_credit_grant(authed(
                KEY,
                ledger::CreateCreditGrantRequest {
                    customer: customer.clone(),
                    name: format!("grant {i}"),
                    amount: usd(1_000),
                    applicability_config: metered(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .credit_grant
            .unwrap()
            .id;
    }
    // One-cent applications, eight at a time: each takes from one grant.
    let mut pending = Vec::new();
    for i in 0..DEBITS {
        let mut ledger = ledger.clone();
        let customer = customer.clone();
        let price = price.clone();
        let period_end = timestamp;
        pending.push(tokio::spawn(async move {
            ledger
                .apply_credits(authed(
                    KEY,
                    ledger::ApplyCreditsRequest {
                        customer,
                        invoice: format!("in_bench_{i}"),
                        period_end: Some(period_end),
                        lines: vec![ledger::InvoiceLine {
                            invoice_line_item: "il_bench".into(),
                            price,
                            amount: usd(1),
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
        }));
        if pending.len() == 8 {
            for task in pending.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in pending {
        task.await.unwrap();
    }
    let invoice = invoicing
        .cancel_subscription(authed(
            KEY,
            inv::CancelSubscriptionRequest {
                id: subscription,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .final_invoice
        .unwrap()
        .id;
    let finalized = invoicing
        .finalize_invoice(authed(
            KEY,
            inv::FinalizeInvoiceRequest {
                id: invoice.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    let applied = finalized
        .lines
        .iter()
        .map(|l| l.credit_applications.len())
        .sum();
    Seeded {
        customer,
        grant,
        invoice,
        applied,
    }
}
