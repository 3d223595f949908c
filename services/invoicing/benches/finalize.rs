//! Finalize benchmark: the three services in one process, talking gRPC on
//! loopback, on PostgreSQL and SQLite.
//!
//! `cargo bench -p invoicing --bench finalize` (or `just bench-finalize`).
//! 1,000 customers, each with a monthly subscription to 3 metered prices,
//! usage already ingested and 2 credit grants; the period closes into 1,000
//! drafts; then 16 clients finalize them all (each finalize re-reads the
//! usage of 3 meters, freezes the lines, applies credits in the ledger and
//! stores the result). Reports finalizes/s and p50/p99 latency.
//!
//! `BENCH_INVOICES` changes the number of subscriptions (default 1,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

/// The test harness: the three services in-process on one backend.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_server::time::to_proto;
use billing_testkit::bench::{ms, percentile};
use billing_testkit::fixtures::usd;
use billing_testkit::{Backend, Harness};
use chrono::{Months, TimeDelta};
use common::{KEY_A, Suite, t0};

const CLIENTS: usize = 16;
const SETUP_PARALLEL: usize = 16;

fn authed<T>(message: T) -> tonic::Request<T> {
    billing_testkit::authed(KEY_A, message)
}

/// One customer: subscription to the 3 prices, 2 grants. Returns its id.
async fn customer(s: &Suite, n: usize, prices: &[String]) -> String {
    let mut invoicing = s.invoicing.clone();
    let mut ledger = s.ledger.clone();
    let id = invoicing
        .create_customer(authed(pb::CreateCustomerRequest {
            external_id: format!("bench-{n}"),
            name: format!("Customer {n}"),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    invoicing
        .create_subscription(authed(pb::CreateSubscriptionRequest {
            customer: id.clone(),
            items: prices
                .iter()
                .map(|p| pb::SubscriptionItemInput { price: p.clone() })
                .collect(),
            billing_interval: pb::BillingInterval::Month.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    for (priority, value) in [(10, 500), (50, 100_000)] {
        ledger
            .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
                customer: id.clone(),
                name: "bench".into(),
                amount: usd(value),
                applicability_config: Some(ledger::ApplicabilityConfig {
                    scope: Some(ledger::ApplicabilityScope {
                        price_type: ledger::PriceType::Metered.into(),
                        prices: vec![],
                    }),
                }),
                priority: Some(priority),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    id
}

async fn bench(name: &str, backend: Backend, invoices: usize) {
    let Some(s) = Suite::start(backend).await else {
        eprintln!("{name} unavailable: skipped");
        return;
    };
    let setup = Instant::now();
    let mut prices = Vec::new();
    let mut event_names = Vec::new();
    for (i, unit) in ["0.5", "2.25", "10"].iter().enumerate() {
        let event_name = format!("bench_{i}");
        let meter_id = s
            .meter
            .clone()
            .create_meter(authed(meter::CreateMeterRequest {
                event_name: event_name.clone(),
                display_name: event_name.clone(),
                aggregation: meter::Aggregation::Sum.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .meter
            .unwrap()
            .id;
        let price = s
            .invoicing
            .clone()
            .create_price(authed(pb::CreatePriceRequest {
                currency: "usd".into(),
                meter: meter_id,
                billing_scheme: pb::BillingScheme::PerUnit.into(),
                unit_amount_decimal: (*unit).into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .price
            .unwrap()
            .id;
        prices.push(price);
        event_names.push(event_name);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let customers = Arc::new(tokio::sync::Mutex::new(vec![String::new(); invoices]));
    let workers: Vec<_> = (0..SETUP_PARALLEL)
        .map(|_| {
            let (next, customers, prices) = (next.clone(), customers.clone(), prices.clone());
            let s = &s;
            async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= invoices {
                        return;
                    }
                    let id = customer(s, n, &prices).await;
                    customers.lock().await[n] = id;
                }
            }
        })
        .collect();
    futures_util::future::join_all(workers).await;
    let customers = customers.lock().await.clone();

    // Usage: 3 events per customer, one per meter, 10 days into the period.
    s.clock.set(t0() + TimeDelta::days(10));
    let mut events = Vec::new();
    for (n, customer) in customers.iter().enumerate() {
        for (m, event_name) in event_names.iter().enumerate() {
            let mut payload = BTreeMap::new();
            payload.insert("customer".to_owned(), customer.clone());
            payload.insert("value".to_owned(), format!("{}.5", 100 + n % 50 + m));
            events.push(meter::MeterEvent {
                event_name: event_name.clone(),
                identifier: format!("e-{n}-{m}"),
                timestamp: Some(to_proto(s.clock.now())),
                payload,
            });
        }
    }
    for batch in events.chunks(1_000) {
        let response = s
            .meter
            .clone()
            .ingest_events(authed(meter::IngestEventsRequest {
                events: batch.to_vec(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.accepted as usize, batch.len());
    }

    // The period closes: 1,000 drafts.
    s.clock
        .set(t0().checked_add_months(Months::new(1)).unwrap());
    let mut closed = 0;
    while closed < invoices {
        let report = s.worker.tick().await;
        assert_eq!(report.failures, 0);
        if report.subscriptions_closed == 0 {
            break;
        }
        closed += report.subscriptions_closed;
    }
    let mut drafts = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .invoicing
            .clone()
            .list_invoices(authed(pb::ListInvoicesRequest {
                status: pb::InvoiceStatus::Draft.into(),
                page_size: 100,
                page_token: token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        drafts.extend(page.invoices.into_iter().map(|i| i.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(drafts.len(), invoices);
    let setup = setup.elapsed();

    let drafts = Arc::new(drafts);
    let next = Arc::new(AtomicUsize::new(0));
    let run = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (drafts, next) = (drafts.clone(), next.clone());
            let mut client = s.invoicing.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = drafts.get(n) else {
                        return latencies;
                    };
                    let call = Instant::now();
                    let invoice = client
                        .finalize_invoice(authed(pb::FinalizeInvoiceRequest {
                            id: id.clone(),
                            ..Default::default()
                        }))
                        .await
                        .unwrap()
                        .into_inner()
                        .invoice
                        .unwrap();
                    latencies.push(call.elapsed());
                    assert_ne!(invoice.status(), pb::InvoiceStatus::Draft);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    let elapsed = run.elapsed();
    latencies.sort();
    println!(
        "| {name} | {invoices} invoices × 3 lines, 2 grants each, {CLIENTS} clients | {:.0} finalizes/s ({:.2} s) | p50 {:.1} ms, p99 {:.1} ms | setup {:.0} s |",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        setup.as_secs_f64(),
    );

    s.stop().await;
}

#[tokio::main]
async fn main() {
    let invoices: usize = billing_testkit::bench::setting("BENCH_INVOICES", 1_000);
    println!("| backend | scenario | throughput | latency | |");
    println!("|---|---|---|---|---|");
    bench("PostgreSQL", Backend::Postgres, invoices).await;
    bench("SQLite", Backend::Sqlite, invoices).await;
}
