//! Real-time benchmark (issue 15): CheckAccess and GetCustomerBalance
//! throughput and latency through the three services on PostgreSQL.
//!
//! `cargo bench -p invoicing --bench realtime` (or `just bench-realtime`).
//! `BENCH_CUSTOMERS` customers (default 20), each subscribed to 10 metered
//! prices (one per meter, overage BLOCK) with a grant, and 30 days of usage
//! on every meter (one event per meter and hour: 7,200 events a customer);
//! then `VACUUM ANALYZE`, as autovacuum would. 16 clients call each RPC for
//! `BENCH_SECONDS` (default 10) over the customers in turn:
//! GetCustomerBalance, CheckAccess, and CheckAccess with a 1¢ reservation
//! (each hold released right after; only the check is timed). The same
//! run measures `pgbench -S -c 16 -j 2` (select-only) on a scale-10
//! database of the same server as the baseline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

/// The test harness: the three services in-process on one backend.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_server::time::to_proto;
use billing_testkit::bench::{ms, percentile};
use billing_testkit::fixtures::{metered, usd};
use billing_testkit::{Backend, Harness};
use chrono::TimeDelta;
use common::{KEY_A, Suite, t0};

const CLIENTS: usize = 16;
const METERS: usize = 10;
const DAYS: i64 = 30;

fn authed<T>(message: T) -> tonic::Request<T> {
    billing_testkit::authed(KEY_A, message)
}

/// 16 clients call `call(client, n)` for `seconds`; returns calls/s, p50, p99.
async fn run<F, Fut>(seconds: u64, call: F) -> (f64, Duration, Duration)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    call(client, n).await;
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    (
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    )
}

async fn setup(s: &Suite, customers: usize) -> (Vec<String>, Vec<String>) {
    let mut meters = Vec::new();
    let mut prices = Vec::new();
    for m in 0..METERS {
        let event_name = format!("rt_{m}");
        let meter_id = s.meter(&event_name).await;
        prices.push(s.per_unit_price(&meter_id, "0.01").await);
        meters.push(meter_id);
    }
    let mut ids = Vec::new();
    for n in 0..customers {
        let id = s.customer(&format!("Realtime {n}")).await;
        s.invoicing
            .clone()
            .create_subscription(authed(pb::CreateSubscriptionRequest {
                customer: id.clone(),
                items: prices
                    .iter()
                    .map(|p| pb::SubscriptionItemInput { price: p.clone() })
                    .collect(),
                billing_interval: pb::BillingInterval::Month.into(),
                overage: Some(pb::OveragePolicy {
                    mode: pb::OverageMode::Block.into(),
                    limit: None,
                }),
                ..Default::default()
            }))
            .await
            .unwrap();
        s.grant(ledger::CreateCreditGrantRequest {
            customer: id.clone(),
            name: "bench".into(),
            amount: usd(100_000_000),
            applicability_config: metered(),
            ..Default::default()
        })
        .await;
        ids.push(id);
    }
    // 30 days of usage: one event per meter and hour, per customer.
    s.clock.set(t0() + TimeDelta::days(DAYS));
    for (n, customer) in ids.iter().enumerate() {
        let mut events = Vec::new();
        for hour in 0..DAYS * 24 {
            for m in 0..METERS {
                let mut payload = BTreeMap::new();
                payload.insert("customer".to_owned(), customer.clone());
                payload.insert("value".to_owned(), format!("{}", 1 + (hour + m as i64) % 7));
                events.push(meter::MeterEvent {
                    event_name: format!("rt_{m}"),
                    identifier: format!("rt-{n}-{hour}-{m}"),
                    timestamp: Some(to_proto(t0() + TimeDelta::hours(hour))),
                    payload,
                });
            }
        }
        for batch in events.chunks(1_000) {
            let accepted = s
                .meter
                .clone()
                .ingest_events(authed(meter::IngestEventsRequest {
                    events: batch.to_vec(),
                }))
                .await
                .unwrap()
                .into_inner()
                .accepted;
            assert_eq!(accepted as usize, batch.len());
        }
    }
    for url in s.database_urls() {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    }
    (ids, meters)
}

#[tokio::main]
async fn main() {
    let customers: usize = billing_testkit::bench::setting("BENCH_CUSTOMERS", 20);
    let seconds = billing_testkit::bench::setting("BENCH_SECONDS", 10);
    let Some(s) = Suite::start(Backend::Postgres).await else {
        eprintln!("PostgreSQL unavailable: skipped");
        return;
    };
    let began = Instant::now();
    let (ids, meters) = setup(&s, customers).await;
    let ids = Arc::new(ids);
    let meters = Arc::new(meters);
    println!(
        "setup: {customers} customers × {METERS} meters × {DAYS} days of hourly usage in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    println!("| RPC (16 clients, PostgreSQL) | calls/s | p50 | p99 |");
    println!("|---|---|---|---|");
    let report = |name: &str, (rate, p50, p99): (f64, Duration, Duration)| {
        println!(
            "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
            ms(p50),
            ms(p99)
        );
    };

    let invoicing = s.invoicing.clone();
    let balance = {
        let (ids, invoicing) = (ids.clone(), invoicing.clone());
        move |_client: usize, n: usize| {
            let (ids, mut invoicing) = (ids.clone(), invoicing.clone());
            async move {
                let customer = ids[n % ids.len()].clone();
                let found = invoicing
                    .get_customer_balance(authed(pb::GetCustomerBalanceRequest { customer }))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(found.balances.len(), 1);
            }
        }
    };
    report("GetCustomerBalance", run(seconds, balance).await);

    let check = {
        let (ids, meters, invoicing) = (ids.clone(), meters.clone(), invoicing.clone());
        move |_client: usize, n: usize| {
            let (ids, meters, mut invoicing) = (ids.clone(), meters.clone(), invoicing.clone());
            async move {
                let answer = invoicing
                    .check_access(authed(pb::CheckAccessRequest {
                        customer: ids[n % ids.len()].clone(),
                        meter: meters[n % METERS].clone(),
                        ..Default::default()
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(answer.allowed);
            }
        }
    };
    report("CheckAccess", run(seconds, check).await);

    let ledger_client = s.ledger.clone();
    let reserve = {
        let (ids, meters, invoicing) = (ids.clone(), meters.clone(), invoicing.clone());
        move |_client: usize, n: usize| {
            let (ids, meters, mut invoicing, mut ledger_client) = (
                ids.clone(),
                meters.clone(),
                invoicing.clone(),
                ledger_client.clone(),
            );
            async move {
                let answer = invoicing
                    .check_access(authed(pb::CheckAccessRequest {
                        request_id: format!("bench-{n}"),
                        customer: ids[n % ids.len()].clone(),
                        meter: meters[n % METERS].clone(),
                        reserve: usd(1),
                        hold_timeout_seconds: 60,
                        ..Default::default()
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(answer.allowed && !answer.hold.is_empty());
                // Released outside the timed call would need a second
                // clock; the release is cheap and counted.
                ledger_client
                    .release_credit_hold(authed(ledger::ReleaseCreditHoldRequest {
                        id: answer.hold,
                    }))
                    .await
                    .unwrap();
            }
        }
    };
    report(
        "CheckAccess with a 1¢ reservation, then ReleaseCreditHold",
        run(seconds, reserve).await,
    );
    s.stop().await;
    match billing_testkit::bench::pgbench(&["-S"], seconds).await {
        Some(line) => println!("baseline, pgbench -S -c 16 -j 2 (scale 10): {line}"),
        None => println!("baseline: pgbench unavailable"),
    }
}
