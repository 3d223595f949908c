//! Test harness: the three real services on 127.0.0.1:0, each with a fresh
//! database of the same backend, talking gRPC to each other, sharing one
//! manual clock. The worker is ticked by the tests, never by a timer.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use billing_db::testing::TestDatabase;
use billing_proto::common::v1 as common;
use billing_proto::invoicing::v1 as pb;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::meter::v1 as meter;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_server::time::to_proto;
use billing_testkit::{Backend, Harness};
use chrono::{DateTime, TimeZone, Utc};
use invoicing::upstream::UpstreamConfig;
use invoicing::{Invoicing, Worker};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use billing_testkit::authed;

pub use billing_testkit::fixtures::{grant_request, metered, ts, usd, value_of};

/// Account A's key.
pub const KEY_A: &str = "sk_test_invoicing_a";
/// Account B's key.
pub const KEY_B: &str = "sk_test_invoicing_b";
/// Account A's key with the apply_credits scope (the fuzz test drives the
/// ledger's ApplyCredits with it).
pub const KEY_A_APPLY: &str = "sk_test_invoicing_a_apply";
/// The internal service key.
pub const INTERNAL: &str = "sk_test_internal";

/// The test clock's start: 2026-01-01T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// The keys every service of the suite accepts.
pub fn keys() -> ApiKeys {
    let mut keys = ApiKeys::default();
    keys.insert_plain(KEY_A, "acct_a", &[]);
    keys.insert_plain(KEY_A_APPLY, "acct_a", &[Scope::ApplyCredits]);
    keys.insert_plain(KEY_B, "acct_b", &[]);
    keys.insert_plain(
        INTERNAL,
        "_invoicing",
        &[Scope::ApplyCredits, Scope::Internal],
    );
    keys
}

/// A server task and its stop switch.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    Running {
        stop,
        task: tokio::spawn(run(stopped)),
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        // A server that failed or panicked fails the test that ran on it.
        self.task.await.expect("the server task ended cleanly");
    }
}

/// The three services for one test.
pub struct Suite {
    /// Channels to the services by package, for raw calls (fuzz); the
    /// event feed is the ledger's.
    pub channels: [(&'static str, Channel); 4],
    pub invoicing: InvoicingServiceClient<Channel>,
    pub ledger: LedgerServiceClient<Channel>,
    pub meter: MeterServiceClient<Channel>,
    pub clock: Clock,
    pub ops: Invoicing,
    pub worker: Worker,
    /// meter-ingest's state (its attribution job, run by tests).
    pub meter_state: meter_ingest::State,
    ledger_addr: SocketAddr,
    invoicing_addr: SocketAddr,
    ledger_db: TestDatabase,
    ledger_server: tokio::sync::Mutex<Option<Running>>,
    meter_db: TestDatabase,
    meter_server: Running,
    invoicing_db: TestDatabase,
    invoicing_server: tokio::sync::Mutex<Option<Running>>,
}

async fn start_ledger(
    url: &str,
    addr: SocketAddr,
    clock: &Clock,
    keys: ApiKeys,
    invoicing: SocketAddr,
) -> (SocketAddr, Running) {
    let mut config = credit_ledger::Config::new(url, addr);
    config.service.api_keys = keys;
    config.customers = Some(credit_ledger::upstream::CustomerCheckConfig {
        invoicing_url: format!("http://{invoicing}"),
        internal_api_key: INTERNAL.into(),
        deadline: Duration::from_secs(5),
    });
    config.service.db.postgres_max_connections = 8;
    let app = credit_ledger::App::build(config, clock.clone())
        .await
        .expect("ledger starts");
    let addr = app.local_addr().unwrap();
    let running = spawn(|stopped| async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("ledger serves");
    });
    (addr, running)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

impl Harness for Suite {
    async fn start(backend: Backend) -> Option<Self> {
        let ledger_db = backend.database().await?;
        let meter_db = backend.database().await?;
        let invoicing_db = backend.database().await?;
        let clock = Clock::manual(t0());
        // The ledger asks invoicing about customers: bind invoicing's port
        // first and keep it (invoicing serves on this very listener, so no
        // other test can take the port in between).
        let invoicing_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let invoicing_addr = invoicing_listener.local_addr().unwrap();

        let (ledger_addr, ledger_server) = start_ledger(
            ledger_db.url(),
            "127.0.0.1:0".parse().unwrap(),
            &clock,
            keys(),
            invoicing_addr,
        )
        .await;

        let mut config = meter_ingest::Config::new(meter_db.url(), "127.0.0.1:0".parse().unwrap());
        config.service.api_keys = keys();
        config.service.db.postgres_max_connections = 8;
        config.customers = Some(billing_server::customers::DirectoryConfig {
            invoicing_url: format!("http://{invoicing_addr}"),
            internal_api_key: INTERNAL.into(),
            deadline: Duration::from_secs(5),
        });
        // Tests run the attribution job themselves.
        config.attribution_interval = Duration::from_secs(3_600);
        let app = meter_ingest::App::build(config, clock.clone())
            .await
            .expect("meter starts");
        let meter_addr = app.local_addr().unwrap();
        let meter_state = app.state().clone();
        let meter_server = spawn(|stopped| async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("meter serves");
        });

        let upstream = UpstreamConfig {
            ledger_url: format!("http://{ledger_addr}"),
            meter_url: format!("http://{meter_addr}"),
            internal_api_key: INTERNAL.into(),
            deadline: Duration::from_secs(5),
        };
        let mut config = invoicing::Config::new(invoicing_db.url(), invoicing_addr, upstream);
        config.service.api_keys = keys();
        config.service.db.postgres_max_connections = 16;
        // Tests tick the worker themselves.
        config.worker_interval = Duration::from_secs(3_600);
        let app = invoicing::App::build_on(config, clock.clone(), invoicing_listener)
            .await
            .expect("invoicing starts");
        assert_eq!(app.local_addr().unwrap(), invoicing_addr);
        let ops = app.state().invoicing.clone();
        let invoicing_server = spawn(|stopped| async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("invoicing serves");
        });

        let invoicing_channel = channel(invoicing_addr).await;
        let ledger_channel = channel(ledger_addr).await;
        let meter_channel = channel(meter_addr).await;
        Some(Self {
            channels: [
                ("billing.invoicing.v1", invoicing_channel.clone()),
                ("billing.ledger.v1", ledger_channel.clone()),
                ("billing.meter.v1", meter_channel.clone()),
                ("billing.events.v1", ledger_channel.clone()),
            ],
            invoicing: InvoicingServiceClient::new(invoicing_channel),
            ledger: LedgerServiceClient::new(ledger_channel),
            meter: MeterServiceClient::new(meter_channel),
            worker: Worker::new(ops.clone()),
            ops,
            meter_state,
            clock,
            ledger_addr,
            invoicing_addr,
            ledger_db,
            ledger_server: tokio::sync::Mutex::new(Some(ledger_server)),
            meter_db,
            meter_server,
            invoicing_db,
            invoicing_server: tokio::sync::Mutex::new(Some(invoicing_server)),
        })
    }

    async fn stop(self) {
        if let Some(invoicing) = self.invoicing_server.lock().await.take() {
            invoicing.stop().await;
        }
        self.meter_server.stop().await;
        if let Some(ledger) = self.ledger_server.lock().await.take() {
            ledger.stop().await;
        }
        self.invoicing_db.drop_database().await;
        self.meter_db.drop_database().await;
        self.ledger_db.drop_database().await;
    }
}

/// One test per backend for each named `async fn(&Suite)`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        billing_testkit::backends!($crate::common::Suite; $($name),*);
    };
}

/// The decimal value of a pricing-unit amount.
pub fn unit_value_of(amount: &Option<common::Amount>) -> String {
    match amount.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(common::amount::Kind::CustomPricingUnit(p)) => p.value.clone(),
        other => panic!("not a pricing unit amount: {other:?}"),
    }
}

impl Suite {
    /// The ledger's, meter-ingest's and invoicing's database URLs.
    pub fn database_urls(&self) -> [&str; 3] {
        [
            self.ledger_db.url(),
            self.meter_db.url(),
            self.invoicing_db.url(),
        ]
    }

    /// Stops invoicing (its port then refuses connections; not restarted).
    pub async fn stop_invoicing(&self) {
        if let Some(invoicing) = self.invoicing_server.lock().await.take() {
            invoicing.stop().await;
        }
    }

    /// Stops the ledger (its port then refuses connections).
    pub async fn stop_ledger(&self) {
        if let Some(ledger) = self.ledger_server.lock().await.take() {
            ledger.stop().await;
        }
    }

    /// Starts the ledger again on the same port and database.
    pub async fn restart_ledger(&self) {
        self.restart_ledger_with(keys()).await;
    }

    /// Starts the ledger again on the same port and database, accepting
    /// `keys` (e.g. an internal key without a scope it needs).
    pub async fn restart_ledger_with(&self, keys: ApiKeys) {
        let (_, running) = start_ledger(
            self.ledger_db.url(),
            self.ledger_addr,
            &self.clock,
            keys,
            self.invoicing_addr,
        )
        .await;
        *self.ledger_server.lock().await = Some(running);
    }

    /// Replaces the (stopped) ledger by a listener that accepts connections
    /// and never answers: a hung peer. Dropping the task frees the port.
    pub async fn hang_ledger(&self) -> JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind(self.ledger_addr)
            .await
            .expect("the ledger's port is free");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        })
    }

    /// Creates a meter (sum of `value`) as account A.
    pub async fn meter(&self, event_name: &str) -> String {
        self.meter
            .clone()
            .create_meter(authed(
                KEY_A,
                meter::CreateMeterRequest {
                    event_name: event_name.into(),
                    display_name: event_name.into(),
                    aggregation: meter::Aggregation::Sum.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("meter created")
            .into_inner()
            .meter
            .unwrap()
            .id
    }

    /// Ingests one event per (identifier, value) at `at` as account A,
    /// first moving the clock to `at` if it is behind.
    pub async fn usage(
        &self,
        event_name: &str,
        customer: &str,
        at: DateTime<Utc>,
        values: &[(&str, &str)],
    ) {
        if self.clock.now() < at {
            self.clock.set(at);
        }
        let events = values
            .iter()
            .map(|(identifier, value)| {
                let mut payload = BTreeMap::new();
                payload.insert("customer".to_owned(), customer.to_owned());
                payload.insert("value".to_owned(), (*value).to_owned());
                meter::MeterEvent {
                    event_name: event_name.into(),
                    identifier: (*identifier).into(),
                    timestamp: ts(at),
                    payload,
                }
            })
            .collect();
        let response = self
            .meter
            .clone()
            .ingest_events(authed(KEY_A, meter::IngestEventsRequest { events }))
            .await
            .expect("events accepted")
            .into_inner();
        assert_eq!(response.accepted as usize, values.len(), "{response:?}");
    }

    /// Creates a customer as account A.
    pub async fn customer(&self, name: &str) -> String {
        self.invoicing
            .clone()
            .create_customer(authed(
                KEY_A,
                pb::CreateCustomerRequest {
                    name: name.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("customer created")
            .into_inner()
            .customer
            .unwrap()
            .id
    }

    /// Creates a per-unit usd price on `meter` as account A.
    pub async fn per_unit_price(&self, meter: &str, unit_amount_decimal: &str) -> String {
        self.create_price(pb::CreatePriceRequest {
            currency: "usd".into(),
            meter: meter.into(),
            billing_scheme: pb::BillingScheme::PerUnit.into(),
            unit_amount_decimal: unit_amount_decimal.into(),
            ..Default::default()
        })
        .await
        .id
    }

    /// Creates a price as account A.
    pub async fn create_price(&self, request: pb::CreatePriceRequest) -> pb::Price {
        self.invoicing
            .clone()
            .create_price(authed(KEY_A, request))
            .await
            .expect("price created")
            .into_inner()
            .price
            .unwrap()
    }

    /// A monthly subscription starting now, as account A.
    pub async fn subscribe(&self, customer: &str, prices: &[&str]) -> pb::Subscription {
        self.subscribe_with_allocations(customer, prices, Vec::new())
            .await
    }

    /// A monthly subscription with recurring credit allocations, as account A.
    pub async fn subscribe_with_allocations(
        &self,
        customer: &str,
        prices: &[&str],
        credit_allocations: Vec<pb::CreditAllocation>,
    ) -> pb::Subscription {
        self.invoicing
            .clone()
            .create_subscription(authed(
                KEY_A,
                pb::CreateSubscriptionRequest {
                    customer: customer.into(),
                    items: prices
                        .iter()
                        .map(|p| pb::SubscriptionItemInput { price: (*p).into() })
                        .collect(),
                    billing_interval: pb::BillingInterval::Month.into(),
                    credit_allocations,
                    ..Default::default()
                },
            ))
            .await
            .expect("subscription created")
            .into_inner()
            .subscription
            .unwrap()
    }

    /// A usd grant for `customer` as account A.
    pub async fn grant(&self, request: ledger::CreateCreditGrantRequest) -> ledger::CreditGrant {
        self.ledger
            .clone()
            .create_credit_grant(authed(KEY_A, request))
            .await
            .expect("grant created")
            .into_inner()
            .credit_grant
            .unwrap()
    }

    /// Moves the clock and ticks the worker once.
    pub async fn advance_to(&self, time: DateTime<Utc>) -> invoicing::jobs::worker::TickReport {
        self.clock.set(time);
        self.worker.tick().await
    }

    /// A subscription's invoices, newest first, as account A.
    pub async fn invoices_of(&self, subscription: &str) -> Vec<pb::Invoice> {
        self.invoicing
            .clone()
            .list_invoices(authed(
                KEY_A,
                pb::ListInvoicesRequest {
                    subscription: subscription.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .invoices
    }

    /// CreateInvoice as account A.
    pub async fn create_invoice(&self, subscription: &str) -> pb::Invoice {
        self.invoicing
            .clone()
            .create_invoice(authed(
                KEY_A,
                pb::CreateInvoiceRequest {
                    subscription: subscription.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("invoice created")
            .into_inner()
            .invoice
            .unwrap()
    }

    /// FinalizeInvoice as account A.
    pub async fn finalize(&self, id: &str) -> Result<pb::Invoice, tonic::Status> {
        self.invoicing
            .clone()
            .finalize_invoice(authed(
                KEY_A,
                pb::FinalizeInvoiceRequest {
                    id: id.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner().invoice.unwrap())
    }

    /// VoidInvoice as account A.
    pub async fn void(&self, id: &str) -> Result<pb::Invoice, tonic::Status> {
        self.invoicing
            .clone()
            .void_invoice(authed(
                KEY_A,
                pb::VoidInvoiceRequest {
                    id: id.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner().invoice.unwrap())
    }

    /// GetInvoice as account A.
    pub async fn invoice(&self, id: &str) -> pb::Invoice {
        self.invoicing
            .clone()
            .get_invoice(authed(KEY_A, pb::GetInvoiceRequest { id: id.into() }))
            .await
            .expect("invoice")
            .into_inner()
            .invoice
            .unwrap()
    }

    /// CreatePricingUnit as account A.
    pub async fn pricing_unit(
        &self,
        display_name: &str,
        scale: u32,
        conversion: Option<ledger::Conversion>,
    ) -> ledger::PricingUnit {
        self.ledger
            .clone()
            .create_pricing_unit(authed(
                KEY_A,
                ledger::CreatePricingUnitRequest {
                    display_name: display_name.into(),
                    scale,
                    conversion,
                    ..Default::default()
                },
            ))
            .await
            .expect("pricing unit created")
            .into_inner()
            .pricing_unit
            .unwrap()
    }

    /// PreviewInvoice as account A.
    pub async fn preview(&self, subscription: &str) -> Result<pb::Invoice, tonic::Status> {
        self.invoicing
            .clone()
            .preview_invoice(authed(
                KEY_A,
                pb::PreviewInvoiceRequest {
                    subscription: subscription.into(),
                },
            ))
            .await
            .map(|r| r.into_inner().invoice.unwrap())
    }

    /// GetCustomerBalance as account A: the balance of each asset.
    pub async fn customer_balance(&self, customer: &str) -> Vec<pb::AssetBalance> {
        self.invoicing
            .clone()
            .get_customer_balance(authed(
                KEY_A,
                pb::GetCustomerBalanceRequest {
                    customer: customer.into(),
                },
            ))
            .await
            .expect("balance")
            .into_inner()
            .balances
    }

    /// The ledger's available usd balance of a customer.
    pub async fn available_usd(&self, customer: &str) -> i64 {
        let summary = self
            .ledger
            .clone()
            .get_credit_balance_summary(authed(
                KEY_A,
                ledger::GetCreditBalanceSummaryRequest {
                    customer: customer.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("summary")
            .into_inner();
        summary
            .balances
            .iter()
            .map(|b| value_of(&b.available_balance))
            .sum()
    }
}
