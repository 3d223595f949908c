//! The console in a real headless Chromium against `billing up`, on SQLite
//! and on PostgreSQL: sign in, seed 000's "New credit grant" form, the
//! Available column, "Credit grant applied" on a finalized invoice, a field
//! error, a form without its CSRF token, another account's customer, an
//! idempotent double submit, sign out. The SQLite run also writes the
//! screenshots the README links to (`docs/screenshots/`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them). Without them the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/seed.rs"]
mod seed;

use std::process::Command;

use billing_proto::invoicing::v1 as inv;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::http::{hidden, request};
use billing_testkit::{Backend, TestDatabase, authed};
use browser::Driver;
use common::{Up, require};
use fantoccini::{Client, Locator};
use seed::channel;
use tonic::transport::Channel;

const DEV_KEY: &str = "sk_console_browser_test_key";
const OTHER_KEY: &str = "sk_console_other_account_key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_on_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_on_postgres() {
    run(Backend::Postgres).await;
}

fn chromium_present() -> bool {
    let mut driver = Command::new("chromedriver");
    driver.arg("--version");
    let mut chromium = Command::new("chromium");
    chromium.arg("--version");
    let hint = "apt-get install chromium chromium-driver";
    require("chromedriver", driver, hint) && require("chromium", chromium, hint)
}

async fn run(backend: Backend) {
    if !chromium_present() {
        return;
    }
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let mut databases: Vec<TestDatabase> = Vec::new();
    let mut env = vec![(
        "BILLING_API_KEYS".to_owned(),
        format!("acct_other:{}", billing_server::auth::hash_hex(OTHER_KEY)),
    )];
    if backend == Backend::Postgres {
        for service in ["LEDGER", "METER", "INVOICING", "NOTIFIER"] {
            let Some(db) = TestDatabase::postgres().await else {
                return;
            };
            env.push((format!("{service}_DATABASE_URL"), db.url().to_owned()));
            databases.push(db);
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let up = Up::start_with(&format!("console-{name}"), DEV_KEY, &env);
    let driver = Driver::start(name).await;
    let browser = driver.browser().await;
    let outcome = Scenario::new(&up, browser.clone(), backend)
        .await
        .walk()
        .await;
    let _ = browser.close().await;
    drop(up);
    for db in databases {
        db.drop_database().await;
    }
    outcome.unwrap();
}

/// What the test set up through the APIs.
struct Scenario {
    base: String,
    console_addr: String,
    browser: Client,
    ledger: LedgerServiceClient<Channel>,
    invoicing: InvoicingServiceClient<Channel>,
    customer: String,
    subscription: String,
    price: String,
    other_customer: String,
    screenshots: bool,
    notifier: String,
    invoice: String,
}

impl Scenario {
    /// A meter, a 10¢ price, customer "Acme Corp" subscribed with 300 units
    /// of usage ($30.00), and another account's customer.
    async fn new(up: &Up, browser: Client, backend: Backend) -> Self {
        let ledger = LedgerServiceClient::new(channel(&up.ledger).await);
        let invoicing = InvoicingServiceClient::new(channel(&up.invoicing).await);
        let acme =
            seed::metered_customer(&up.meter, &up.invoicing, DEV_KEY, "Acme Corp", "300").await;
        let other_customer =
            seed::customer(&up.invoicing, OTHER_KEY, "Other account's customer").await;
        Self {
            base: format!("http://{}", up.console),
            console_addr: up.console.clone(),
            browser,
            ledger,
            invoicing,
            customer: acme.customer,
            subscription: acme.subscription,
            price: acme.price,
            other_customer,
            screenshots: backend == Backend::Sqlite,
            notifier: up.notifier.clone(),
            invoice: String::new(),
        }
    }

    async fn walk(mut self) -> Result<(), String> {
        self.sign_in().await;
        self.create_grant_through_the_form().await;
        self.bad_amount_shows_its_field_error().await;
        self.invoice_shows_credit_grant_applied().await;
        self.forms_without_their_token_are_refused().await;
        self.double_submit_creates_one_grant().await;
        self.actions_go_through_a_confirmation().await;
        self.webhook_endpoints_and_deliveries().await;
        self.other_accounts_customer_is_not_found().await;
        self.sign_out().await;
        Ok(())
    }

    async fn go(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.browser.current_url().await.unwrap().path().to_owned()
    }

    async fn text(&self, css: &str) -> String {
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, id: &str, value: &str) {
        let input = self.browser.find(Locator::Id(id)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    /// Clicks what `locator` finds and waits until the browser shows the
    /// page that click loaded (the old document is gone).
    async fn navigate(&self, locator: Locator<'_>) {
        let old = self.browser.find(Locator::Css("html")).await.unwrap();
        let Ok(target) = self.browser.find(locator).await else {
            let page = self.text("body").await;
            panic!("{locator:?} not on {}:\n{page}", self.path().await);
        };
        target.click().await.unwrap();
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the click did not load a page");
    }

    async fn sign_in(&self) {
        self.go("/customers").await;
        assert_eq!(
            self.path().await,
            "/sign-in",
            "signed-out pages lead to sign-in"
        );
        self.fill("api_key", "sk_not_a_key").await;
        self.navigate(Locator::Css("main form button")).await;
        assert!(self.text("#api_key-error").await.contains("not valid"));
        self.fill("api_key", DEV_KEY).await;
        self.navigate(Locator::Css("main form button")).await;
        let signed_in = self.path().await;
        assert_eq!(signed_in, "/customers", "{}", self.text("main").await);
    }

    /// Seed 000, Dashboard: on the Customers page select the customer; under
    /// Credit grants click +; fill the form; Create grant; see Available.
    async fn create_grant_through_the_form(&self) {
        self.fill("q", "ACME").await;
        self.navigate(Locator::XPath("//button[text()='Search']"))
            .await;
        assert!(self.text("main table caption").await.contains("Matching"));
        self.navigate(Locator::LinkText("Acme Corp")).await;
        assert_eq!(self.path().await, format!("/customers/{}", self.customer));
        self.navigate(Locator::Css("a[aria-label='New credit grant']"))
            .await;
        // Every control has a label (a screen reader names each field).
        let unlabelled = self
            .browser
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select')]\
                 .filter(e => e.labels.length === 0).map(e => e.name);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, serde_json::json!([]), "inputs without a label");
        self.fill("name", "Prepaid credits").await;
        self.fill("amount", "20.00").await;
        self.fill("effective_date", "01012026").await;
        self.fill("expiry_date", "01012030").await;
        self.fill("priority", "10").await;
        let effective = self
            .browser
            .find(Locator::Id("effective_date"))
            .await
            .unwrap();
        assert_eq!(
            effective.prop("value").await.unwrap().as_deref(),
            Some("2026-01-01")
        );
        self.browser
            .find(Locator::Id(&format!("price-{}", self.price)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.navigate(Locator::XPath("//button[text()='Create grant']"))
            .await;
        assert_eq!(self.path().await, format!("/customers/{}", self.customer));
        assert_eq!(self.available("Prepaid credits").await, "20.00 USD");
        let grants = self.grants().await;
        assert_eq!(grants.len(), 1);
        let grant = &grants[0];
        assert_eq!(grant.priority, 10);
        assert_eq!(
            grant.expires_at.as_ref().unwrap().seconds,
            1_893_456_000,
            "2030-01-01"
        );
        let scope = grant
            .applicability_config
            .as_ref()
            .unwrap()
            .scope
            .as_ref()
            .unwrap();
        assert_eq!(scope.prices, vec![self.price.clone()]);
    }

    /// The Available cell of the grant named `name` on the customer page.
    async fn available(&self, name: &str) -> String {
        let headers = self
            .browser
            .find_all(Locator::Css("#grants-table thead th"))
            .await
            .unwrap();
        let mut column = None;
        for (i, th) in headers.iter().enumerate() {
            if th.text().await.unwrap() == "Available" {
                column = Some(i + 1);
            }
        }
        let xpath = format!(
            "//table[@id='grants-table']//tr[td/a[text()='{name}']]/td[{}]",
            column.expect("an Available column")
        );
        self.browser
            .find(Locator::XPath(&xpath))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn grants(&self) -> Vec<ledger::CreditGrant> {
        self.ledger
            .clone()
            .list_credit_grants(authed(
                DEV_KEY,
                ledger::ListCreditGrantsRequest {
                    customer: self.customer.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .credit_grants
    }

    async fn bad_amount_shows_its_field_error(&self) {
        self.go(&format!("/customers/{}/grants/new", self.customer))
            .await;
        self.fill("amount", "-5").await;
        self.navigate(Locator::XPath("//button[text()='Create grant']"))
            .await;
        let error = self.text("#amount-error").await;
        assert!(
            error.contains("positive"),
            "the ledger's field error is shown at Amount: {error}"
        );
        let invalid = self
            .browser
            .find(Locator::Id("amount"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap();
        assert_eq!(invalid.as_deref(), Some("true"));
        self.fill("amount", "1.234").await;
        self.navigate(Locator::XPath("//button[text()='Create grant']"))
            .await;
        assert!(
            self.text("#amount-error")
                .await
                .contains("at most 2 decimals")
        );
        assert_eq!(
            self.grants().await.len(),
            1,
            "a refused form writes nothing"
        );
    }

    async fn invoice_shows_credit_grant_applied(&mut self) {
        let canceled = self
            .invoicing
            .cancel_subscription(authed(
                DEV_KEY,
                inv::CancelSubscriptionRequest {
                    id: self.subscription.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let invoice = canceled
            .final_invoice
            .expect("the partial period's draft")
            .id;
        self.invoice = invoice.clone();
        let finalized = self
            .invoicing
            .finalize_invoice(authed(
                DEV_KEY,
                inv::FinalizeInvoiceRequest {
                    id: invoice.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .invoice
            .unwrap();
        assert_eq!(finalized.status(), inv::InvoiceStatus::Open);
        self.go(&format!("/invoices/{invoice}")).await;
        let applied = self.text("tr.applied").await;
        assert!(
            applied.contains("Credit grant applied — Prepaid credits"),
            "{applied}"
        );
        assert!(applied.contains("−20.00 USD"), "{applied}");
        let due = self.text("tbody.totals tr:last-child").await;
        assert!(
            due.contains("Amount due") && due.contains("10.00 USD"),
            "{due}"
        );
        assert_eq!(self.text("#invoice-status").await, "open");
        self.screenshot("invoice").await;
        self.go(&format!("/customers/{}", self.customer)).await;
        assert_eq!(self.available("Prepaid credits").await, "0.00 USD");
        self.screenshot("customer").await;
    }

    async fn screenshot(&self, name: &str) {
        if !self.screenshots {
            return;
        }
        let png = self.browser.screenshot().await.unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
    }

    async fn session_cookie(&self) -> String {
        let cookie = self
            .browser
            .get_named_cookie("console_session")
            .await
            .unwrap();
        assert!(cookie.http_only().unwrap_or(false), "HttpOnly");
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
        format!("console_session={}", cookie.value())
    }

    async fn forms_without_their_token_are_refused(&self) {
        let cookie = self.session_cookie().await;
        let path = format!("/customers/{}/grants", self.customer);
        let a = request(
            &self.console_addr,
            "POST",
            &path,
            &cookie,
            "amount=5&asset=usd&name=forged",
        )
        .await
        .unwrap();
        assert_eq!(a.status, 403, "{}", a.body);
        let a = request(
            &self.console_addr,
            "POST",
            &path,
            &cookie,
            "csrf=0000&amount=5&asset=usd",
        )
        .await
        .unwrap();
        assert_eq!(a.status, 403);
        let a = request(&self.console_addr, "POST", "/sign-out", &cookie, "")
            .await
            .unwrap();
        assert_eq!(a.status, 403, "sign-out is a form too");
        assert_eq!(
            self.grants().await.len(),
            1,
            "a refused form writes nothing"
        );
    }

    /// The form carries a request id fixed when it was shown: two posts of
    /// the same form (a double click) make one grant.
    async fn double_submit_creates_one_grant(&self) {
        let cookie = self.session_cookie().await;
        let form = request(
            &self.console_addr,
            "GET",
            &format!("/customers/{}/grants/new", self.customer),
            &cookie,
            "",
        )
        .await
        .unwrap();
        assert_eq!(form.status, 200);
        let headers = form.headers.to_ascii_lowercase();
        assert!(
            headers.contains("content-security-policy: default-src 'none'"),
            "{headers}"
        );
        assert!(headers.contains("cache-control: no-store"), "{headers}");
        let body = format!(
            "csrf={}&request_id={}&name=Twice&amount=1.00&asset=usd",
            hidden(&form.body, "csrf").unwrap(),
            hidden(&form.body, "request_id").unwrap()
        );
        let path = format!("/customers/{}/grants", self.customer);
        let (first, second) = tokio::join!(
            request(&self.console_addr, "POST", &path, &cookie, &body),
            request(&self.console_addr, "POST", &path, &cookie, &body),
        );
        assert_eq!(first.unwrap().status, 303);
        assert_eq!(second.unwrap().status, 303);
        let twice = self
            .grants()
            .await
            .into_iter()
            .filter(|g| g.name == "Twice")
            .count();
        assert_eq!(twice, 1);
    }

    /// Void a grant and mark the invoice paid, each through its
    /// confirmation page.
    async fn actions_go_through_a_confirmation(&self) {
        let twice = self
            .grants()
            .await
            .into_iter()
            .find(|g| g.name == "Twice")
            .unwrap();
        self.go(&format!("/grants/{}", twice.id)).await;
        self.navigate(Locator::LinkText("Void grant…")).await;
        assert_eq!(self.text("h1").await, "Void this grant?");
        self.navigate(Locator::XPath("//button[text()='Void grant']"))
            .await;
        assert_eq!(self.path().await, format!("/grants/{}", twice.id));
        assert!(self.text("dl.facts").await.contains("voided"));
        self.go(&format!("/invoices/{}", self.invoice)).await;
        self.navigate(Locator::LinkText("Mark paid…")).await;
        self.navigate(Locator::XPath("//button[text()='Mark paid']"))
            .await;
        assert_eq!(self.text("#invoice-status").await, "paid");
    }

    async fn webhook_endpoints_and_deliveries(&self) {
        use billing_proto::webhooks::v1 as wh;
        let mut notifier =
            wh::webhook_service_client::WebhookServiceClient::new(channel(&self.notifier).await);
        let endpoint = notifier
            .create_webhook_endpoint(authed(
                DEV_KEY,
                wh::CreateWebhookEndpointRequest {
                    url: "http://127.0.0.1:9/hooks".into(),
                    enabled_events: vec!["*".into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .webhook_endpoint
            .unwrap();
        self.go("/webhooks").await;
        self.navigate(Locator::LinkText("http://127.0.0.1:9/hooks"))
            .await;
        assert_eq!(self.path().await, format!("/webhooks/{}", endpoint.id));
        assert!(self.text("main").await.contains("Deliveries"));
    }

    async fn other_accounts_customer_is_not_found(&self) {
        self.go(&format!("/customers/{}", self.other_customer))
            .await;
        assert_eq!(self.text("h1").await, "Not found");
        let cookie = self.session_cookie().await;
        for path in [
            format!("/customers/{}", self.other_customer),
            format!("/customers/{}/grants/new", self.other_customer),
            "/invoices/in_00000000000000000000000000".to_owned(),
        ] {
            let a = request(&self.console_addr, "GET", &path, &cookie, "")
                .await
                .unwrap();
            assert_eq!(a.status, 404, "{path}");
        }
    }

    async fn sign_out(&self) {
        self.go("/customers").await;
        self.navigate(Locator::XPath("//button[text()='Sign out']"))
            .await;
        assert_eq!(self.path().await, "/sign-in");
        self.go("/customers").await;
        assert_eq!(self.path().await, "/sign-in");
    }
}
