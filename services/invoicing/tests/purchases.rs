//! Credit purchases through the real services (DESIGN.md §11): the invoice
//! line, the cost basis on the grant and its transactions, the pending
//! state until MarkInvoicePaid, voiding with the unpaid invoice, credits in
//! a pricing unit, and credits never paying a purchase invoice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::common::v1 as cm;
use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::{usd, value_of};
use billing_testkit::{authed, bad_request_fields};
use common::*;

async fn buy(t: &Suite, request: pb::CreateCreditPurchaseRequest) -> pb::CreditPurchase {
    t.invoicing
        .clone()
        .create_credit_purchase(authed(KEY_A, request))
        .await
        .expect("purchase created")
        .into_inner()
        .credit_purchase
        .unwrap()
}

async fn grant(t: &Suite, id: &str) -> ledger::CreditGrant {
    t.ledger
        .clone()
        .get_credit_grant(authed(
            KEY_A,
            ledger::GetCreditGrantRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap()
}

async fn summary(t: &Suite, customer: &str) -> ledger::CreditBalance {
    t.ledger
        .clone()
        .get_credit_balance_summary(authed(
            KEY_A,
            ledger::GetCreditBalanceSummaryRequest {
                customer: customer.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .balances
        .remove(0)
}

async fn mark_paid(t: &Suite, invoice: &str) -> pb::Invoice {
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
        .unwrap()
        .into_inner()
        .invoice
        .unwrap()
}

async fn purchase_status(t: &Suite, id: &str) -> pb::CreditPurchaseStatus {
    t.invoicing
        .clone()
        .get_credit_purchase(authed(
            KEY_A,
            pb::GetCreditPurchaseRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_purchase
        .unwrap()
        .status()
}

async fn paid_credits_wait_for_the_invoice(t: &Suite) {
    let customer = t.customer("Buyer").await;
    // Promotional credits the customer already has: they must not pay the
    // purchase invoice.
    t.grant(ledger::CreateCreditGrantRequest {
        customer: customer.clone(),
        amount: usd(10_000),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: Vec::new(),
            }),
        }),
        category: ledger::CreditGrantCategory::Promotional.into(),
        ..Default::default()
    })
    .await;
    // $50.00 of usd credits at 90¢ per dollar of credits: $45.00.
    let purchase = buy(
        t,
        pb::CreateCreditPurchaseRequest {
            customer: customer.clone(),
            credits: usd(5_000),
            currency: "usd".into(),
            unit_amount_decimal: "90".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(purchase.status(), pb::CreditPurchaseStatus::PendingPayment);
    assert_eq!(value_of(&purchase.amount), 4_500);
    assert!(purchase.require_successful_payment, "the default");

    let invoice = t.invoice(&purchase.invoice).await;
    assert_eq!(invoice.billing_reason(), pb::BillingReason::CreditPurchase);
    assert_eq!(invoice.status(), pb::InvoiceStatus::Open);
    assert_eq!(invoice.lines.len(), 1);
    assert_eq!(
        invoice.lines[0].description,
        "50 usd credits × 90 per credit"
    );
    assert_eq!(value_of(&invoice.totals[0].subtotal), 4_500);
    assert_eq!(
        value_of(&invoice.totals[0].total_credits_applied),
        0,
        "credits never pay a purchase invoice"
    );
    assert_eq!(value_of(&invoice.totals[0].amount_due), 4_500);

    let bought = grant(t, &purchase.credit_grant).await;
    assert_eq!(bought.state(), ledger::CreditGrantState::PendingPayment);
    assert_eq!(bought.category(), ledger::CreditGrantCategory::Paid);
    let cost = bought.cost_basis.clone().unwrap();
    assert_eq!(
        (cost.currency.as_str(), cost.unit_amount_decimal.as_str()),
        ("usd", "90")
    );
    let source = bought.source.clone().unwrap();
    assert_eq!(source.r#type(), ledger::CreditGrantSourceType::Purchase);
    assert_eq!(source.credit_purchase, purchase.id);
    let balance = summary(t, &customer).await;
    assert_eq!(
        value_of(&balance.available_balance),
        10_000,
        "not spendable yet"
    );
    assert_eq!(value_of(&balance.pending_balance), 5_000);
    assert_eq!(value_of(&balance.ledger_balance), 15_000);

    // Paid (twice: the second call returns the paid invoice and changes
    // nothing): spendable once.
    let paid = mark_paid(t, &purchase.invoice).await;
    assert_eq!(mark_paid(t, &purchase.invoice).await, paid);
    assert_eq!(
        purchase_status(t, &purchase.id).await,
        pb::CreditPurchaseStatus::Active
    );
    let bought = grant(t, &purchase.credit_grant).await;
    assert_eq!(bought.state(), ledger::CreditGrantState::Granted);
    let balance = summary(t, &customer).await;
    assert_eq!(value_of(&balance.available_balance), 15_000);
    assert_eq!(value_of(&balance.pending_balance), 0);
    // The cost basis is on the grant's balance transactions too.
    let transactions = t
        .ledger
        .clone()
        .list_credit_balance_transactions(authed(
            KEY_A,
            ledger::ListCreditBalanceTransactionsRequest {
                customer: customer.clone(),
                credit_grant: purchase.credit_grant.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_balance_transactions;
    assert_eq!(transactions.len(), 1);
    assert_eq!(transactions[0].cost_basis, Some(cost));
    let grants = t
        .ledger
        .clone()
        .list_credit_grants(authed(
            KEY_A,
            ledger::ListCreditGrantsRequest {
                customer: customer.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    assert_eq!(grants.len(), 2, "one grant per purchase");
}

async fn voiding_the_unpaid_invoice_voids_the_credits(t: &Suite) {
    let customer = t.customer("Buyer").await;
    let purchase = buy(
        t,
        pb::CreateCreditPurchaseRequest {
            request_id: "buy-1".into(),
            customer: customer.clone(),
            credits: usd(2_000),
            currency: "usd".into(),
            unit_amount_decimal: "100".into(),
            ..Default::default()
        },
    )
    .await;
    // A replay is the same purchase.
    let replay = buy(
        t,
        pb::CreateCreditPurchaseRequest {
            request_id: "buy-1".into(),
            customer: customer.clone(),
            credits: usd(2_000),
            currency: "usd".into(),
            unit_amount_decimal: "100".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(replay.id, purchase.id);
    t.void(&purchase.invoice).await.unwrap();
    assert_eq!(
        purchase_status(t, &purchase.id).await,
        pb::CreditPurchaseStatus::Void
    );
    let voided = grant(t, &purchase.credit_grant).await;
    assert_eq!(voided.state(), ledger::CreditGrantState::Voided);
    assert_eq!(value_of(&summary(t, &customer).await.ledger_balance), 0);
}

async fn credits_in_a_pricing_unit_without_payment_are_usable_at_once(t: &Suite) {
    let unit = t.pricing_unit("API credits", 2, None).await.id;
    let customer = t.customer("Net terms").await;
    // 1,000.50 credits at 0.5¢: 500.25¢ → 500¢ (rounded once).
    let purchase = buy(
        t,
        pb::CreateCreditPurchaseRequest {
            customer: customer.clone(),
            credits: Some(cm::Amount {
                kind: Some(cm::amount::Kind::CustomPricingUnit(
                    cm::CustomPricingUnitAmount {
                        id: unit.clone(),
                        value: "1000.50".into(),
                    },
                )),
            }),
            currency: "usd".into(),
            unit_amount_decimal: "0.5".into(),
            require_successful_payment: Some(false),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(purchase.status(), pb::CreditPurchaseStatus::Active);
    assert_eq!(value_of(&purchase.amount), 500);
    let bought = grant(t, &purchase.credit_grant).await;
    assert_eq!(bought.state(), ledger::CreditGrantState::Granted);
    assert_eq!(unit_value_of(&bought.available), "1000.50");
}

async fn a_bad_purchase_is_refused_and_nothing_is_written(t: &Suite) {
    let customer = t.customer("Buyer").await;
    let base = pb::CreateCreditPurchaseRequest {
        customer: customer.clone(),
        credits: usd(1_000),
        currency: "usd".into(),
        unit_amount_decimal: "1".into(),
        ..Default::default()
    };
    let cases = [
        (
            pb::CreateCreditPurchaseRequest {
                credits: usd(0),
                ..base.clone()
            },
            "credits.monetary.value",
        ),
        (
            pb::CreateCreditPurchaseRequest {
                unit_amount_decimal: "0.0000000000001".into(),
                ..base.clone()
            },
            "unit_amount_decimal",
        ),
        (
            pb::CreateCreditPurchaseRequest {
                unit_amount_decimal: "-1".into(),
                ..base.clone()
            },
            "unit_amount_decimal",
        ),
        (
            pb::CreateCreditPurchaseRequest {
                currency: "USD".into(),
                ..base.clone()
            },
            "currency",
        ),
        (
            pb::CreateCreditPurchaseRequest {
                priority: Some(101),
                ..base.clone()
            },
            "priority",
        ),
        (
            pb::CreateCreditPurchaseRequest {
                prices: vec!["price_nowhere".into()],
                ..base.clone()
            },
            "prices[0]",
        ),
    ];
    for (request, field) in cases {
        let status = t
            .invoicing
            .clone()
            .create_credit_purchase(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert_eq!(bad_request_fields(&status), vec![field.to_owned()]);
    }
    let other = t
        .invoicing
        .clone()
        .create_credit_purchase(authed(
            KEY_B,
            pb::CreateCreditPurchaseRequest { ..base.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        other.code(),
        tonic::Code::NotFound,
        "another account's customer"
    );
    let purchases = t
        .invoicing
        .clone()
        .list_credit_purchases(authed(KEY_A, pb::ListCreditPurchasesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .credit_purchases;
    assert!(purchases.is_empty());
    let invoices = t
        .invoicing
        .clone()
        .list_invoices(authed(KEY_A, pb::ListInvoicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert!(invoices.is_empty());
}

backends!(
    paid_credits_wait_for_the_invoice,
    voiding_the_unpaid_invoice_voids_the_credits,
    credits_in_a_pricing_unit_without_payment_are_usable_at_once,
    a_bad_purchase_is_refused_and_nothing_is_written
);
