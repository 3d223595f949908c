//! Ingestion benchmark over gRPC on loopback, on PostgreSQL and SQLite.
//!
//! `cargo bench -p meter-ingest --bench ingest` (or `just bench-ingest`);
//! `BENCH_EVENTS`, `BENCH_SQLITE_EVENTS`, `BENCH_SKIP_POSTGRES` size the runs;
//! `BENCH_KEEP_DB` keeps the databases for inspection.
//! - Streams `BENCH_EVENTS` events (default 5,000,000) from 1,000 customers
//!   into 10 meters through `STREAMS` concurrent StreamEvents calls of
//!   1,000-event batches, dedupe on, and reports sustained events/s.
//! - Then GetUsage p50/p99 for 30-day windows over that data.
//! - On PostgreSQL, the raw `COPY` rate of the same rows into an equivalent
//!   table (same columns and indexes) on the same server, and the ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use billing_db::testing::TestDatabase;
use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use meter_ingest::{App, Config};
use tonic::transport::Channel;

const KEY: &str = "sk_bench";
const CUSTOMERS: u64 = 1_000;
const METERS: u64 = 10;
const BATCH: u64 = 1_000;
const STREAMS: u64 = 4;
const USAGE_QUERIES: usize = 2_000;

fn authed<T>(message: T) -> tonic::Request<T> {
    billing_testkit::authed(KEY, message)
}

/// Event `k` of the run: spread over customers and meters, timestamps
/// advancing through the last 30 days.
fn event(k: u64, total: u64, base: DateTime<Utc>) -> pb::MeterEvent {
    let span_us = TimeDelta::days(30).num_microseconds().unwrap() - 3_600_000_000;
    let offset = i64::try_from(u128::from(k) * span_us as u128 / u128::from(total.max(1))).unwrap();
    let mut payload = BTreeMap::new();
    payload.insert(
        "customer".to_owned(),
        format!("cus_{}", (k * 7_919) % CUSTOMERS),
    );
    payload.insert("value".to_owned(), format!("{}.{}", k % 100, k % 7));
    pb::MeterEvent {
        event_name: format!("meter_{}", (k / BATCH) % METERS),
        identifier: format!("evt_{k:010}"),
        timestamp: Some(billing_server::time::to_proto(
            base + TimeDelta::microseconds(offset),
        )),
        payload,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1_000.0
}

async fn stream_load(
    client: &MeterServiceClient<Channel>,
    total: u64,
    base: DateTime<Utc>,
) -> (u64, f64) {
    let started = Instant::now();
    let batches = total.div_ceil(BATCH);
    let mut streams = Vec::new();
    for stream in 0..STREAMS {
        let mut client = client.clone();
        streams.push(tokio::spawn(async move {
            let (sender, receiver) = tokio::sync::mpsc::channel::<pb::StreamEventsRequest>(4);
            tokio::spawn(async move {
                let mut batch = stream;
                while batch < batches {
                    let events = (batch * BATCH..((batch + 1) * BATCH).min(total))
                        .map(|k| event(k, total, base))
                        .collect();
                    if sender
                        .send(pb::StreamEventsRequest { events })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    batch += STREAMS;
                }
            });
            let mut acks = client
                .stream_events(authed(tokio_stream::wrappers::ReceiverStream::new(
                    receiver,
                )))
                .await
                .unwrap()
                .into_inner();
            let mut accepted = 0_u64;
            while let Some(ack) = acks.message().await.unwrap() {
                assert_eq!(ack.rejected, 0, "{:?}", ack.rejections.first());
                accepted += u64::try_from(ack.accepted).unwrap();
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for stream in streams {
        accepted += stream.await.unwrap();
    }
    (accepted, accepted as f64 / started.elapsed().as_secs_f64())
}

async fn copy_rate(url: &str, total: u64, base: DateTime<Utc>) -> f64 {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute(
        "CREATE TABLE copy_bench (series_id BIGINT NOT NULL, timestamp_us BIGINT NOT NULL, created_us BIGINT NOT NULL, \
         cancelled_us BIGINT, account TEXT COLLATE \"C\" NOT NULL, identifier TEXT COLLATE \"C\" NOT NULL, \
         value NUMERIC NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (account, identifier)); \
         CREATE INDEX copy_bench_series ON copy_bench (series_id, timestamp_us);",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY copy_bench (series_id, timestamp_us, created_us, account, identifier, value, payload) FROM STDIN",
        )
        .await
        .unwrap();
    let now_us = Utc::now().timestamp_micros();
    let mut buffer = String::with_capacity(1 << 20);
    for k in 0..total {
        let e = event(k, total, base);
        let ts = billing_server::time::from_proto(e.timestamp.as_ref().unwrap(), "t")
            .unwrap()
            .timestamp_micros();
        let payload = serde_json::to_string(&e.payload).unwrap();
        // The series id the service would give (meter, customer).
        let series = (k / BATCH) % METERS * CUSTOMERS + (k * 7_919) % CUSTOMERS;
        buffer.push_str(&format!(
            "{series}\t{ts}\t{now_us}\tacct_bench\t{}\t{}\t{payload}\n",
            e.identifier, e.payload["value"]
        ));
        if buffer.len() > (1 << 20) - 512 {
            copy.send(buffer.as_bytes()).await.unwrap();
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}

/// p50 and p99 of GetUsage over random 30-day windows, in ms.
async fn usage_latency(client: &MeterServiceClient<Channel>, meters: &[String]) -> (f64, f64) {
    let mut latencies = Vec::with_capacity(USAGE_QUERIES);
    let mut usage_client = client.clone();
    let now = Utc::now();
    for q in 0..USAGE_QUERIES as u64 {
        let request = pb::GetUsageRequest {
            customer: format!("cus_{}", (q * 31) % CUSTOMERS),
            meter: meters[usize::try_from(q % METERS).unwrap()].clone(),
            start_time: Some(billing_server::time::to_proto(now - TimeDelta::days(30))),
            end_time: Some(billing_server::time::to_proto(now)),
            grouping_window: 0,
        };
        let call = Instant::now();
        usage_client.get_usage(authed(request)).await.unwrap();
        latencies.push(call.elapsed());
    }
    latencies.sort();
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

async fn bench(name: &str, db: TestDatabase, total: u64) {
    let mut keys = ApiKeys::default();
    keys.insert_plain(KEY, "acct_bench", &[Scope::ApplyCredits]);
    let mut config = Config::new(db.url(), "127.0.0.1:0".parse().unwrap());
    config.service.api_keys = keys;
    let app = App::build(config, Clock::system()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = MeterServiceClient::new(channel);
    let mut meters = Vec::new();
    for m in 0..METERS {
        let request = pb::CreateMeterRequest {
            event_name: format!("meter_{m}"),
            display_name: format!("meter {m}"),
            aggregation: pb::Aggregation::Sum.into(),
            ..Default::default()
        };
        meters.push(
            client
                .clone()
                .create_meter(authed(request))
                .await
                .unwrap()
                .into_inner()
                .meter
                .unwrap()
                .id,
        );
    }
    let base = Utc::now() - TimeDelta::days(30);
    let (accepted, rate) = stream_load(&client, total, base).await;
    assert_eq!(accepted, total);

    println!(
        "| {name} | StreamEvents, {total} events, 1,000 customers × 10 meters, {STREAMS} streams × 1,000-event batches | {rate:.0} events/s |"
    );
    let (p50, p99) = usage_latency(&client, &meters).await;
    println!(
        "| {name} | GetUsage, 30-day window, {USAGE_QUERIES} queries, right after the load | p50 {p50:.2} ms, p99 {p99:.2} ms |"
    );
    if name == "PostgreSQL" {
        // What autovacuum reaches on its own: a fresh visibility map, which
        // lets usage reads be index-only scans of the covering key.
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
        conn.execute("VACUUM (ANALYZE) usage_buckets")
            .await
            .unwrap();
        let (p50, p99) = usage_latency(&client, &meters).await;
        println!(
            "| {name} | GetUsage, 30-day window, {USAGE_QUERIES} queries, after VACUUM (autovacuum caught up) | p50 {p50:.2} ms, p99 {p99:.2} ms |"
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    if name == "PostgreSQL" {
        let copy = copy_rate(db.url(), total, base).await;
        println!(
            "| {name} | raw COPY of the same {total} rows into an equivalent table | {copy:.0} rows/s (ingest = {:.0}% of COPY) |",
            100.0 * rate / copy
        );
    }
    if std::env::var("BENCH_KEEP_DB").is_ok() {
        // For EXPLAIN afterwards; drop it by hand.
        eprintln!("{name} database kept: {}", db.url());
    } else {
        db.drop_database().await;
    }
}

#[tokio::main]
async fn main() {
    let total: u64 = billing_testkit::bench::setting("BENCH_EVENTS", 5_000_000);
    println!("| backend | scenario | result |");
    println!("|---|---|---|");
    if std::env::var("BENCH_SKIP_POSTGRES").is_err() {
        match TestDatabase::postgres().await {
            Some(db) => bench("PostgreSQL", db, total).await,
            None => eprintln!("PostgreSQL unavailable: skipped"),
        }
    }
    // SQLite ingests several times slower (one writer); BENCH_SQLITE_EVENTS
    // keeps its run short when wanted.
    let sqlite_total = billing_testkit::bench::setting("BENCH_SQLITE_EVENTS", total);
    if sqlite_total > 0 {
        bench("SQLite", TestDatabase::sqlite(), sqlite_total).await;
    }
}
