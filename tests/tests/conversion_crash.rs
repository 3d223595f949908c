//! Overage conversion across kill -9 of invoicing (real processes, both
//! backends): invoicing dies right after the ledger applied an invoice's
//! credits; the unit's rate changes while the invoice waits in
//! `finalizing`; the restarted process completes it at the rate frozen
//! before the crash, and the credits were applied once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::common::v1 as cm;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_server::time::to_proto;
use billing_testkit::Backend;
use chrono::{Months, TimeDelta, Utc};

fn rate(unit_amount_decimal: &str) -> Option<ledger::Conversion> {
    Some(ledger::Conversion {
        currency: "usd".into(),
        unit_amount_decimal: unit_amount_decimal.into(),
    })
}

fn units(unit: &str, value: &str) -> Option<cm::Amount> {
    Some(cm::Amount {
        kind: Some(cm::amount::Kind::CustomPricingUnit(
            cm::CustomPricingUnitAmount {
                id: unit.into(),
                value: value.into(),
            },
        )),
    })
}

async fn check(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_apply_credits"),
    );
    let start = clock_now(&mut c).await;

    // Credits worth 1.2¢ each, a price of one credit per unit of usage,
    // 1,000 credits granted and 1,250.5 used.
    let unit = c
        .ledger
        .create_pricing_unit(authed(ledger::CreatePricingUnitRequest {
            display_name: "Credits".into(),
            scale: 1,
            conversion: rate("1.2"),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap()
        .id;
    let meter_id = sum_meter(&mut c, "conv_tokens", "tokens").await;
    let price = c
        .invoicing
        .create_price(authed(inv::CreatePriceRequest {
            pricing_unit: unit.clone(),
            meter: meter_id,
            billing_scheme: inv::BillingScheme::PerUnit.into(),
            unit_amount_decimal: "10".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap()
        .id;
    let customer = customer_named(&mut c, "Converts").await;
    c.ledger
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: customer.clone(),
            name: "credits".into(),
            amount: units(&unit, "1000"),
            applicability_config: Some(ledger::ApplicabilityConfig {
                scope: Some(ledger::ApplicabilityScope {
                    price_type: ledger::PriceType::Metered.into(),
                    prices: Vec::new(),
                }),
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let subscription = c
        .invoicing
        .create_subscription(authed(inv::CreateSubscriptionRequest {
            customer: customer.clone(),
            items: vec![inv::SubscriptionItemInput { price }],
            billing_interval: inv::BillingInterval::Month.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
        .id;
    let mut payload = BTreeMap::new();
    payload.insert("customer".to_owned(), customer.clone());
    payload.insert("value".to_owned(), "1250.5".to_owned());
    c.meter
        .ingest_events(authed(meter::IngestEventsRequest {
            events: vec![meter::MeterEvent {
                event_name: "conv_tokens".into(),
                identifier: "conv-1".into(),
                timestamp: Some(to_proto(Utc::now())),
                payload,
            }],
        }))
        .await
        .unwrap();
    advance(
        &mut c,
        start.checked_add_months(Months::new(1)).unwrap() + TimeDelta::seconds(1),
    )
    .await;
    let draft = c
        .invoicing
        .list_invoices(authed(inv::ListInvoicesRequest {
            subscription,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .invoices
        .remove(0);

    // Invoicing dies right after the ledger applied the 1,000 credits.
    finalize(&mut c, &draft.id).await.unwrap_err();
    let status = crashing.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "the failpoint aborted the process");
    // The rate changes while the invoice waits in `finalizing`.
    c.ledger
        .update_pricing_unit(authed(ledger::UpdatePricingUnitRequest {
            id: unit.clone(),
            conversion: rate("2"),
            ..Default::default()
        }))
        .await
        .unwrap();

    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let open = recovered(&mut c, &draft.id).await;
    assert_eq!(open.status(), inv::InvoiceStatus::Open);
    let conversion = open.lines[0].conversion.clone().expect("converted");
    // 250.5 credits at the frozen 1.2¢ = 300.6¢ → 301¢ (not 2¢'s 501¢).
    assert_eq!(conversion.unit_amount_decimal, "1.2");
    assert_eq!(value_of(&conversion.amount_due), 301);
    let debits = c
        .ledger
        .list_credit_balance_transactions(authed(ledger::ListCreditBalanceTransactionsRequest {
            customer: customer.clone(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_balance_transactions
        .into_iter()
        .filter(|t| t.debit.is_some())
        .count();
    assert_eq!(debits, 1, "the credits were applied once");
    assert_eq!(finalize(&mut c, &draft.id).await.unwrap(), open);

    drop(restarted);
    drop(meter_process);
    drop(ledger_process);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_finalize_keeps_the_frozen_rate_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_finalize_keeps_the_frozen_rate_on_postgres() {
    check(Backend::Postgres).await;
}
