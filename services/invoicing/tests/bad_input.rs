//! Customers and prices, bad input and state conflicts: clear errors naming
//! the field, and nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use billing_testkit::bad_request_fields as fields_of;
use chrono::TimeDelta;
use common::*;
use tonic::Code;
use tonic_types::StatusExt;

backends!(
    customers_round_trip_and_stay_in_their_account,
    invalid_prices_name_the_field_and_write_nothing,
    price_decimals_are_refused_never_rounded,
    unknown_enum_numbers_are_refused,
    an_invoice_that_cannot_be_totalled_is_refused_not_saturated,
    counts_are_checked_before_items,
    subscriptions_refuse_mixed_currencies_and_unknown_ids,
    invoice_state_conflicts_are_failed_precondition,
    request_ids_replay_and_refuse_reuse,
);

async fn customers_round_trip_and_stay_in_their_account(t: &Suite) {
    let mut client = t.invoicing.clone();
    let created = client
        .create_customer(authed(
            KEY_A,
            pb::CreateCustomerRequest {
                external_id: "crm-42".into(),
                name: "Acme".into(),
                email: "billing@acme.test".into(),
                metadata: [("plan".to_owned(), "pro".to_owned())].into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert!(created.id.starts_with("cus_"));
    let by_external = client
        .get_customer(authed(
            KEY_A,
            pb::GetCustomerRequest {
                id: "crm-42".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(by_external, created);

    let taken = client
        .create_customer(authed(
            KEY_A,
            pb::CreateCustomerRequest {
                external_id: "crm-42".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    let bad = client
        .create_customer(authed(
            KEY_A,
            pb::CreateCustomerRequest {
                email: "not an email".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&bad), vec!["email"]);

    let updated = client
        .update_customer(authed(
            KEY_A,
            pb::UpdateCustomerRequest {
                id: created.id.clone(),
                name: Some("Acme Inc".into()),
                metadata: [
                    ("plan".to_owned(), String::new()),
                    ("tier".to_owned(), "gold".to_owned()),
                ]
                .into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(updated.name, "Acme Inc");
    assert_eq!(updated.email, "billing@acme.test");
    assert_eq!(
        updated.metadata,
        [("tier".to_owned(), "gold".to_owned())].into()
    );

    let listed = client
        .list_customers(authed(KEY_A, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1);

    // Account B sees nothing of A's.
    let hidden = client
        .get_customer(authed(
            KEY_B,
            pb::GetCustomerRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let none = client
        .list_customers(authed(KEY_B, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert!(none.is_empty());
    let unauthenticated = client
        .list_customers(tonic::Request::new(pb::ListCustomersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}

async fn invalid_prices_name_the_field_and_write_nothing(t: &Suite) {
    let meter = t.meter("calls").await;
    let base = pb::CreatePriceRequest {
        currency: "usd".into(),
        meter: meter.clone(),
        billing_scheme: pb::BillingScheme::PerUnit.into(),
        unit_amount_decimal: "1.5".into(),
        ..Default::default()
    };
    let cases: Vec<(pb::CreatePriceRequest, &str)> = vec![
        (
            pb::CreatePriceRequest {
                billing_scheme: 0,
                ..base.clone()
            },
            "billing_scheme",
        ),
        (
            pb::CreatePriceRequest {
                pricing_unit: "pu_x".into(),
                ..base.clone()
            },
            "currency",
        ),
        (
            pb::CreatePriceRequest {
                currency: "USD".into(),
                ..base.clone()
            },
            "currency",
        ),
        (
            pb::CreatePriceRequest {
                unit_amount_decimal: "abc".into(),
                ..base.clone()
            },
            "unit_amount_decimal",
        ),
        (
            pb::CreatePriceRequest {
                unit_amount_decimal: "-1".into(),
                ..base.clone()
            },
            "unit_amount_decimal",
        ),
        (
            pb::CreatePriceRequest {
                meter: String::new(),
                ..base.clone()
            },
            "meter",
        ),
        (
            pb::CreatePriceRequest {
                transform_quantity: Some(pb::TransformQuantity {
                    divide_by: 0,
                    round: pb::TransformRound::Up.into(),
                }),
                ..base.clone()
            },
            "transform_quantity.divide_by",
        ),
        (
            pb::CreatePriceRequest {
                billing_scheme: pb::BillingScheme::Tiered.into(),
                unit_amount_decimal: String::new(),
                tiers_mode: pb::TiersMode::Graduated.into(),
                tiers: vec![
                    pb::PriceTier {
                        up_to: String::new(),
                        unit_amount_decimal: "2".into(),
                        ..Default::default()
                    },
                    pb::PriceTier {
                        up_to: String::new(),
                        unit_amount_decimal: "1".into(),
                        ..Default::default()
                    },
                ],
                ..base.clone()
            },
            "tiers[0].up_to",
        ),
        (
            pb::CreatePriceRequest {
                billing_scheme: pb::BillingScheme::Tiered.into(),
                unit_amount_decimal: String::new(),
                tiers: vec![pb::PriceTier {
                    unit_amount_decimal: "2".into(),
                    ..Default::default()
                }],
                ..base.clone()
            },
            "tiers_mode",
        ),
    ];
    for (request, field) in cases {
        let error = t
            .invoicing
            .clone()
            .create_price(authed(KEY_A, request))
            .await
            .unwrap_err();
        assert!(
            fields_of(&error).contains(&field.to_owned()),
            "{field}: {error:?}"
        );
    }
    let unknown_meter = t
        .invoicing
        .clone()
        .create_price(authed(
            KEY_A,
            pb::CreatePriceRequest {
                meter: "mtr_nope".into(),
                ..base.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_meter.code(), Code::NotFound, "{unknown_meter:?}");
    let unknown_unit = t
        .invoicing
        .clone()
        .create_price(authed(
            KEY_A,
            pb::CreatePriceRequest {
                currency: String::new(),
                pricing_unit: "pu_nope".into(),
                ..base.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_unit.code(), Code::NotFound, "{unknown_unit:?}");
    let prices = t
        .invoicing
        .clone()
        .list_prices(authed(KEY_A, pb::ListPricesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .prices;
    assert!(prices.is_empty(), "nothing was written");

    // A valid tiered price round-trips.
    let tiered = t
        .create_price(pb::CreatePriceRequest {
            billing_scheme: pb::BillingScheme::Tiered.into(),
            unit_amount_decimal: String::new(),
            tiers_mode: pb::TiersMode::Volume.into(),
            tiers: vec![
                pb::PriceTier {
                    up_to: "100".into(),
                    unit_amount_decimal: "2".into(),
                    flat_amount_decimal: "0".into(),
                },
                pb::PriceTier {
                    up_to: String::new(),
                    unit_amount_decimal: "1.5".into(),
                    flat_amount_decimal: "100".into(),
                },
            ],
            transform_quantity: Some(pb::TransformQuantity {
                divide_by: 10,
                round: pb::TransformRound::Up.into(),
            }),
            ..base.clone()
        })
        .await;
    let fetched = t
        .invoicing
        .clone()
        .get_price(authed(
            KEY_A,
            pb::GetPriceRequest {
                id: tiered.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap();
    assert_eq!(fetched, tiered);
    assert_eq!(fetched.tiers_mode(), pb::TiersMode::Volume);
    let inactive = t
        .invoicing
        .clone()
        .deactivate_price(authed(
            KEY_A,
            pb::DeactivatePriceRequest {
                id: tiered.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap();
    assert!(!inactive.active);
}

/// A price amount with more precision than it may carry is refused naming
/// the field: never stored rounded (a 1e-31 price was stored as 0 before).
async fn price_decimals_are_refused_never_rounded(t: &Suite) {
    let meter = t.meter("calls").await;
    let per_unit = |amount: &str| pb::CreatePriceRequest {
        currency: "usd".into(),
        meter: meter.clone(),
        billing_scheme: pb::BillingScheme::PerUnit.into(),
        unit_amount_decimal: amount.into(),
        ..Default::default()
    };
    let tiered = |flat: &str| pb::CreatePriceRequest {
        billing_scheme: pb::BillingScheme::Tiered.into(),
        unit_amount_decimal: String::new(),
        tiers_mode: pb::TiersMode::Graduated.into(),
        tiers: vec![pb::PriceTier {
            up_to: String::new(),
            unit_amount_decimal: "1".into(),
            flat_amount_decimal: flat.into(),
        }],
        ..per_unit("")
    };
    let tiny = format!("0.{}1", "0".repeat(30));
    let cases = [
        (per_unit(&tiny), "unit_amount_decimal"),
        (
            per_unit("1.0000000000000000000000000000001"),
            "unit_amount_decimal",
        ),
        (per_unit("0.1234567890123"), "unit_amount_decimal"),
        (per_unit(&"9".repeat(80)), "unit_amount_decimal"),
        (tiered("0.0000000000001"), "tiers[0].flat_amount_decimal"),
    ];
    for (request, field) in cases {
        let status = t
            .invoicing
            .clone()
            .create_price(authed(KEY_A, request.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert_eq!(fields_of(&status), vec![field.to_owned()], "{request:?}");
        assert!(status.message().len() < 1024);
    }
    // Twelve places is the limit, and trailing zeros are not precision.
    for amount in ["0.123456789012", "2.500000000000000"] {
        t.invoicing
            .clone()
            .create_price(authed(KEY_A, per_unit(amount)))
            .await
            .unwrap();
    }
    let listed = t
        .invoicing
        .clone()
        .list_prices(authed(KEY_A, pb::ListPricesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .prices;
    assert_eq!(listed.len(), 2, "only the two valid prices were written");
}

/// An enum number that means nothing (99), or an enum that does not apply,
/// is INVALID_ARGUMENT naming the field, never read as "unset".
async fn unknown_enum_numbers_are_refused(t: &Suite) {
    let meter = t.meter("calls").await;
    let customer = t.customer("Acme").await;
    let price = pb::CreatePriceRequest {
        currency: "usd".into(),
        meter,
        billing_scheme: pb::BillingScheme::PerUnit.into(),
        unit_amount_decimal: "1".into(),
        ..Default::default()
    };
    let mut client = t.invoicing.clone();
    for (request, field) in [
        (
            pb::CreatePriceRequest {
                tiers_mode: 99,
                ..price.clone()
            },
            "tiers_mode",
        ),
        (
            pb::CreatePriceRequest {
                tiers_mode: pb::TiersMode::Volume.into(),
                ..price.clone()
            },
            "tiers_mode",
        ),
        (
            pb::CreatePriceRequest {
                billing_scheme: 99,
                ..price.clone()
            },
            "billing_scheme",
        ),
        (
            pb::CreatePriceRequest {
                transform_quantity: Some(pb::TransformQuantity {
                    divide_by: 10,
                    round: 42,
                }),
                ..price.clone()
            },
            "transform_quantity.round",
        ),
    ] {
        let status = client
            .create_price(authed(KEY_A, request.clone()))
            .await
            .unwrap_err();
        assert_eq!(fields_of(&status), vec![field.to_owned()], "{request:?}");
    }
    let price_id = client
        .create_price(authed(KEY_A, price))
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap()
        .id;
    let status = client
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer,
                items: vec![pb::SubscriptionItemInput {
                    price: price_id.clone(),
                }],
                billing_interval: 7,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&status), vec!["billing_interval".to_owned()]);
    // A start in year 9999 (its period end would be no valid Timestamp).
    let year_9999 = prost_types::Timestamp {
        seconds: 253_402_214_400,
        nanos: 0,
    };
    let status = client
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer: t.customer("Later").await,
                items: vec![pb::SubscriptionItemInput {
                    price: price_id.clone(),
                }],
                billing_interval: pb::BillingInterval::Year.into(),
                start_date: Some(year_9999),
                billing_cycle_anchor: Some(year_9999),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        fields_of(&status),
        vec!["billing_cycle_anchor".to_owned(), "start_date".to_owned()]
    );
    let status = client
        .list_invoices(authed(
            KEY_A,
            pb::ListInvoicesRequest {
                status: 99,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields_of(&status), vec!["status".to_owned()]);
}

/// Two lines of 5·10^18 cents each fit in i64, their sum does not: the draft
/// is refused with a reason when it is built (it was stored with a subtotal
/// of i64::MAX, and finalizing it then stuck).
async fn an_invoice_that_cannot_be_totalled_is_refused_not_saturated(t: &Suite) {
    let customer = t.customer("Whale").await;
    let first = t.meter("big_a").await;
    let second = t.meter("big_b").await;
    let prices = [
        t.per_unit_price(&first, "5000000000000000000").await,
        t.per_unit_price(&second, "5000000000000000000").await,
    ];
    let sub = t.subscribe(&customer, &[&prices[0], &prices[1]]).await;
    let at = t0() + TimeDelta::days(1);
    t.usage("big_a", &customer, at, &[("a-1", "1")]).await;
    t.usage("big_b", &customer, at, &[("b-1", "1")]).await;
    let preview = t.preview(&sub.id).await.unwrap_err();
    assert_eq!(preview.code(), Code::FailedPrecondition);
    assert!(
        preview.message().contains("cannot be totalled"),
        "{}",
        preview.message()
    );
    // The period ends: no draft is stored, and CreateInvoice says why.
    let report = t.advance_to(t0() + TimeDelta::days(40)).await;
    assert_eq!(report.subscriptions_closed, 0);
    let status = t
        .invoicing
        .clone()
        .create_invoice(authed(
            KEY_A,
            pb::CreateInvoiceRequest {
                subscription: sub.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let listed = t
        .invoicing
        .clone()
        .list_invoices(authed(KEY_A, pb::ListInvoicesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.invoices.is_empty(), "{listed:?}");
}

/// 100,000 subscription items get one violation naming `items` (it was a
/// 3.9 MB BadRequest listing every item), and a short error.
async fn counts_are_checked_before_items(t: &Suite) {
    let customer = t.customer("Many").await;
    let items = (0..100_000)
        .map(|i| pb::SubscriptionItemInput {
            price: format!("price_{i}"),
        })
        .collect();
    let status = t
        .invoicing
        .clone()
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer,
                items,
                billing_interval: pb::BillingInterval::Month.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields_of(&status), vec!["items".to_owned()]);
    assert!(status.message().len() < 1024);
    assert!(
        status.details().len() < 1024,
        "{} bytes of details",
        status.details().len()
    );
}

async fn subscriptions_refuse_mixed_currencies_and_unknown_ids(t: &Suite) {
    let meter = t.meter("calls").await;
    let usd = t.per_unit_price(&meter, "1").await;
    let eur = t
        .create_price(pb::CreatePriceRequest {
            currency: "eur".into(),
            meter: meter.clone(),
            billing_scheme: pb::BillingScheme::PerUnit.into(),
            unit_amount_decimal: "1".into(),
            ..Default::default()
        })
        .await
        .id;
    let customer = t.customer("Acme").await;
    let request = |prices: &[&str]| pb::CreateSubscriptionRequest {
        customer: customer.clone(),
        items: prices
            .iter()
            .map(|p| pb::SubscriptionItemInput { price: (*p).into() })
            .collect(),
        billing_interval: pb::BillingInterval::Month.into(),
        ..Default::default()
    };
    let mut client = t.invoicing.clone();
    let mixed = client
        .create_subscription(authed(KEY_A, request(&[&usd, &eur])))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&mixed), vec!["items[1].price"]);
    assert!(
        mixed.message().contains("eur")
            || format!("{:?}", mixed.get_error_details()).contains("eur")
    );

    let twice = client
        .create_subscription(authed(KEY_A, request(&[&usd, &usd])))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&twice), vec!["items[1].price"]);

    let no_interval = client
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                billing_interval: 0,
                ..request(&[&usd])
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&no_interval), vec!["billing_interval"]);

    let far_anchor = client
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                billing_cycle_anchor: ts(t0() + TimeDelta::days(45)),
                ..request(&[&usd])
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&far_anchor), vec!["billing_cycle_anchor"]);

    let unknown_price = client
        .create_subscription(authed(KEY_A, request(&["price_nope"])))
        .await
        .unwrap_err();
    assert_eq!(unknown_price.code(), Code::NotFound);
    let unknown_customer = client
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer: "cus_nope".into(),
                ..request(&[&usd])
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_customer.code(), Code::NotFound);

    client
        .deactivate_price(authed(
            KEY_A,
            pb::DeactivatePriceRequest {
                id: eur.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let inactive = client
        .create_subscription(authed(KEY_A, request(&[&eur])))
        .await
        .unwrap_err();
    assert_eq!(inactive.code(), Code::FailedPrecondition);

    let subs = client
        .list_subscriptions(authed(KEY_A, pb::ListSubscriptionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert!(subs.is_empty(), "nothing was written");
}

async fn invoice_state_conflicts_are_failed_precondition(t: &Suite) {
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Acme").await;
    let sub = t.subscribe(&customer, &[&price]).await;
    t.usage(
        "calls",
        &customer,
        t0() + TimeDelta::days(1),
        &[("e1", "10")],
    )
    .await;
    t.advance_to(t0() + TimeDelta::days(31)).await;
    let draft = t.create_invoice(&sub.id).await;
    let mut client = t.invoicing.clone();

    let void_draft = t.void(&draft.id).await.unwrap_err();
    assert_eq!(void_draft.code(), Code::FailedPrecondition);
    let pay_draft = client
        .mark_invoice_paid(authed(
            KEY_A,
            pb::MarkInvoicePaidRequest {
                id: draft.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(pay_draft.code(), Code::FailedPrecondition);
    assert_eq!(t.invoice(&draft.id).await, draft, "nothing changed");

    let open = t.finalize(&draft.id).await.unwrap();
    assert_eq!(open.status(), pb::InvoiceStatus::Open);
    let paid = client
        .mark_invoice_paid(authed(
            KEY_A,
            pb::MarkInvoicePaidRequest {
                id: draft.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    assert_eq!(paid.status(), pb::InvoiceStatus::Paid);
    assert!(paid.paid_at.is_some());
    let void_paid = t.void(&draft.id).await.unwrap_err();
    assert_eq!(void_paid.code(), Code::FailedPrecondition);
    assert_eq!(
        void_paid
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone()),
        Some("INVOICE_PAID".into())
    );

    let missing = t.finalize("in_nope").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let hidden = client
        .get_invoice(authed(
            KEY_B,
            pb::GetInvoiceRequest {
                id: draft.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let empty = client
        .finalize_invoice(authed(KEY_A, pb::FinalizeInvoiceRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&empty), vec!["id"]);
}

async fn request_ids_replay_and_refuse_reuse(t: &Suite) {
    let mut client = t.invoicing.clone();
    let request = pb::CreateCustomerRequest {
        request_id: "req-1".into(),
        name: "Acme".into(),
        ..Default::default()
    };
    let first = client
        .create_customer(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let replay = client
        .create_customer(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, replay);
    let reused = client
        .create_customer(authed(
            KEY_A,
            pb::CreateCustomerRequest {
                name: "Other".into(),
                ..request
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(
        reused
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone()),
        Some("IDEMPOTENCY_KEY_REUSED".into())
    );
    let listed = client
        .list_customers(authed(KEY_A, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1);
}
