//! The notifier test harness: a real ledger (the feed), a real notifier
//! following it over gRPC, and a real HTTP receiver on loopback that
//! answers with scripted statuses and records what it got.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::webhooks::v1 as pb;
use billing_proto::webhooks::v1::webhook_service_client::WebhookServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::{Backend, Harness, TestDatabase};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use billing_testkit::authed;
pub use billing_testkit::fixtures::grant_request;

/// Account A's key.
pub const KEY_A: &str = "sk_test_notifier_a";
/// Account B's key.
pub const KEY_B: &str = "sk_test_notifier_b";
/// The internal key the notifier reads the feeds with.
pub const INTERNAL: &str = "sk_test_notifier_internal";

/// The keys every service of the harness accepts.
pub fn keys() -> ApiKeys {
    let mut keys = ApiKeys::default();
    keys.insert_plain(KEY_A, "acct_a", &[]);
    keys.insert_plain(KEY_B, "acct_b", &[]);
    keys.insert_plain(INTERNAL, "_notifier", &[Scope::Internal]);
    keys
}

#[allow(unused_imports)]
pub use billing_testkit::webhook::{Hit, Receiver};

/// Verifies a Standard Webhooks signature header the way a receiver does,
/// with its own HMAC (not the notifier's code): true when one of the
/// space-separated `v1,` signatures matches.
pub fn verifies(secret: &str, hit: &Hit, body: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", hit.id, hit.timestamp, body).as_bytes());
    let expected = engine.encode(mac.finalize().into_bytes());
    hit.signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the server task ended cleanly");
    }
}

/// A ledger and a notifier following it.
pub struct TestNotifier {
    pub ledger: LedgerServiceClient<Channel>,
    /// The ledger's channel (its event feed).
    pub ledger_channel: Channel,
    pub webhooks: WebhookServiceClient<Channel>,
    pub notifier: notifier::State,
    pub notifier_addr: SocketAddr,
    /// The notifier's clock.
    pub clock: Clock,
    /// The ledger's database.
    pub ledger_db: TestDatabase,
    /// The notifier's database.
    pub notifier_db: TestDatabase,
    ledger_server: Running,
    notifier_server: Running,
}

/// How the notifier under test is configured.
pub fn notifier_config(url: &str, ledger: SocketAddr) -> notifier::Config {
    let sources = vec![notifier::config::Source {
        name: "ledger",
        url: format!("http://{ledger}"),
    }];
    let mut config = notifier::Config::new(url, "127.0.0.1:0".parse().unwrap(), sources);
    config.service.api_keys = keys();
    config.internal_api_key = INTERNAL.into();
    config.accounts = vec!["acct_a".into(), "acct_b".into()];
    config.allow_insecure_urls = true;
    config.allow_private_urls = true;
    config.retry_schedule = notifier::RetrySchedule::parse("50ms,50ms,50ms").unwrap();
    config.delivery_interval = Duration::from_millis(20);
    config.service.db.postgres_max_connections = 8;
    config
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

impl TestNotifier {
    /// Starts with `configure` applied to the notifier's configuration.
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut notifier::Config),
    ) -> Option<Self> {
        Self::start_on(backend, Clock::system(), configure).await
    }

    /// Starts with the notifier on `clock`.
    pub async fn start_on(
        backend: Backend,
        clock: Clock,
        configure: impl FnOnce(&mut notifier::Config),
    ) -> Option<Self> {
        let ledger_db = backend.database().await?;
        let notifier_db = backend.database().await?;
        let mut config =
            credit_ledger::Config::new(ledger_db.url(), "127.0.0.1:0".parse().unwrap());
        config.service.api_keys = keys();
        config.service.db.postgres_max_connections = 8;
        let ledger = credit_ledger::App::build(config, Clock::system())
            .await
            .unwrap();
        let ledger_addr = ledger.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            ledger
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let ledger_server = Running { stop, task };

        let mut config = notifier_config(notifier_db.url(), ledger_addr);
        configure(&mut config);
        let app = notifier::App::build(config, clock.clone()).await.unwrap();
        let notifier_addr = app.local_addr().unwrap();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let notifier_server = Running { stop, task };
        let ledger_channel = channel(ledger_addr).await;
        Some(Self {
            ledger: LedgerServiceClient::new(ledger_channel.clone()),
            ledger_channel,
            webhooks: WebhookServiceClient::new(channel(notifier_addr).await),
            notifier: state,
            notifier_addr,
            clock,
            ledger_db,
            notifier_db,
            ledger_server,
            notifier_server,
        })
    }

    /// Creates an endpoint as account A; returns it and its secret.
    pub async fn endpoint(&self, url: &str, events: &[&str]) -> (pb::WebhookEndpoint, String) {
        let created = self
            .webhooks
            .clone()
            .create_webhook_endpoint(authed(
                KEY_A,
                pb::CreateWebhookEndpointRequest {
                    url: url.into(),
                    enabled_events: events.iter().map(|e| (*e).to_owned()).collect(),
                    ..Default::default()
                },
            ))
            .await
            .expect("endpoint created")
            .into_inner();
        (created.webhook_endpoint.unwrap(), created.secret)
    }

    /// Creates a grant as account A.
    pub async fn grant(&self, customer: &str, value: i64) -> String {
        self.ledger
            .clone()
            .create_credit_grant(authed(KEY_A, grant_request(customer, "g", value)))
            .await
            .expect("grant created")
            .into_inner()
            .credit_grant
            .unwrap()
            .id
    }

    /// Account A's events on the ledger's feed, oldest first.
    pub async fn ledger_events(&self) -> Vec<billing_proto::events::v1::Event> {
        let mut feed = billing_proto::events::v1::event_service_client::EventServiceClient::new(
            self.ledger_channel.clone(),
        );
        let mut events = feed
            .list_events(authed(
                KEY_A,
                billing_proto::events::v1::ListEventsRequest {
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .events;
        events.reverse();
        events
    }

    /// Account A's deliveries of an endpoint.
    pub async fn deliveries(&self, endpoint: &str) -> Vec<pb::WebhookDelivery> {
        self.webhooks
            .clone()
            .list_webhook_deliveries(authed(
                KEY_A,
                pb::ListWebhookDeliveriesRequest {
                    webhook_endpoint: endpoint.into(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .webhook_deliveries
    }

    /// Waits until `check` holds for the endpoint's deliveries (at most 30 s).
    pub async fn wait_deliveries(
        &self,
        endpoint: &str,
        check: impl Fn(&[pb::WebhookDelivery]) -> bool,
    ) -> Vec<pb::WebhookDelivery> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.deliveries(endpoint).await;
            if check(&found) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries never got there: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The endpoint as account A sees it.
    pub async fn get_endpoint(&self, id: &str) -> pb::WebhookEndpoint {
        self.webhooks
            .clone()
            .get_webhook_endpoint(authed(
                KEY_A,
                pb::GetWebhookEndpointRequest { id: id.into() },
            ))
            .await
            .unwrap()
            .into_inner()
            .webhook_endpoint
            .unwrap()
    }
}

impl Harness for TestNotifier {
    async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    async fn stop(self) {
        self.notifier_server.stop().await;
        self.ledger_server.stop().await;
        self.ledger_db.drop_database().await;
        self.notifier_db.drop_database().await;
    }
}

/// One test per backend for each named `async fn(&TestNotifier)`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        billing_testkit::backends!($crate::common::TestNotifier; $($name),*);
    };
}
