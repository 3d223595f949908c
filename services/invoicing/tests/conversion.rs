//! Overage conversion (DESIGN.md §13) through the real services: what
//! credits in a pricing unit do not cover on a line priced in the unit is
//! due in the unit's currency, converted at the rate frozen at finalize,
//! rounded once per line; a later rate change never reaches that invoice;
//! a preview converts at today's rate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::common::v1 as cm;
use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::value_of;
use billing_testkit::{authed, bad_request_fields};
use chrono::{Months, TimeDelta};
use common::*;
use tonic::Code;

backends!(
    uncovered_units_convert_at_the_rate_frozen_at_finalize,
    bad_rates_are_refused_and_nothing_changes,
);

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

fn rate(currency: &str, unit_amount_decimal: &str) -> Option<ledger::Conversion> {
    Some(ledger::Conversion {
        currency: currency.into(),
        unit_amount_decimal: unit_amount_decimal.into(),
    })
}

async fn update_unit(
    t: &Suite,
    request: ledger::UpdatePricingUnitRequest,
) -> Result<ledger::PricingUnit, tonic::Status> {
    t.ledger
        .clone()
        .update_pricing_unit(authed(KEY_A, request))
        .await
        .map(|r| r.into_inner().pricing_unit.unwrap())
}

/// A unit of scale 1 worth 1.2¢ (0.012 usd) a credit, and a price of one
/// credit per unit of usage on a new meter.
async fn setup(t: &Suite) -> (String, String, String) {
    let unit = t.pricing_unit("Credits", 1, rate("usd", "1.2")).await;
    assert_eq!(unit.conversion, rate("usd", "1.2"));
    let meter = t.meter("tokens").await;
    let price = t
        .create_price(pb::CreatePriceRequest {
            pricing_unit: unit.id.clone(),
            meter: meter.clone(),
            billing_scheme: pb::BillingScheme::PerUnit.into(),
            // Per unit of usage, in the unit's smallest unit (0.1 credit).
            unit_amount_decimal: "10".into(),
            ..Default::default()
        })
        .await
        .id;
    (unit.id, meter, price)
}

async fn uncovered_units_convert_at_the_rate_frozen_at_finalize(t: &Suite) {
    let (unit, _, price) = setup(t).await;
    let customer = t.customer("Converts").await;
    t.grant(ledger::CreateCreditGrantRequest {
        customer: customer.clone(),
        amount: units(&unit, "1000"),
        applicability_config: billing_testkit::fixtures::metered(),
        ..Default::default()
    })
    .await;
    let sub = t.subscribe(&customer, &[&price]).await;
    t.usage(
        "tokens",
        &customer,
        t0() + TimeDelta::days(2),
        &[("a", "1250.5")],
    )
    .await;
    t.advance_to(t0().checked_add_months(Months::new(1)).unwrap())
        .await;
    let draft = t.create_invoice(&sub.id).await;
    assert_eq!(draft.lines[0].conversion, None, "a draft converts nothing");
    let done = t.finalize(&draft.id).await.unwrap();

    // 1,000 credits applied; 250.5 converted at 1.2¢ = 300.6¢ → 301¢.
    let line = &done.lines[0];
    assert_eq!(unit_value_of(&line.amount), "1250.5");
    assert_eq!(unit_value_of(&line.credits_applied), "1000.0");
    assert_eq!(unit_value_of(&line.amount_due), "0.0");
    let conversion = line.conversion.clone().expect("converted");
    assert_eq!(conversion.unit_amount_decimal, "1.2");
    assert_eq!(unit_value_of(&conversion.converted), "250.5");
    assert_eq!(value_of(&conversion.amount_due), 301);
    // Totals by asset key: the unit (nothing left due in it), usd (301¢).
    let (in_unit, in_usd) = (&done.totals[0], &done.totals[1]);
    assert_eq!(unit_value_of(&in_unit.converted), "250.5");
    assert_eq!(unit_value_of(&in_unit.amount_due), "0.0");
    assert_eq!(value_of(&in_usd.subtotal), 0);
    assert_eq!(value_of(&in_usd.from_conversions), 301);
    assert_eq!(value_of(&in_usd.amount_due), 301);
    assert_eq!(done.status(), pb::InvoiceStatus::Open, "301¢ are due");

    // A new rate applies from now on, never to this invoice.
    let updated = update_unit(
        t,
        ledger::UpdatePricingUnitRequest {
            id: unit.clone(),
            conversion: rate("usd", "2"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.conversion, rate("usd", "2"));
    assert_eq!(t.invoice(&draft.id).await, done);
    assert_eq!(t.finalize(&draft.id).await.unwrap(), done, "a retry too");

    // The next period's preview converts at today's rate: 100 credits
    // uncovered (the grant is spent) at 2¢ = 200¢.
    let next = t0().checked_add_months(Months::new(1)).unwrap() + TimeDelta::days(3);
    t.usage("tokens", &customer, next, &[("b", "100")]).await;
    let preview = t.preview(&sub.id).await.unwrap();
    let conversion = preview.lines[0].conversion.clone().expect("converted");
    assert_eq!(
        (
            conversion.unit_amount_decimal.as_str(),
            value_of(&conversion.amount_due)
        ),
        ("2", 200)
    );
    // The real-time balance converts the same way.
    let balance = t.customer_balance(&customer).await;
    assert_eq!(unit_value_of(&balance[0].overage), "100.0");
    assert_eq!(value_of(&balance[0].overage_converted), 200);

    // Without a rate, uncovered units stay due in the unit.
    update_unit(
        t,
        ledger::UpdatePricingUnitRequest {
            id: unit.clone(),
            remove_conversion: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    t.advance_to(t0().checked_add_months(Months::new(2)).unwrap())
        .await;
    let second = t.create_invoice(&sub.id).await;
    let second = t.finalize(&second.id).await.unwrap();
    assert_eq!(second.lines[0].conversion, None);
    assert_eq!(unit_value_of(&second.lines[0].amount_due), "100.0");
    assert_eq!(second.totals.len(), 1, "no usd total: {:?}", second.totals);
}

async fn bad_rates_are_refused_and_nothing_changes(t: &Suite) {
    let created = t
        .ledger
        .clone()
        .create_pricing_unit(authed(
            KEY_A,
            ledger::CreatePricingUnitRequest {
                display_name: "Bad".into(),
                scale: 2,
                conversion: rate("USD", "0"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bad_request_fields(&created),
        ["conversion.currency", "conversion.unit_amount_decimal"]
    );
    let (unit, _, _) = setup(t).await;
    let both = update_unit(
        t,
        ledger::UpdatePricingUnitRequest {
            id: unit.clone(),
            conversion: rate("usd", "0.0000000000001"),
            remove_conversion: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        bad_request_fields(&both),
        ["conversion.unit_amount_decimal", "remove_conversion"]
    );
    let missing = update_unit(
        t,
        ledger::UpdatePricingUnitRequest {
            id: "pu_missing".into(),
            display_name: Some("x".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    // Another account's unit is unknown too.
    let other = t
        .ledger
        .clone()
        .update_pricing_unit(authed(
            KEY_B,
            ledger::UpdatePricingUnitRequest {
                id: unit.clone(),
                display_name: Some("Mine".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let unchanged = t
        .ledger
        .clone()
        .get_pricing_unit(authed(KEY_A, ledger::GetPricingUnitRequest { id: unit }))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap();
    assert_eq!(
        (unchanged.display_name.as_str(), unchanged.conversion),
        ("Credits", rate("usd", "1.2"))
    );
}
