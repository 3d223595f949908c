//! An acknowledged event survives `kill -9` of the service process.

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
    let mut payload = std::collections::BTreeMap::new();
    payload.insert("customer".to_owned(), "cus_1".to_owned());
    payload.insert("value".to_owned(), "42.5".to_owned());
    let event = pb::MeterEvent {
        event_name: "durable".into(),
        identifier: "kept".into(),
        timestamp: Some(billing_server::time::to_proto(at)),
        payload,
    };
    let ack = client
        .ingest_events(authed(
            KEY,
            pb::IngestEventsRequest {
                events: vec![event],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.accepted, 1);

    // SIGKILL right after the acknowledgement: no graceful shutdown.
    drop(process);

    let (_process, addr) = start(db.url());
    let mut client = MeterServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let usage = client
        .get_usage(authed(
            KEY,
            pb::GetUsageRequest {
                customer: "cus_1".into(),
                meter: meter.id,
                start_time: Some(billing_server::time::to_proto(at - TimeDelta::hours(1))),
                end_time: Some(billing_server::time::to_proto(at + TimeDelta::hours(1))),
                grouping_window: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.total.unwrap().value, "42.5");
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
