//! Ledger benchmark over gRPC on loopback, on PostgreSQL and SQLite.
//!
//! `cargo bench -p credit-ledger --bench ledger` (or `just bench-ledger`).
//! Scenarios:
//! 1. ApplyCredits throughput: 1,000 customers × 5 grants, 16 concurrent clients.
//! 2. ApplyCredits throughput: every call on one hot customer, 16 clients.
//! 3. GetCreditBalanceSummary p50/p99 for a customer with 100,000 balance
//!    transactions (it reads per-grant running balances, never the history).
//!
//! `BENCH_SECONDS` sets each throughput run's length (default 10).
//!
//! Built with the feature `bench-no-events` (`just bench-outbox`), it runs
//! instead the outbox comparison of issue 13: scenario 1 in `BENCH_SLICES`
//! slices of `BENCH_SECONDS` (defaults 20 and 2), the grants' events
//! switched on and off in turn (each pair's order alternating), in one
//! process on one database, so the machine's drift falls on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

use std::time::{Duration, Instant};

use billing_db::testing::TestDatabase;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::bench::{ms, percentile};
use billing_testkit::fixtures::usd;
use credit_ledger::{App, Config};
use tonic::transport::Channel;

const KEY: &str = "sk_bench";
const CUSTOMERS: usize = 1_000;
const GRANTS_PER_CUSTOMER: usize = 5;
const CLIENTS: usize = 16;
const HISTORY_ROWS: i64 = 100_000;
const SUMMARY_CALLS: usize = 2_000;

fn authed<T>(message: T) -> tonic::Request<T> {
    billing_testkit::authed(KEY, message)
}

struct Throughput {
    calls: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn grant(client: &mut LedgerServiceClient<Channel>, customer: &str, priority: u32) {
    client
        .create_credit_grant(authed(pb::CreateCreditGrantRequest {
            customer: customer.into(),
            name: "bench".into(),
            amount: usd(1_000_000_000_000),
            applicability_config: Some(pb::ApplicabilityConfig {
                scope: Some(pb::ApplicabilityScope {
                    price_type: pb::PriceType::Metered.into(),
                    prices: vec![],
                }),
            }),
            priority: Some(priority),
            ..Default::default()
        }))
        .await
        .unwrap();
}

/// Runs CLIENTS workers for `seconds`; `customer_of(worker, n)` picks each call's customer.
async fn apply_load(
    client: &LedgerServiceClient<Channel>,
    tag: &str,
    seconds: u64,
    customer_of: fn(usize, usize) -> String,
) -> Throughput {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let mut client = client.clone();
        let tag = tag.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let request = pb::ApplyCreditsRequest {
                    pool: Vec::new(),
                    customer: customer_of(worker, n),
                    invoice: format!("in_{tag}_{worker}_{n}"),
                    period_end: Some(billing_server::time::to_proto(chrono::Utc::now())),
                    lines: vec![
                        pb::InvoiceLine {
                            invoice_line_item: "il_1".into(),
                            price: "price_a".into(),
                            amount: usd(1_250),
                        },
                        pb::InvoiceLine {
                            invoice_line_item: "il_2".into(),
                            price: "price_b".into(),
                            amount: usd(799),
                        },
                    ],
                    preview: false,
                };
                let call = Instant::now();
                client.apply_credits(authed(request)).await.unwrap();
                latencies.push(call.elapsed());
                n += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Throughput {
        calls: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn spread_customer(worker: usize, n: usize) -> String {
    format!("cus_{}", (worker * 7_919 + n * 104_729) % CUSTOMERS)
}

fn hot_customer(_worker: usize, _n: usize) -> String {
    "cus_hot".to_owned()
}

async fn bench(name: &str, db: TestDatabase, seconds: u64) {
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
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = LedgerServiceClient::new(channel);

    // Set-up: 1,000 customers × 5 grants, and the hot customer.
    let setup = Instant::now();
    let mut creators = Vec::new();
    for worker in 0..CLIENTS {
        let mut client = client.clone();
        creators.push(tokio::spawn(async move {
            for customer in (worker..CUSTOMERS).step_by(CLIENTS) {
                for g in 0..GRANTS_PER_CUSTOMER {
                    grant(&mut client, &format!("cus_{customer}"), (g * 10) as u32).await;
                }
            }
        }));
    }
    for creator in creators {
        creator.await.unwrap();
    }
    for g in 0..GRANTS_PER_CUSTOMER {
        grant(&mut client.clone(), "cus_hot", (g * 10) as u32).await;
    }
    eprintln!(
        "[{name}] set-up: {} grants in {:?}",
        CUSTOMERS * GRANTS_PER_CUSTOMER + 5,
        setup.elapsed()
    );

    if cfg!(feature = "bench-no-events") {
        outbox_slices(name, &client, seconds).await;
    } else {
        scenarios(name, &client, &pool, seconds).await;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    db.drop_database().await;
}

/// Scenarios 1–3 (the module's doc) on a set-up ledger.
async fn scenarios(
    name: &str,
    client: &LedgerServiceClient<Channel>,
    pool: &sqlx::AnyPool,
    seconds: u64,
) {
    let spread = apply_load(client, "spread", seconds, spread_customer).await;
    let hot = apply_load(client, "hot", seconds, hot_customer).await;

    // A customer with 100,000 transactions: 5 grants, then history rows
    // bulk-inserted (the summary never reads them, which is the point).
    for g in 0..GRANTS_PER_CUSTOMER {
        grant(&mut client.clone(), "cus_history", (g * 10) as u32).await;
    }
    let grant_id: String = sqlx::query_scalar(
        "SELECT id FROM credit_grants WHERE account = 'acct_bench' AND customer = 'cus_history' LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {HISTORY_ROWS}) \
         INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, direction, kind, amount, \
         invoice, invoice_line_item, effective_at_us, created_us) \
         SELECT 'acct_bench', 'cbtxn_hist_' || n, 'cus_history', '{grant_id}', 'debit', 'credits_applied', 1, \
         'in_hist_' || n, 'il_1', n, n FROM seq"
    )))
    .execute(pool)
    .await
    .unwrap();
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM credit_balance_transactions WHERE account = 'acct_bench' AND customer = 'cus_history'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let mut summary_client = client.clone();
    let mut latencies = Vec::with_capacity(SUMMARY_CALLS);
    for _ in 0..SUMMARY_CALLS {
        let call = Instant::now();
        summary_client
            .get_credit_balance_summary(authed(pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: "cus_history".into(),
                filter: None,
                unbilled_lines: Vec::new(),
            }))
            .await
            .unwrap();
        latencies.push(call.elapsed());
    }
    latencies.sort();

    println!(
        "| {name} | ApplyCredits, 1,000 customers × 5 grants, {CLIENTS} clients | {:.0}/s ({} calls) | p50 {:.2} ms, p99 {:.2} ms |",
        spread.per_second,
        spread.calls,
        ms(spread.p50),
        ms(spread.p99)
    );
    println!(
        "| {name} | ApplyCredits, one hot customer, {CLIENTS} clients | {:.0}/s ({} calls) | p50 {:.2} ms, p99 {:.2} ms |",
        hot.per_second,
        hot.calls,
        ms(hot.p50),
        ms(hot.p99)
    );
    println!(
        "| {name} | GetCreditBalanceSummary, {count} transactions, 1 client | {SUMMARY_CALLS} calls | p50 {:.3} ms, p99 {:.3} ms |",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
}

/// Switches the grants' events (only a build with `bench-no-events` can).
#[cfg(feature = "bench-no-events")]
fn write_grant_events(on: bool) {
    credit_ledger::bench::write_grant_events(on);
}

#[cfg(not(feature = "bench-no-events"))]
fn write_grant_events(_on: bool) {
    panic!("the outbox comparison needs the feature bench-no-events");
}

/// Scenario 1 in slices, the grants' events on and off in turn; prints
/// each pair's ratio and the totals.
async fn outbox_slices(name: &str, client: &LedgerServiceClient<Channel>, seconds: u64) {
    let slices = billing_testkit::bench::setting("BENCH_SLICES", 20_usize);
    let mut calls = [0_usize; 2];
    let mut spent = [0.0_f64; 2];
    let mut ratios = Vec::new();
    for pair in 0..slices / 2 {
        let mut rate = [0.0_f64; 2];
        // Alternate which side goes first, so neither always follows the other.
        for turn in 0..2 {
            let side = (pair + turn) % 2;
            write_grant_events(side == 0);
            let began = Instant::now();
            let run = apply_load(
                client,
                &format!("ab{pair}_{side}"),
                seconds,
                spread_customer,
            )
            .await;
            calls[side] += run.calls;
            spent[side] += began.elapsed().as_secs_f64();
            rate[side] = run.per_second;
        }
        ratios.push(rate[0] / rate[1]);
        println!(
            "| {name} | pair {pair} | with {:.0}/s | without {:.0}/s | {:.1} % |",
            rate[0],
            rate[1],
            100.0 * rate[0] / rate[1]
        );
    }
    write_grant_events(true);
    ratios.sort_by(f64::total_cmp);
    let median = match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    };
    let (with, without) = (calls[0] as f64 / spent[0], calls[1] as f64 / spent[1]);
    println!(
        "| {name} | ApplyCredits, 1,000 customers × 5 grants, {CLIENTS} clients, {} slices of {seconds} s | with the outbox {with:.0}/s | without {without:.0}/s | {:.1} % (median of pairs {:.1} %) |",
        2 * (slices / 2),
        100.0 * with / without,
        100.0 * median
    );
}

#[tokio::main]
async fn main() {
    let seconds: u64 = billing_testkit::bench::setting(
        "BENCH_SECONDS",
        if cfg!(feature = "bench-no-events") {
            2
        } else {
            10
        },
    );
    println!("| backend | scenario | throughput | latency |");
    println!("|---|---|---|---|");
    match TestDatabase::postgres().await {
        Some(db) => bench("PostgreSQL", db, seconds).await,
        None => eprintln!("PostgreSQL unavailable: skipped"),
    }
    bench("SQLite", TestDatabase::sqlite(), seconds).await;
}
