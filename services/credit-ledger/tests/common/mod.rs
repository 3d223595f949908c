//! Test harness: a real ledger server on 127.0.0.1:0 with a fresh database,
//! a manual clock, and clients authenticated as three keys.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use billing_db::testing::TestDatabase;
use billing_proto::common::v1 as common;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::{Backend, Harness};
use chrono::{DateTime, TimeZone, Utc};
use credit_ledger::{App, Config, Ledger};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Account A's key, with the apply_credits scope.
pub const KEY_A: &str = "sk_test_account_a";
/// Account A's key without the apply_credits scope.
pub const KEY_A_PLAIN: &str = "sk_test_account_a_plain";
/// Account B's key.
pub const KEY_B: &str = "sk_test_account_b";

/// A running ledger for one test.
pub struct TestLedger {
    pub client: LedgerServiceClient<Channel>,
    pub channel: Channel,
    pub clock: Clock,
    pub ledger: Ledger,
    pub database_url: String,
    db: TestDatabase,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// The test clock's start: 2026-01-15T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap()
}

impl Harness for TestLedger {
    /// Starts a ledger, or None when PostgreSQL is unavailable outside CI.
    async fn start(backend: Backend) -> Option<Self> {
        let db = backend.database().await?;
        let mut keys = ApiKeys::default();
        keys.insert_plain(KEY_A, "acct_a", &[Scope::ApplyCredits]);
        keys.insert_plain(KEY_A_PLAIN, "acct_a", &[]);
        keys.insert_plain(KEY_B, "acct_b", &[Scope::ApplyCredits]);
        let mut config = Config::new(db.url(), "127.0.0.1:0".parse().unwrap());
        config.service.api_keys = keys;
        config.service.db.postgres_max_connections = 16;
        let clock = Clock::manual(t0());
        let app = App::build(config, clock.clone())
            .await
            .expect("ledger starts");
        let addr = app.local_addr().unwrap();
        let ledger = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("ledger serves");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Some(Self {
            client: LedgerServiceClient::new(channel.clone()),
            channel,
            clock,
            ledger,
            database_url: db.url().to_owned(),
            db,
            stop,
            server,
        })
    }

    /// Stops the server and drops the database.
    async fn stop(self) {
        let _ = self.stop.send(());
        // A server that failed or panicked fails the test that ran on it.
        self.server.await.expect("the server task ended cleanly");
        self.db.drop_database().await;
    }
}

impl TestLedger {
    /// A client (cheap clone of the channel).
    pub fn client(&self) -> LedgerServiceClient<Channel> {
        self.client.clone()
    }
}

/// One test per backend for each named `async fn(&TestLedger)`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        billing_testkit::backends!($crate::common::TestLedger; $($name),*);
    };
}

pub use billing_testkit::authed;

pub use billing_testkit::fixtures::{grant_request, metered, money, ts, usd, value_of};

/// Creates a grant as account A.
pub async fn create_grant(
    t: &TestLedger,
    request: pb::CreateCreditGrantRequest,
) -> pb::CreditGrant {
    t.client()
        .create_credit_grant(authed(KEY_A, request))
        .await
        .expect("grant created")
        .into_inner()
        .credit_grant
        .expect("grant in response")
}

/// A usd line.
pub fn line(id: &str, price: &str, value: i64) -> pb::InvoiceLine {
    pb::InvoiceLine {
        invoice_line_item: id.into(),
        price: price.into(),
        amount: usd(value),
    }
}

/// An ApplyCredits request with period_end = the clock's now.
pub fn apply_request(
    t: &TestLedger,
    customer: &str,
    invoice: &str,
    lines: Vec<pb::InvoiceLine>,
) -> pb::ApplyCreditsRequest {
    pb::ApplyCreditsRequest {
        customer: customer.into(),
        invoice: invoice.into(),
        period_end: ts(t.clock.now()),
        lines,
        preview: false,
        pool: Vec::new(),
    }
}

/// All of a customer's transactions (following pages).
pub async fn all_transactions(t: &TestLedger, customer: &str) -> Vec<pb::CreditBalanceTransaction> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = t
            .client()
            .list_credit_balance_transactions(authed(
                KEY_A,
                pb::ListCreditBalanceTransactionsRequest {
                    customer: customer.into(),
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        out.extend(page.credit_balance_transactions);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The audit finds nothing wrong in account A.
pub async fn assert_audit_clean(t: &TestLedger) {
    let report = t
        .client()
        .audit_ledger(authed(KEY_A, pb::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.violations.is_empty(),
        "audit: {:?}",
        report.violations
    );
}

/// ReverseCredits for an invoice as account A.
pub async fn reverse(
    t: &TestLedger,
    invoice: &str,
) -> Result<pb::ReverseCreditsResponse, tonic::Status> {
    t.client()
        .reverse_credits(authed(
            KEY_A,
            pb::ReverseCreditsRequest {
                invoice: invoice.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}
