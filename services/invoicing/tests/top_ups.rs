//! Auto top-ups through the real services (DESIGN.md §11): 200 concurrent
//! ApplyCredits through the threshold buy once; the same balance-drop event
//! handled twice buys once; a limit of 2 purchases per 30 days stops the
//! third with `auto_top_up.limit_reached`; a top-up invoice voided unpaid
//! disables the top-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::authed;
use billing_testkit::fixtures::{usd, value_of};
use common::*;
use invoicing::upstream::DroppedEvent;

async fn fund(t: &Suite, customer: &str, cents: i64) {
    t.grant(ledger::CreateCreditGrantRequest {
        customer: customer.into(),
        amount: usd(cents),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: Vec::new(),
            }),
        }),
        ..Default::default()
    })
    .await;
}

/// ApplyCredits of `each` cents on `count` invoices at once.
async fn drain(t: &Suite, customer: &str, tag: &str, count: usize, each: i64) {
    let calls = (0..count).map(|i| {
        let mut ledger = t.ledger.clone();
        let request = ledger::ApplyCreditsRequest {
            pool: Vec::new(),
            customer: customer.into(),
            invoice: format!("in_{tag}_{i}"),
            period_end: Some(billing_server::time::to_proto(t.clock.now())),
            lines: vec![ledger::InvoiceLine {
                invoice_line_item: "il_1".into(),
                price: "price_usage".into(),
                amount: usd(each),
            }],
            preview: false,
        };
        async move { ledger.apply_credits(authed(KEY_A_APPLY, request)).await }
    });
    for result in futures_util::future::join_all(calls).await {
        result.expect("applied");
    }
}

async fn set(t: &Suite, request: pb::SetAutoTopUpRequest) -> pb::AutoTopUp {
    t.invoicing
        .clone()
        .set_auto_top_up(authed(KEY_A, request))
        .await
        .expect("set")
        .into_inner()
        .auto_top_up
        .unwrap()
}

async fn purchases(t: &Suite, customer: &str) -> Vec<pb::CreditPurchase> {
    t.invoicing
        .clone()
        .list_credit_purchases(authed(
            KEY_A,
            pb::ListCreditPurchasesRequest {
                customer: customer.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_purchases
}

async fn events(t: &Suite, channel: usize, kind: &str) -> Vec<ev::Event> {
    billing_testkit::events_of(t.channels[channel].1.clone(), KEY_A, &[kind]).await
}

/// The invoicing feed's events of one type.
async fn invoicing_events(t: &Suite, kind: &str) -> Vec<ev::Event> {
    events(t, 0, kind).await
}

/// Ticks the worker until the ledger feed's events so far were decided on.
/// On PostgreSQL the feed serves an event once no older transaction is in
/// flight anywhere on the server (DESIGN.md §9), so a tick right after a
/// change may not see it yet; the test waits, it does not time anything.
async fn tick_until_decided(t: &Suite, decided: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = 0;
    while seen < decided {
        seen += t.worker.tick().await.top_up_events;
        assert!(
            std::time::Instant::now() < deadline,
            "the feed never served the crossing"
        );
        if seen < decided {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn pay(t: &Suite, invoice: &str) {
    t.invoicing
        .clone()
        .mark_invoice_paid(authed(
            KEY_A,
            pb::MarkInvoicePaidRequest {
                id: invoice.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
}

fn top_up_request(customer: &str, max_purchases: u32) -> pb::SetAutoTopUpRequest {
    pb::SetAutoTopUpRequest {
        customer: customer.into(),
        threshold: usd(2_000),
        amount: usd(5_000),
        currency: "usd".into(),
        unit_amount_decimal: "100".into(),
        limits: Some(pb::AutoTopUpLimits {
            max_purchases,
            max_spend: None,
        }),
        ..Default::default()
    }
}

async fn a_crossing_buys_once_within_the_limits(t: &Suite) {
    let customer = t.customer("Metered").await;
    fund(t, &customer, 10_000).await;
    let top_up = set(t, top_up_request(&customer, 2)).await;
    assert!(top_up.enabled);
    assert!(top_up.balance_alert.starts_with("balalrt_"));

    // 200 concurrent applications of 50¢ take the balance from 10,000 to 0
    // through the 2,000 threshold: one crossing, one purchase.
    drain(t, &customer, "first", 200, 50).await;
    assert_eq!(t.available_usd(&customer).await, 0);
    tick_until_decided(t, 1).await;
    let report = t.worker.tick().await;
    assert_eq!(report.failures, 0, "{report:?}");
    let bought = purchases(t, &customer).await;
    assert_eq!(bought.len(), 1, "one purchase per crossing");
    assert_eq!(bought[0].auto_top_up, top_up.id);
    assert_eq!(bought[0].status(), pb::CreditPurchaseStatus::PendingPayment);
    assert_eq!(value_of(&bought[0].credits), 5_000);
    assert_eq!(invoicing_events(t, "auto_top_up.triggered").await.len(), 1);

    // The same event handled again (a redelivery) buys nothing more: the
    // unpaid top-up already covers the threshold, and the purchase's
    // request id is the event id.
    let dropped = events(t, 1, "customer.credit_balance_dropped").await;
    assert_eq!(dropped.len(), 1);
    let again = DroppedEvent {
        id: dropped[0].id.clone(),
        cursor: dropped[0].cursor.clone(),
        customer: customer.clone(),
        asset: "usd".into(),
        alert: top_up.balance_alert.clone(),
    };
    t.ops.on_balance_dropped("acct_a", &again).await.unwrap();
    t.ops.on_balance_dropped("acct_a", &again).await.unwrap();
    assert_eq!(purchases(t, &customer).await.len(), 1);

    // Paid: the credits arrive, the balance recovers above the threshold;
    // drained again: a second purchase (the limit is 2 per 30 days).
    pay(t, &bought[0].invoice).await;
    assert_eq!(t.available_usd(&customer).await, 5_000);
    drain(t, &customer, "second", 10, 500).await;
    tick_until_decided(t, 1).await;
    let bought = purchases(t, &customer).await;
    assert_eq!(bought.len(), 2);
    pay(t, &bought[0].invoice).await;
    // A third crossing passes the limit: nothing is bought.
    drain(t, &customer, "third", 10, 500).await;
    tick_until_decided(t, 1).await;
    assert_eq!(purchases(t, &customer).await.len(), 2, "the limit holds");
    let reached = invoicing_events(t, "auto_top_up.limit_reached").await;
    assert_eq!(reached.len(), 1);
    let Some(ev::event::Data::AutoTopUp(data)) = &reached[0].data else {
        panic!("{reached:?}");
    };
    assert!(data.reason.contains("limit is 2"), "{}", data.reason);
    assert_eq!(invoicing_events(t, "auto_top_up.triggered").await.len(), 2);
}

async fn a_voided_top_up_invoice_disables_the_top_up(t: &Suite) {
    let customer = t.customer("Voided").await;
    fund(t, &customer, 3_000).await;
    set(t, top_up_request(&customer, 0)).await;
    drain(t, &customer, "void", 3, 1_000).await;
    tick_until_decided(t, 1).await;
    let bought = purchases(t, &customer).await;
    assert_eq!(bought.len(), 1);
    t.void(&bought[0].invoice).await.unwrap();
    let top_up = t
        .invoicing
        .clone()
        .get_auto_top_up(authed(
            KEY_A,
            pb::GetAutoTopUpRequest {
                customer: customer.clone(),
                asset: "usd".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .auto_top_up
        .unwrap();
    assert!(!top_up.enabled, "disabled by the voided invoice");
    assert_eq!(invoicing_events(t, "auto_top_up.disabled").await.len(), 1);
    let purchase = t
        .invoicing
        .clone()
        .get_credit_purchase(authed(
            KEY_A,
            pb::GetCreditPurchaseRequest {
                id: bought[0].id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_purchase
        .unwrap();
    assert_eq!(purchase.status(), pb::CreditPurchaseStatus::Void);
    // Setting it again enables it.
    let again = set(t, top_up_request(&customer, 0)).await;
    assert!(again.enabled);
    assert_eq!(again.id, top_up.id, "one top-up per customer and asset");
}

async fn a_bad_top_up_is_refused(t: &Suite) {
    let customer = t.customer("Bad").await;
    let cases = [
        (
            pb::SetAutoTopUpRequest {
                amount: None,
                ..top_up_request(&customer, 0)
            },
            "amount",
        ),
        (
            pb::SetAutoTopUpRequest {
                amount: None,
                recharge_to: usd(1_000),
                ..top_up_request(&customer, 0)
            },
            "recharge_to",
        ),
        (
            pb::SetAutoTopUpRequest {
                unit_amount_decimal: "abc".into(),
                ..top_up_request(&customer, 0)
            },
            "unit_amount_decimal",
        ),
        (
            pb::SetAutoTopUpRequest {
                limits: Some(pb::AutoTopUpLimits {
                    max_purchases: 0,
                    max_spend: Some(billing_proto::common::v1::Amount {
                        kind: Some(billing_proto::common::v1::amount::Kind::Monetary(
                            billing_proto::common::v1::MonetaryAmount {
                                currency: "eur".into(),
                                value: 100,
                            },
                        )),
                    }),
                }),
                ..top_up_request(&customer, 0)
            },
            "limits.max_spend",
        ),
    ];
    for (request, field) in cases {
        let status = t
            .invoicing
            .clone()
            .set_auto_top_up(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert_eq!(
            billing_testkit::bad_request_fields(&status),
            vec![field.to_owned()]
        );
    }
    let missing = t
        .invoicing
        .clone()
        .get_auto_top_up(authed(
            KEY_A,
            pb::GetAutoTopUpRequest {
                customer: customer.clone(),
                asset: "usd".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

backends!(
    a_crossing_buys_once_within_the_limits,
    a_voided_top_up_invoice_disables_the_top_up,
    a_bad_top_up_is_refused
);
