//! An acknowledged batch survives `kill -9` of the service process in the
//! middle of ingestion load, a batch in flight is stored whole or not at
//! all, and the aggregates count every stored event exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_testkit::{Backend, TestDatabase, authed};
use chrono::{TimeDelta, Utc};

const KEY: &str = "sk_test_durability";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary and returns it with the address it printed.
fn start(database_url: &str) -> (Process, String) {
    let keys = format!("acct_d:{}", billing_server::auth::hash_hex(KEY));
    let mut child = Command::new(env!("CARGO_BIN_EXE_meter-ingest"))
        .env("DATABASE_URL", database_url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("BILLING_API_KEYS", keys)
        // Both backends run at once: no shared default metrics port.
        .env("METRICS_ADDR", "off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("meter-ingest exited before listening")
            .unwrap();
        if let Some(addr) = line.strip_prefix("meter-ingest listening on ") {
            break addr.trim().to_owned();
        }
    };
    (Process(child), addr)
}

const CLIENTS: usize = 4;
const BATCH: usize = 50;
const CUSTOMERS: usize = 10;
/// Acknowledged batches to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 40;

/// Batch `n` of client `c`: BATCH events of value 1 over CUSTOMERS customers.
fn batch(c: usize, n: usize, at: chrono::DateTime<Utc>) -> Vec<pb::MeterEvent> {
    (0..BATCH)
        .map(|i| {
            let mut payload = std::collections::BTreeMap::new();
            payload.insert("customer".to_owned(), format!("cus_{}", i % CUSTOMERS));
            payload.insert("value".to_owned(), "1".to_owned());
            pb::MeterEvent {
                event_name: "durable".into(),
                identifier: format!("c{c}-b{n}-e{i}"),
                timestamp: Some(billing_server::time::to_proto(at)),
                payload,
            }
        })
        .collect()
}

/// Sends batch `n` of client `c` again.
async fn resend(
    client: &mut MeterServiceClient<tonic::transport::Channel>,
    c: usize,
    n: usize,
    at: chrono::DateTime<Utc>,
) -> pb::IngestEventsResponse {
    let request = pb::IngestEventsRequest {
        events: batch(c, n, at),
    };
    client
        .ingest_events(authed(KEY, request))
        .await
        .unwrap()
        .into_inner()
}

/// What one client saw before the process died: the batches acknowledged,
/// and the one in flight when the connection broke (if any).
#[derive(Debug, Default)]
struct Seen {
    acked: Vec<usize>,
    in_flight: Option<usize>,
}

async fn check(db: TestDatabase) {
    let (process, addr) = start(db.url());
    let mut client = MeterServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let meter = client
        .create_meter(authed(
            KEY,
            pb::CreateMeterRequest {
                event_name: "durable".into(),
                display_name: "durable".into(),
                aggregation: pb::Aggregation::Sum.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap();
    let at = Utc::now() - TimeDelta::minutes(1);

    // Load: CLIENTS clients send batches back to back until the process dies.
    let acked_total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = client.clone();
            let acked_total = acked_total.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                for n in 0.. {
                    let request = pb::IngestEventsRequest {
                        events: batch(c, n, at),
                    };
                    match client.ingest_events(authed(KEY, request)).await {
                        Ok(response) => {
                            assert_eq!(response.into_inner().accepted as usize, BATCH);
                            seen.acked.push(n);
                            acked_total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(_) => {
                            seen.in_flight = Some(n);
                            return seen;
                        }
                    }
                }
                seen
            })
        })
        .collect();
    while acked_total.load(std::sync::atomic::Ordering::SeqCst) < ACKED_BEFORE_KILL {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // SIGKILL in the middle of the load: no graceful shutdown, batches in flight.
    drop(process);
    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.unwrap());
    }
    drop(client);

    let (_process, addr) = start(db.url());
    let mut client = MeterServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    eprintln!("before the kill: {seen:?}");
    let mut stored = 0;
    for (c, seen) in seen.iter().enumerate() {
        // Every acknowledged batch is there in full: re-sent, all duplicates.
        for &n in &seen.acked {
            let again = resend(&mut client, c, n, at).await;
            assert_eq!(
                again.duplicate as usize, BATCH,
                "client {c} batch {n} was acknowledged before the kill but is not all there"
            );
            stored += BATCH;
        }
        // The batch in flight is there entirely or not at all; re-sending
        // completes it exactly once.
        if let Some(n) = seen.in_flight {
            let again = resend(&mut client, c, n, at).await;
            assert!(
                (again.duplicate as usize, again.accepted as usize) == (BATCH, 0)
                    || (again.duplicate as usize, again.accepted as usize) == (0, BATCH),
                "client {c} batch {n} in flight was half stored: {again:?}"
            );
            stored += BATCH;
        }
    }
    assert!(stored >= ACKED_BEFORE_KILL * BATCH);
    // The aggregates agree: every stored event counted once.
    let mut total = 0_u64;
    for customer in 0..CUSTOMERS {
        let usage = client
            .get_usage(authed(
                KEY,
                pb::GetUsageRequest {
                    customer: format!("cus_{customer}"),
                    meter: meter.id.clone(),
                    start_time: Some(billing_server::time::to_proto(at - TimeDelta::hours(1))),
                    end_time: Some(billing_server::time::to_proto(at + TimeDelta::hours(1))),
                    grouping_window: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        total += usage.total.unwrap().value.parse::<u64>().unwrap();
    }
    assert_eq!(
        total as usize, stored,
        "usage counts every stored event once"
    );
    drop(client);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_on_sqlite() {
    check(Backend::Sqlite.database().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_on_postgres() {
    if let Some(db) = Backend::Postgres.database().await {
        check(db).await;
    }
}
