//! Test harness: a real meter-ingest server on 127.0.0.1:0 with a fresh
//! database and a manual clock.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use billing_db::testing::TestDatabase;
use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::{Backend, Harness};
use chrono::{DateTime, TimeZone, Utc};
use meter_ingest::{App, Config};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use billing_testkit::authed;

/// Account A's key.
pub const KEY_A: &str = "sk_test_meter_a";
/// Account B's key.
pub const KEY_B: &str = "sk_test_meter_b";

/// A running meter service for one test.
pub struct TestMeter {
    pub client: MeterServiceClient<Channel>,
    pub channel: Channel,
    pub clock: Clock,
    db: TestDatabase,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// The test clock's start: 2026-01-15T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap()
}

impl Harness for TestMeter {
    async fn start(backend: Backend) -> Option<Self> {
        Some(Self::start_on(backend.database().await?).await)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        // A server that failed or panicked fails the test that ran on it.
        self.server.await.expect("the server task ended cleanly");
        self.db.drop_database().await;
    }
}

impl TestMeter {
    /// Starts on an existing database (migrating it first).
    pub async fn start_on(db: TestDatabase) -> Self {
        let mut keys = ApiKeys::default();
        keys.insert_plain(KEY_A, "acct_a", &[Scope::ApplyCredits]);
        keys.insert_plain(KEY_B, "acct_b", &[]);
        let mut config = Config::new(db.url(), "127.0.0.1:0".parse().unwrap());
        config.service.api_keys = keys;
        config.service.db.postgres_max_connections = 16;
        let clock = Clock::manual(t0());
        let app = App::build(config, clock.clone())
            .await
            .expect("meter-ingest starts");
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("meter-ingest serves");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: MeterServiceClient::new(channel.clone()),
            channel,
            clock,
            db,
            stop,
            server,
        }
    }
}

/// One test per backend for each named `async fn(&TestMeter)`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        billing_testkit::backends!($crate::common::TestMeter; $($name),*);
    };
}

impl TestMeter {
    /// A client.
    pub fn client(&self) -> MeterServiceClient<Channel> {
        self.client.clone()
    }

    /// Creates a meter as account A.
    pub async fn meter(&self, event_name: &str, aggregation: pb::Aggregation) -> pb::Meter {
        self.client()
            .create_meter(authed(
                KEY_A,
                pb::CreateMeterRequest {
                    event_name: event_name.into(),
                    display_name: event_name.into(),
                    aggregation: aggregation.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("meter created")
            .into_inner()
            .meter
            .unwrap()
    }

    /// Ingests as account A.
    pub async fn ingest(&self, events: Vec<pb::MeterEvent>) -> pb::IngestEventsResponse {
        self.client()
            .ingest_events(authed(KEY_A, pb::IngestEventsRequest { events }))
            .await
            .expect("batch accepted")
            .into_inner()
    }

    /// Usage as account A.
    pub async fn usage(
        &self,
        meter: &str,
        customer: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        grouping: pb::GroupingWindow,
    ) -> pb::GetUsageResponse {
        self.client()
            .get_usage(authed(
                KEY_A,
                pb::GetUsageRequest {
                    customer: customer.into(),
                    meter: meter.into(),
                    start_time: Some(billing_server::time::to_proto(start)),
                    end_time: Some(billing_server::time::to_proto(end)),
                    grouping_window: grouping.into(),
                },
            ))
            .await
            .expect("usage")
            .into_inner()
    }

    /// The total value of a range as a string.
    pub async fn total(
        &self,
        meter: &str,
        customer: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> String {
        self.usage(meter, customer, start, end, pb::GroupingWindow::Unspecified)
            .await
            .total
            .unwrap()
            .value
    }
}

/// An event for `customer` with `value` at `at`.
pub fn event(
    event_name: &str,
    identifier: &str,
    at: DateTime<Utc>,
    customer: &str,
    value: &str,
) -> pb::MeterEvent {
    let mut payload = BTreeMap::new();
    payload.insert("customer".to_owned(), customer.to_owned());
    payload.insert("value".to_owned(), value.to_owned());
    pb::MeterEvent {
        event_name: event_name.into(),
        identifier: identifier.into(),
        timestamp: Some(billing_server::time::to_proto(at)),
        payload,
    }
}
