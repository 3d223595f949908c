//! The billing scenario the end-to-end tests share, through the public APIs.

use std::collections::BTreeMap;

use billing_proto::invoicing::v1 as inv;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::v1::test_clock_service_client::TestClockServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::meter::v1 as meter;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_server::time::{from_proto, to_proto};
use chrono::{DateTime, Months, TimeDelta, Utc};
use tonic::transport::Channel;

use crate::authed;

mod settle;
pub use settle::{Step, credits_match, finalize_all, until_settled};

pub use billing_testkit::fixtures::{usd, value_of};

/// Clients of the three services.
#[derive(Clone)]
pub struct Clients {
    /// credit-ledger.
    pub ledger: LedgerServiceClient<Channel>,
    /// meter-ingest.
    pub meter: MeterServiceClient<Channel>,
    /// invoicing.
    pub invoicing: InvoicingServiceClient<Channel>,
    /// invoicing's test clock.
    pub clock: TestClockServiceClient<Channel>,
}

impl Clients {
    /// Clients over the three channels.
    pub fn new(ledger: Channel, meter: Channel, invoicing: Channel) -> Self {
        Self {
            ledger: LedgerServiceClient::new(ledger),
            meter: MeterServiceClient::new(meter),
            clock: TestClockServiceClient::new(invoicing.clone()),
            invoicing: InvoicingServiceClient::new(invoicing),
        }
    }
}

/// What [`setup`] created.
pub struct Billed {
    /// `cus_…`
    pub customer: String,
    /// `sub_…`
    pub subscription: String,
    /// The three prices, in subscription order.
    pub prices: Vec<String>,
    /// The promotional grant (priority 10, expires in 90 days): 1,000¢.
    pub promo: String,
    /// The paid grant: 2,000¢.
    pub paid: String,
    /// The invoicing clock when the subscription started.
    pub start: DateTime<Utc>,
}

/// Three meters with a price each (1¢, 2.5¢ and 10¢ per unit), a customer
/// subscribed monthly from the invoicing clock's now, usage of 1,000, 400
/// and 150 units (1,000 + 1,000 + 1,500 = 3,500¢), and two grants worth 3,000¢.
pub async fn setup(c: &mut Clients, tag: &str) -> Billed {
    let now = c
        .clock
        .get_test_clock(authed(inv::GetTestClockRequest {}))
        .await
        .unwrap()
        .into_inner()
        .now
        .unwrap();
    let start = from_proto(&now, "now").unwrap();
    let customer = c
        .invoicing
        .create_customer(authed(inv::CreateCustomerRequest {
            external_id: format!("crm-{tag}"),
            name: format!("Customer {tag}"),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id;
    let mut prices = Vec::new();
    let mut events = Vec::new();
    for (name, unit, usage) in [
        ("calls", "1", "1000"),
        ("tokens", "2.5", "400"),
        ("gb", "10", "150"),
    ] {
        let event_name = format!("{name}_{tag}");
        let (_, price) = named_price(c, &event_name, name, unit).await;
        prices.push(price);
        let mut payload = BTreeMap::new();
        payload.insert("customer".to_owned(), customer.clone());
        payload.insert("value".to_owned(), usage.to_owned());
        events.push(meter::MeterEvent {
            event_name,
            identifier: format!("{name}-{tag}"),
            timestamp: Some(to_proto(Utc::now())),
            payload,
        });
    }
    let subscription = c
        .invoicing
        .create_subscription(authed(inv::CreateSubscriptionRequest {
            customer: customer.clone(),
            items: prices
                .iter()
                .map(|p| inv::SubscriptionItemInput { price: p.clone() })
                .collect(),
            billing_interval: inv::BillingInterval::Month.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
        .id;
    let ingested = c
        .meter
        .ingest_events(authed(meter::IngestEventsRequest { events }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ingested.accepted, 3, "{ingested:?}");

    let scope = Some(ledger::ApplicabilityConfig {
        scope: Some(ledger::ApplicabilityScope {
            price_type: ledger::PriceType::Metered.into(),
            prices: vec![],
        }),
    });
    let paid = c
        .ledger
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: customer.clone(),
            name: "paid".into(),
            amount: usd(2_000),
            applicability_config: scope.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
        .id;
    let promo = c
        .ledger
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: customer.clone(),
            name: "promo".into(),
            amount: usd(1_000),
            applicability_config: scope,
            category: ledger::CreditGrantCategory::Promotional.into(),
            priority: Some(10),
            expires_at: Some(to_proto(Utc::now() + TimeDelta::days(90))),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
        .id;
    Billed {
        customer,
        subscription,
        prices,
        promo,
        paid,
        start,
    }
}

/// Moves invoicing's clock past the first period end (the worker closes it)
/// and returns the period's draft.
pub async fn close_first_period(c: &mut Clients, billed: &Billed) -> inv::Invoice {
    let end = billed.start.checked_add_months(Months::new(1)).unwrap();
    advance(c, end + TimeDelta::seconds(1)).await;
    let invoices = c
        .invoicing
        .list_invoices(authed(inv::ListInvoicesRequest {
            subscription: billed.subscription.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    invoices.into_iter().next().unwrap()
}

/// AdvanceTestClock (the worker ticks before it returns).
pub async fn advance(c: &mut Clients, to: DateTime<Utc>) {
    try_advance(c, to).await.unwrap();
}

/// AdvanceTestClock; an error when the process died in its worker tick (a
/// failpoint).
pub async fn try_advance(c: &mut Clients, to: DateTime<Utc>) -> Result<(), tonic::Status> {
    c.clock
        .advance_test_clock(authed(inv::AdvanceTestClockRequest {
            frozen_time: Some(to_proto(to)),
        }))
        .await
        .map(|_| ())
}

/// The invoicing process's test clock.
pub async fn clock_now(c: &mut Clients) -> DateTime<Utc> {
    try_clock_now(c).await.unwrap()
}

/// The invoicing process's test clock; an error when the call fails.
pub async fn try_clock_now(c: &mut Clients) -> Result<DateTime<Utc>, tonic::Status> {
    let now = c
        .clock
        .get_test_clock(authed(inv::GetTestClockRequest {}))
        .await?
        .into_inner()
        .now
        .unwrap_or_default();
    from_proto(&now, "now").map_err(|v| tonic::Status::internal(format!("{v:?}")))
}

/// Runs the invoicing process's worker once, at its clock's now.
pub async fn tick(c: &mut Clients) -> Result<(), tonic::Status> {
    let now = clock_now(c).await;
    try_advance(c, now).await
}

/// Starts invoicing (with `failpoint`, if any) next to running ledger and
/// meter-ingest processes, and clients of the three.
pub fn start_invoicing(
    dbs: &crate::Databases,
    ledger: &crate::Service,
    meter: &crate::Service,
    failpoint: Option<&str>,
) -> (crate::Service, Clients) {
    let process = crate::invoicing(&dbs.invoicing, ledger.addr, meter.addr, failpoint);
    let clients = Clients::new(ledger.channel(), meter.channel(), process.channel());
    (process, clients)
}

/// CreateCustomer with just a name; its `cus_…` id.
pub async fn customer_named(c: &mut Clients, name: &str) -> String {
    c.invoicing
        .create_customer(authed(inv::CreateCustomerRequest {
            name: name.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
        .id
}

/// A SUM meter of `event_name` events and a usd price of `unit_cents` per
/// unit on it, both shown as `event_name`: `(meter id, price id)`.
pub async fn metered_price(
    c: &mut Clients,
    event_name: &str,
    unit_cents: &str,
) -> (String, String) {
    named_price(c, event_name, event_name, unit_cents).await
}

/// A SUM meter of `event_name` events shown as `name`: its id.
pub async fn sum_meter(c: &mut Clients, event_name: &str, name: &str) -> String {
    c.meter
        .create_meter(authed(meter::CreateMeterRequest {
            event_name: event_name.into(),
            display_name: name.into(),
            aggregation: meter::Aggregation::Sum.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap()
        .id
}

/// Like [`metered_price`], the meter and price shown as `name`.
async fn named_price(
    c: &mut Clients,
    event_name: &str,
    name: &str,
    unit_cents: &str,
) -> (String, String) {
    let meter_id = sum_meter(c, event_name, name).await;
    let price = c
        .invoicing
        .create_price(authed(inv::CreatePriceRequest {
            currency: "usd".into(),
            meter: meter_id.clone(),
            billing_scheme: inv::BillingScheme::PerUnit.into(),
            unit_amount_decimal: unit_cents.into(),
            nickname: name.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap()
        .id;
    (meter_id, price)
}

/// A usd grant of `cents` to `customer` for every metered price.
pub async fn metered_grant(c: &mut Clients, customer: &str, cents: i64) -> ledger::CreditGrant {
    c.ledger
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: customer.into(),
            amount: usd(cents),
            applicability_config: Some(ledger::ApplicabilityConfig {
                scope: Some(ledger::ApplicabilityScope {
                    price_type: ledger::PriceType::Metered.into(),
                    prices: Vec::new(),
                }),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
}

/// FinalizeInvoice.
pub async fn finalize(c: &mut Clients, id: &str) -> Result<inv::Invoice, tonic::Status> {
    c.invoicing
        .finalize_invoice(authed(inv::FinalizeInvoiceRequest {
            id: id.into(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().invoice.unwrap())
}

/// GetInvoice.
pub async fn invoice(c: &mut Clients, id: &str) -> inv::Invoice {
    c.invoicing
        .get_invoice(authed(inv::GetInvoiceRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap()
}

/// Waits (up to 30 s) until the recovery worker has taken `id` out of
/// `finalizing`, and returns it.
pub async fn recovered(c: &mut Clients, id: &str) -> inv::Invoice {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let current = invoice(c, id).await;
        if current.status() != inv::InvoiceStatus::Finalizing {
            return current;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "recovery did not complete invoice {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The customer's available usd credit in the ledger.
pub async fn available(c: &mut Clients, customer: &str) -> i64 {
    c.ledger
        .get_credit_balance_summary(authed(ledger::GetCreditBalanceSummaryRequest {
            customer: customer.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .balances
        .iter()
        .map(|b| value_of(&b.available_balance))
        .sum()
}

/// The CREDITS_APPLIED debits of the customer: (grant, invoice, amount).
pub async fn applied(c: &mut Clients, customer: &str) -> Vec<(String, String, i64)> {
    c.ledger
        .list_credit_balance_transactions(authed(ledger::ListCreditBalanceTransactionsRequest {
            customer: customer.into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_balance_transactions
        .into_iter()
        .filter_map(|t| {
            let debit = t.debit?;
            (debit.r#type() == ledger::DebitType::CreditsApplied).then(|| {
                (
                    t.credit_grant,
                    debit.invoice.clone(),
                    value_of(&debit.amount),
                )
            })
        })
        .collect()
}

/// Usage of one event, for [`subscribe_with_usage`].
pub struct Usage<'a> {
    /// The meter's event name.
    pub event: &'a str,
    /// The event's idempotency identifier.
    pub identifier: String,
    /// Its `value`.
    pub value: i64,
}

/// A monthly subscription of `customer` to `price` with one usage event a
/// microsecond after its start: the subscription's id.
pub async fn subscribe_with_usage(
    c: &mut Clients,
    customer: &str,
    price: &str,
    usage: Usage<'_>,
) -> String {
    let subscription = c
        .invoicing
        .create_subscription(authed(inv::CreateSubscriptionRequest {
            customer: customer.into(),
            items: vec![inv::SubscriptionItemInput {
                price: price.into(),
            }],
            billing_interval: inv::BillingInterval::Month.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    let start = subscription.current_period_start.unwrap();
    let accepted = c
        .meter
        .ingest_events(authed(meter::IngestEventsRequest {
            events: vec![meter::MeterEvent {
                event_name: usage.event.into(),
                identifier: usage.identifier,
                timestamp: Some(prost_types::Timestamp {
                    seconds: start.seconds,
                    nanos: start.nanos + 1_000,
                }),
                payload: BTreeMap::from([
                    ("customer".to_owned(), customer.to_owned()),
                    ("value".to_owned(), usage.value.to_string()),
                ]),
            }],
        }))
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert_eq!(accepted, 1);
    subscription.id
}

/// Moves the test clock a second on (the periods have length) and cancels
/// each subscription into its final draft invoice: their ids.
pub async fn cancel_into_drafts(c: &mut Clients, subscriptions: Vec<String>) -> Vec<String> {
    let later = clock_now(c).await + TimeDelta::seconds(1);
    advance(c, later).await;
    let mut drafts = Vec::new();
    for id in subscriptions {
        drafts.push(
            c.invoicing
                .cancel_subscription(authed(inv::CancelSubscriptionRequest {
                    id,
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .final_invoice
                .unwrap()
                .id,
        );
    }
    drafts
}

/// `n` final draft invoices of `price` (usage of `event`), ten per
/// customer, each customer with a grant of `grant_cents`:
/// `(customer, invoice)`.
pub async fn final_drafts(
    c: &mut Clients,
    (price, event): (&str, &str),
    tag: &str,
    n: usize,
    grant_cents: i64,
) -> Vec<(String, String)> {
    let mut customers = Vec::new();
    let mut subscriptions = Vec::new();
    let mut customer = String::new();
    for i in 0..n {
        if i % 10 == 0 {
            customer = customer_named(c, &format!("{tag} {i}")).await;
            metered_grant(c, &customer, grant_cents).await;
        }
        let usage = Usage {
            event,
            identifier: format!("evt_{tag}_{i}"),
            value: 10 + (i % 50) as i64,
        };
        subscriptions.push(subscribe_with_usage(c, &customer, price, usage).await);
        customers.push(customer.clone());
    }
    let drafts = cancel_into_drafts(c, subscriptions).await;
    customers.into_iter().zip(drafts).collect()
}
