//! `meter.usage_unattributed` is reported once per customer, meter and day
//! even across a kill -9 of meter-ingest: the day's mark is written with the
//! event, so the restarted process's passes find the day reported. Real
//! processes (meter-ingest asking a real invoicing), both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use billing_e2e::*;
use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::meter::v1 as meter;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_testkit::Backend;

async fn reported(channel: tonic::transport::Channel) -> usize {
    EventServiceClient::new(channel)
        .list_events(authed(ev::ListEventsRequest {
            types: vec!["meter.usage_unattributed".into()],
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().events.len())
        .unwrap_or(0)
}

async fn check(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    // Invoicing's port first: meter-ingest asks it about customers.
    let invoicing_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = [
        ("METER_INVOICING_URL", format!("http://{invoicing_addr}")),
        ("METER_INTERNAL_API_KEY", INTERNAL_KEY.to_owned()),
        ("METER_ATTRIBUTION_INTERVAL_SECONDS", "1".to_owned()),
    ];
    let first = meter_with(&dbs.meter, &env);
    let meter_addr = first.addr;
    let ledger_process = ledger(&dbs.ledger, "127.0.0.1:0");
    let _invoicing = invoicing_with(
        &dbs.invoicing,
        ledger_process.addr,
        meter_addr,
        None,
        &[("LISTEN_ADDR", invoicing_addr.to_string())],
    );
    let mut client = MeterServiceClient::new(first.channel());
    client
        .create_meter(authed(meter::CreateMeterRequest {
            event_name: "calls".into(),
            display_name: "Calls".into(),
            aggregation: meter::Aggregation::Sum.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut payload = BTreeMap::new();
    payload.insert("customer".to_owned(), "cus_nobody".to_owned());
    payload.insert("value".to_owned(), "1".to_owned());
    client
        .ingest_events(authed(meter::IngestEventsRequest {
            events: vec![meter::MeterEvent {
                event_name: "calls".into(),
                identifier: "u-1".into(),
                timestamp: Some(billing_server::time::to_proto(chrono::Utc::now())),
                payload,
            }],
        }))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported(first.channel()).await < 1 {
        assert!(Instant::now() < deadline, "never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();

    // The restarted process runs its passes (every second) on the same
    // database and port: the day stays reported once.
    let second = meter_with(
        &dbs.meter,
        &[
            env[0].clone(),
            env[1].clone(),
            env[2].clone(),
            ("LISTEN_ADDR", meter_addr.to_string()),
        ],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // (Unless the UTC day turned meanwhile: then a second day is due.)
    let count = reported(second.channel()).await;
    assert!(
        count == 1
            || chrono::Utc::now().time() < chrono::NaiveTime::from_hms_opt(0, 0, 10).unwrap(),
        "{count} reports"
    );
    drop(second);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattributed_usage_is_reported_once_across_a_kill_9_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattributed_usage_is_reported_once_across_a_kill_9_on_postgres() {
    check(Backend::Postgres).await;
}
