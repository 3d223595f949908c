//! Every query the three services run (the notifier's: its own plan test)
//! costs in proportion to the object it
//! touches, never to the account's whole table (issue 11, item 11).
//!
//! The test drives every RPC of every service (and the worker and the
//! ledger's sweeper) against PostgreSQL while a tracing layer records each
//! statement sqlx sends. Each recorded SELECT/INSERT/UPDATE/DELETE is then
//! prepared on its service's database and explained with the generic plan
//! (the one a prepared statement gets for any parameters) and sequential
//! scans disabled. The plan must contain no sequential scan; every index it
//! uses must be used with a condition on the index's leading column (a
//! prefix of the index matches the filter), or be a partial index whose
//! predicate is the filter; and a parameter compared after the index (a
//! `Filter`) must follow an index condition that already narrows to one
//! object (an equality on a column other than `account` and `status`). A
//! query the indexes cannot serve fails here whatever the table sizes; the
//! sizes are left to the flat-p99 benchmark (`just bench-scale`).
//!
//! PostgreSQL only: SQLite's planner is checked by the same indexes (the
//! migrations create them on both backends).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[macro_use]
mod plan_check;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_testkit::{Backend, Harness};
use chrono::TimeDelta;
use common::*;
use plan_check::Recorder;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_uses_an_index_prefix() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
        .expect("the only subscriber in this binary");
    let Some(t) = Suite::start(Backend::Postgres).await else {
        return;
    };
    workload(&t).await;

    // The notifier's RPCs have their own plan test
    // (services/notifier/tests/plans.rs); the test clock is not a product RPC.
    let missed = plan_check::missed(|path| {
        !path.starts_with("/billing.webhooks.") && !path.ends_with("TestClock")
    });
    assert!(missed.is_empty(), "the workload never called {missed:?}");

    let (explained, failures) = {
        // Invoicing's database first: its events table has every index the
        // others' have and `events_by_subject`, which only its statements use.
        let [ledger, meter, invoicing] = t.database_urls();
        plan_check::check_recorded(&[invoicing, ledger, meter]).await
    };
    println!("{explained} distinct statements explained");
    t.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(explained > 60, "only {explained} statements were recorded");
}

/// Calls every RPC (most of them more than one way: filters, second pages)
/// and runs the background jobs.
async fn workload(t: &Suite) {
    let mut meter_client = t.meter.clone();
    let mut ledger_client = t.ledger.clone();
    let mut invoicing = t.invoicing.clone();

    // Meters.
    let api_calls = t.meter("api_calls").await;
    let spare = t.meter("spare").await;
    plan_check::CALLED.lock().unwrap().insert("CreateMeter");
    rpc!(
        "GetMeter",
        meter_client.get_meter(authed(
            KEY_A,
            meter::GetMeterRequest {
                id: api_calls.clone()
            }
        ))
    );
    let first = rpc!(
        "ListMeters",
        meter_client.list_meters(authed(
            KEY_A,
            meter::ListMetersRequest {
                page_size: 1,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ListMeters",
        meter_client.list_meters(authed(
            KEY_A,
            meter::ListMetersRequest {
                page_size: 1,
                page_token: first.next_page_token
            }
        ))
    );
    rpc!(
        "UpdateMeter",
        meter_client.update_meter(authed(
            KEY_A,
            meter::UpdateMeterRequest {
                id: spare.clone(),
                display_name: "Spare".into(),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "DeactivateMeter",
        meter_client.deactivate_meter(authed(
            KEY_A,
            meter::DeactivateMeterRequest {
                id: spare.clone(),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ReactivateMeter",
        meter_client.reactivate_meter(authed(
            KEY_A,
            meter::ReactivateMeterRequest {
                id: spare.clone(),
                ..Default::default()
            }
        ))
    );

    // Customers.
    let customer = t.customer("Plan Co").await;
    let other = t.customer("Other Co").await;
    plan_check::CALLED.lock().unwrap().insert("CreateCustomer");
    rpc!(
        "GetCustomer",
        invoicing.get_customer(authed(
            KEY_A,
            pb::GetCustomerRequest {
                id: customer.clone()
            }
        ))
    );
    let first = rpc!(
        "ListCustomers",
        invoicing.list_customers(authed(
            KEY_A,
            pb::ListCustomersRequest {
                page_size: 1,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ListCustomers",
        invoicing.list_customers(authed(
            KEY_A,
            pb::ListCustomersRequest {
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            }
        ))
    );
    // A search: an index range of at most SEARCH_WINDOW customers below the
    // cursor, filtered by LIKE (bounded by the window, not by one object).
    rpc!(
        "ListCustomers",
        invoicing.list_customers(authed(
            KEY_A,
            pb::ListCustomersRequest {
                query: "other".into(),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "UpdateCustomer",
        invoicing.update_customer(authed(
            KEY_A,
            pb::UpdateCustomerRequest {
                id: other.clone(),
                name: Some("Other Inc".into()),
                ..Default::default()
            }
        ))
    );
    // The customer draws on Other's shared grants (a credit pool): its
    // invoices apply credits through the pool's statements.
    rpc!(
        "UpdateCustomer",
        invoicing.update_customer(authed(
            KEY_A,
            pb::UpdateCustomerRequest {
                id: customer.clone(),
                parent: Some(other.clone()),
                ..Default::default()
            }
        ))
    );

    // Usage.
    let at = t0() + TimeDelta::hours(1);
    t.usage(
        "api_calls",
        &customer,
        at,
        &[("e1", "5"), ("e2", "7"), ("e3", "11"), ("big", "100000")],
    )
    .await;
    plan_check::CALLED.lock().unwrap().insert("IngestEvents");
    let event = |identifier: &str| meter::MeterEvent {
        event_name: "api_calls".into(),
        identifier: identifier.into(),
        timestamp: ts(at),
        payload: [
            ("customer".to_owned(), customer.clone()),
            ("value".to_owned(), "2".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    let batches = vec![
        meter::StreamEventsRequest {
            events: vec![event("s1")],
        },
        meter::StreamEventsRequest {
            events: vec![event("s2"), event("e1")],
        },
    ];
    let mut acks = rpc!(
        "StreamEvents",
        meter_client.stream_events(authed(KEY_A, futures_util::stream::iter(batches)))
    );
    while acks.message().await.unwrap().is_some() {}
    rpc!(
        "CancelEvent",
        meter_client.cancel_event(authed(
            KEY_A,
            meter::CancelEventRequest {
                identifier: "e3".into()
            }
        ))
    );
    for window in [
        meter::GroupingWindow::Unspecified,
        meter::GroupingWindow::Hour,
        meter::GroupingWindow::Day,
    ] {
        rpc!(
            "GetUsage",
            meter_client.get_usage(authed(
                KEY_A,
                meter::GetUsageRequest {
                    customer: customer.clone(),
                    meter: api_calls.clone(),
                    start_time: ts(t0()),
                    end_time: ts(t0() + TimeDelta::days(2)),
                    grouping_window: window.into(),
                }
            ))
        );
    }
    // Two ranges: one partly past the cache's horizon, one wholly recent
    // (the clock is at t0 + 1 h: the horizon is before t0).
    rpc!(
        "BatchGetUsage",
        meter_client.batch_get_usage(authed(
            KEY_A,
            meter::BatchGetUsageRequest {
                customer: customer.clone(),
                ranges: vec![
                    meter::UsageRange {
                        meter: api_calls.clone(),
                        start_time: ts(t0() - TimeDelta::days(2)),
                        end_time: ts(t0() + TimeDelta::minutes(90)),
                    },
                    meter::UsageRange {
                        meter: spare.clone(),
                        start_time: ts(t0()),
                        end_time: ts(t0() + TimeDelta::days(2)),
                    },
                ],
            }
        ))
    );

    // Pricing units and prices.
    let unit = rpc!(
        "CreatePricingUnit",
        ledger_client.create_pricing_unit(authed(
            KEY_A,
            ledger::CreatePricingUnitRequest {
                display_name: "Tokens".into(),
                scale: 2,
                ..Default::default()
            }
        ))
    )
    .pricing_unit
    .unwrap()
    .id;
    rpc!(
        "UpdatePricingUnit",
        ledger_client.update_pricing_unit(authed(
            KEY_A,
            ledger::UpdatePricingUnitRequest {
                id: unit.clone(),
                conversion: Some(ledger::Conversion {
                    currency: "usd".into(),
                    unit_amount_decimal: "1.2".into(),
                }),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "GetPricingUnit",
        ledger_client.get_pricing_unit(authed(KEY_A, ledger::GetPricingUnitRequest { id: unit }))
    );
    rpc!(
        "ListPricingUnits",
        ledger_client.list_pricing_units(authed(KEY_A, ledger::ListPricingUnitsRequest::default()))
    );
    let price = t.per_unit_price(&api_calls, "1.5").await;
    let spare_price = t.per_unit_price(&spare, "2").await;
    plan_check::CALLED.lock().unwrap().insert("CreatePrice");
    rpc!(
        "GetPrice",
        invoicing.get_price(authed(KEY_A, pb::GetPriceRequest { id: price.clone() }))
    );
    let first = rpc!(
        "ListPrices",
        invoicing.list_prices(authed(
            KEY_A,
            pb::ListPricesRequest {
                page_size: 1,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ListPrices",
        invoicing.list_prices(authed(
            KEY_A,
            pb::ListPricesRequest {
                page_size: 1,
                page_token: first.next_page_token
            }
        ))
    );

    // Subscriptions.
    let subscription = t.subscribe(&customer, &[&price]).await.id;
    let second = t.subscribe(&customer, &[&price]).await.id;
    let cancelled = t.subscribe(&other, &[&spare_price]).await.id;
    // Allocations: a grant per period, a rollover once the first period's
    // invoice has finalized (the worker's ticks below), a cancel expiry.
    let allocation = pb::CreditAllocation {
        amount: usd(1_000),
        rollover_max_amount: usd(300),
        ..Default::default()
    };
    let allocated_customer = t.customer("Allocated").await;
    let allocated = t
        .subscribe_with_allocations(&allocated_customer, &[&price], vec![allocation])
        .await
        .id;
    plan_check::CALLED
        .lock()
        .unwrap()
        .insert("RolloverCreditGrants");
    plan_check::CALLED
        .lock()
        .unwrap()
        .insert("CreateSubscription");
    rpc!(
        "GetSubscription",
        invoicing.get_subscription(authed(
            KEY_A,
            pb::GetSubscriptionRequest {
                id: subscription.clone()
            }
        ))
    );
    for filter in [String::new(), customer.clone()] {
        let first = rpc!(
            "ListSubscriptions",
            invoicing.list_subscriptions(authed(
                KEY_A,
                pb::ListSubscriptionsRequest {
                    customer: filter.clone(),
                    page_size: 1,
                    ..Default::default()
                }
            ))
        );
        rpc!(
            "ListSubscriptions",
            invoicing.list_subscriptions(authed(
                KEY_A,
                pb::ListSubscriptionsRequest {
                    customer: filter,
                    page_size: 1,
                    page_token: first.next_page_token
                }
            ))
        );
    }
    rpc!(
        "CancelSubscription",
        invoicing.cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: cancelled,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "DeactivatePrice",
        invoicing.deactivate_price(authed(
            KEY_A,
            pb::DeactivatePriceRequest {
                id: spare_price,
                ..Default::default()
            }
        ))
    );

    // Balance alerts: one of the customer's (so every later balance change
    // evaluates it) and one of every customer.
    let alert = |customer: &str, value: i64| ledger::CreateBalanceAlertRequest {
        customer: customer.to_owned(),
        threshold: billing_testkit::fixtures::usd(value),
        ..Default::default()
    };
    let watched = rpc!(
        "CreateBalanceAlert",
        ledger_client.create_balance_alert(authed(KEY_A, alert(&customer, 9_000)))
    )
    .balance_alert
    .unwrap()
    .id;
    let everyone = rpc!(
        "CreateBalanceAlert",
        ledger_client.create_balance_alert(authed(KEY_A, alert("", 100)))
    )
    .balance_alert
    .unwrap()
    .id;
    rpc!(
        "GetBalanceAlert",
        ledger_client.get_balance_alert(authed(
            KEY_A,
            ledger::GetBalanceAlertRequest { id: watched }
        ))
    );
    for filter in [String::new(), customer.clone()] {
        let request = |page_token: String| ledger::ListBalanceAlertsRequest {
            customer: filter.clone(),
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListBalanceAlerts",
            ledger_client.list_balance_alerts(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListBalanceAlerts",
            ledger_client.list_balance_alerts(authed(KEY_A, request(first.next_page_token)))
        );
    }
    rpc!(
        "DeleteBalanceAlert",
        ledger_client.delete_balance_alert(authed(
            KEY_A,
            ledger::DeleteBalanceAlertRequest { id: everyone }
        ))
    );

    // Grants.
    let grant = t
        .grant(grant_request(&customer, "Prepaid", 10_000))
        .await
        .id;
    let voided = t.grant(grant_request(&customer, "Promo", 500)).await.id;
    let expired = t.grant(grant_request(&customer, "Trial", 300)).await.id;
    plan_check::CALLED
        .lock()
        .unwrap()
        .insert("CreateCreditGrant");
    rpc!(
        "GetCreditGrant",
        ledger_client.get_credit_grant(authed(
            KEY_A,
            ledger::GetCreditGrantRequest { id: grant.clone() }
        ))
    );
    for filter in [String::new(), customer.clone()] {
        let first = rpc!(
            "ListCreditGrants",
            ledger_client.list_credit_grants(authed(
                KEY_A,
                ledger::ListCreditGrantsRequest {
                    customer: filter.clone(),
                    page_size: 1,
                    ..Default::default()
                }
            ))
        );
        rpc!(
            "ListCreditGrants",
            ledger_client.list_credit_grants(authed(
                KEY_A,
                ledger::ListCreditGrantsRequest {
                    customer: filter,
                    page_size: 1,
                    page_token: first.next_page_token
                }
            ))
        );
    }
    rpc!(
        "UpdateCreditGrant",
        ledger_client.update_credit_grant(authed(
            KEY_A,
            ledger::UpdateCreditGrantRequest {
                id: grant.clone(),
                name: Some("Prepaid credits".into()),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "VoidCreditGrant",
        ledger_client.void_credit_grant(authed(
            KEY_A,
            ledger::VoidCreditGrantRequest {
                id: voided,
                ..Default::default()
            }
        ))
    );
    rpc!(
        "ExpireCreditGrant",
        ledger_client.expire_credit_grant(authed(
            KEY_A,
            ledger::ExpireCreditGrantRequest {
                id: expired,
                ..Default::default()
            }
        ))
    );

    // Direct application, preview and real, and its reversal.
    let apply = |preview: bool| ledger::ApplyCreditsRequest {
        pool: Vec::new(),
        customer: customer.clone(),
        invoice: "in_direct".into(),
        period_end: ts(t0() + TimeDelta::days(1)),
        lines: vec![ledger::InvoiceLine {
            invoice_line_item: "line_1".into(),
            price: price.clone(),
            amount: usd(250),
        }],
        preview,
    };
    rpc!(
        "ApplyCredits",
        ledger_client.apply_credits(authed(KEY_A_APPLY, apply(true)))
    );
    rpc!(
        "ApplyCredits",
        ledger_client.apply_credits(authed(KEY_A_APPLY, apply(false)))
    );
    rpc!(
        "ApplyCredits",
        ledger_client.apply_credits(authed(KEY_A_APPLY, apply(false)))
    );
    rpc!(
        "ReverseCredits",
        ledger_client.reverse_credits(authed(
            KEY_A_APPLY,
            ledger::ReverseCreditsRequest {
                invoice: "in_direct".into()
            }
        ))
    );

    // Invoices: one paid, one voided, one closed by the worker.
    rpc!(
        "PreviewInvoice",
        invoicing.preview_invoice(authed(
            KEY_A,
            pb::PreviewInvoiceRequest {
                subscription: subscription.clone()
            }
        ))
    );
    t.advance_to(t0() + TimeDelta::days(32)).await;
    let paid = t.create_invoice(&subscription).await.id;
    plan_check::CALLED.lock().unwrap().insert("CreateInvoice");
    rpc!(
        "GetInvoice",
        invoicing.get_invoice(authed(KEY_A, pb::GetInvoiceRequest { id: paid.clone() }))
    );
    rpc!(
        "FinalizeInvoice",
        invoicing.finalize_invoice(authed(
            KEY_A,
            pb::FinalizeInvoiceRequest {
                id: paid.clone(),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "MarkInvoicePaid",
        invoicing.mark_invoice_paid(authed(
            KEY_A,
            pb::MarkInvoicePaidRequest {
                id: paid.clone(),
                ..Default::default()
            }
        ))
    );
    let voided_invoice = t.create_invoice(&second).await.id;
    rpc!(
        "FinalizeInvoice",
        invoicing.finalize_invoice(authed(
            KEY_A,
            pb::FinalizeInvoiceRequest {
                id: voided_invoice.clone(),
                ..Default::default()
            }
        ))
    );
    rpc!(
        "VoidInvoice",
        invoicing.void_invoice(authed(
            KEY_A,
            pb::VoidInvoiceRequest {
                id: voided_invoice,
                ..Default::default()
            }
        ))
    );
    // Credit purchases: one paid (its grant activated), one voided.
    let mut purchases = Vec::new();
    for request_id in ["purchase-paid", "purchase-voided"] {
        let purchase = rpc!(
            "CreateCreditPurchase",
            invoicing.create_credit_purchase(authed(
                KEY_A,
                pb::CreateCreditPurchaseRequest {
                    request_id: request_id.into(),
                    customer: customer.clone(),
                    credits: usd(1_000),
                    currency: "usd".into(),
                    unit_amount_decimal: "1".into(),
                    ..Default::default()
                }
            ))
        )
        .credit_purchase
        .unwrap();
        purchases.push(purchase);
    }
    invoicing
        .mark_invoice_paid(authed(
            KEY_A,
            pb::MarkInvoicePaidRequest {
                id: purchases[0].invoice.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    invoicing
        .void_invoice(authed(
            KEY_A,
            pb::VoidInvoiceRequest {
                id: purchases[1].invoice.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let paid_purchase = rpc!(
        "GetCreditPurchase",
        invoicing.get_credit_purchase(authed(
            KEY_A,
            pb::GetCreditPurchaseRequest {
                id: purchases[0].id.clone()
            }
        ))
    )
    .credit_purchase
    .unwrap();
    assert_eq!(paid_purchase.status(), pb::CreditPurchaseStatus::Active);
    plan_check::CALLED
        .lock()
        .unwrap()
        .insert("ActivateCreditGrant");
    for filter in [String::new(), customer.clone()] {
        let first = rpc!(
            "ListCreditPurchases",
            invoicing.list_credit_purchases(authed(
                KEY_A,
                pb::ListCreditPurchasesRequest {
                    customer: filter.clone(),
                    page_size: 1,
                    ..Default::default()
                }
            ))
        );
        rpc!(
            "ListCreditPurchases",
            invoicing.list_credit_purchases(authed(
                KEY_A,
                pb::ListCreditPurchasesRequest {
                    customer: filter,
                    page_size: 1,
                    page_token: first.next_page_token
                }
            ))
        );
    }

    // An auto top-up: set, a crossing it buys on (the worker's ticks
    // below), read, disabled at the end.
    let topped = t.customer("Topped").await;
    t.grant(ledger::CreateCreditGrantRequest {
        customer: topped.clone(),
        amount: usd(3_000),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: Vec::new(),
            }),
        }),
        ..Default::default()
    })
    .await;
    rpc!(
        "SetAutoTopUp",
        invoicing.set_auto_top_up(authed(
            KEY_A,
            pb::SetAutoTopUpRequest {
                customer: topped.clone(),
                threshold: usd(2_000),
                amount: usd(5_000),
                currency: "usd".into(),
                unit_amount_decimal: "100".into(),
                limits: Some(pb::AutoTopUpLimits {
                    max_purchases: 3,
                    max_spend: usd(100_000),
                }),
                ..Default::default()
            }
        ))
    );
    ledger_client
        .apply_credits(authed(
            KEY_A_APPLY,
            ledger::ApplyCreditsRequest {
                pool: Vec::new(),
                customer: topped.clone(),
                invoice: "in_topped".into(),
                period_end: ts(t.clock.now()),
                lines: vec![ledger::InvoiceLine {
                    invoice_line_item: "line_1".into(),
                    price: price.clone(),
                    amount: usd(2_500),
                }],
                preview: false,
            },
        ))
        .await
        .unwrap();

    // The worker's auto-finalize and the next period's close.
    t.advance_to(t0() + TimeDelta::days(33)).await;
    t.advance_to(t0() + TimeDelta::days(62)).await;
    // The first period's invoice finalized at day 33; its rollover ran at
    // day 62. Cancel the allocation's subscription: its grants expire.
    let grants = ledger_client
        .list_credit_grants(authed(
            KEY_A,
            ledger::ListCreditGrantsRequest {
                customer: allocated_customer,
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    assert!(
        grants.iter().any(|g| g
            .source
            .as_ref()
            .is_some_and(|s| s.r#type() == ledger::CreditGrantSourceType::Rollover)),
        "the workload rolled an allocation over"
    );
    let top_up = rpc!(
        "GetAutoTopUp",
        invoicing.get_auto_top_up(authed(
            KEY_A,
            pb::GetAutoTopUpRequest {
                customer: topped.clone(),
                asset: "usd".into()
            }
        ))
    )
    .auto_top_up
    .unwrap();
    // The feed serves the crossing once no older transaction is in flight
    // on the server: tick until it was decided on (a wait, not a timing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let bought = loop {
        let bought = invoicing
            .list_credit_purchases(authed(
                KEY_A,
                pb::ListCreditPurchasesRequest {
                    customer: topped.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .credit_purchases;
        if !bought.is_empty() || std::time::Instant::now() > deadline {
            break bought;
        }
        t.worker.tick().await;
    };
    assert_eq!(bought.len(), 1, "the top-up bought once");
    assert_eq!(bought[0].auto_top_up, top_up.id);
    rpc!(
        "DisableAutoTopUp",
        invoicing.disable_auto_top_up(authed(
            KEY_A,
            pb::DisableAutoTopUpRequest {
                customer: topped,
                asset: "usd".into(),
                ..Default::default()
            }
        ))
    );
    invoicing
        .cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: allocated,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    for (customer, subscription, status) in [
        (String::new(), String::new(), pb::InvoiceStatus::Unspecified),
        (
            customer.clone(),
            String::new(),
            pb::InvoiceStatus::Unspecified,
        ),
        (
            String::new(),
            subscription.clone(),
            pb::InvoiceStatus::Unspecified,
        ),
        (String::new(), String::new(), pb::InvoiceStatus::Paid),
        (customer.clone(), String::new(), pb::InvoiceStatus::Draft),
        (String::new(), subscription.clone(), pb::InvoiceStatus::Void),
    ] {
        let request = |page_token: String| pb::ListInvoicesRequest {
            customer: customer.clone(),
            subscription: subscription.clone(),
            status: status.into(),
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListInvoices",
            invoicing.list_invoices(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListInvoices",
            invoicing.list_invoices(authed(KEY_A, request(first.next_page_token)))
        );
    }
    for (invoice, kind) in [
        (String::new(), String::new()),
        (paid.clone(), String::new()),
        (String::new(), "invoice.finalized".to_owned()),
    ] {
        let request = |page_token: String| pb::ListInvoiceEventsRequest {
            invoice: invoice.clone(),
            r#type: kind.clone(),
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListInvoiceEvents",
            invoicing.list_invoice_events(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListInvoiceEvents",
            invoicing.list_invoice_events(authed(KEY_A, request(first.next_page_token)))
        );
    }

    // Real time: a subscription with a policy and a threshold, balances,
    // access checks with and without a reservation, the hold RPCs, and
    // the worker's threshold round.
    let now = t.clock.now();
    t.grant(ledger::CreateCreditGrantRequest {
        applicability_config: billing_testkit::fixtures::metered(),
        ..billing_testkit::fixtures::grant_request(&customer, "Real time", 1_000)
    })
    .await;
    invoicing
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer: customer.clone(),
                items: vec![pb::SubscriptionItemInput {
                    price: price.clone(),
                }],
                billing_interval: pb::BillingInterval::Month.into(),
                overage: Some(pb::OveragePolicy {
                    mode: pb::OverageMode::Block.into(),
                    limit: None,
                }),
                usage_thresholds: vec![pb::UsageThreshold {
                    meter: api_calls.clone(),
                    quantity: "1".into(),
                }],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    t.usage("api_calls", &customer, now, &[("realtime", "3")])
        .await;
    rpc!(
        "GetCustomerBalance",
        invoicing.get_customer_balance(authed(
            KEY_A,
            pb::GetCustomerBalanceRequest {
                customer: customer.clone()
            }
        ))
    );
    for (reserve, request_id) in [(None, ""), (usd(1), "plan-check")] {
        rpc!(
            "CheckAccess",
            invoicing.check_access(authed(
                KEY_A,
                pb::CheckAccessRequest {
                    request_id: request_id.into(),
                    customer: customer.clone(),
                    meter: api_calls.clone(),
                    reserve,
                    ..Default::default()
                }
            ))
        );
    }
    let hold = rpc!(
        "CreateCreditHold",
        ledger_client.create_credit_hold(authed(
            KEY_A,
            ledger::CreateCreditHoldRequest {
                request_id: "plan-hold".into(),
                customer: customer.clone(),
                amount: usd(2),
                timeout_seconds: 60,
                unbilled: usd(1),
            }
        ))
    )
    .credit_hold
    .unwrap();
    rpc!(
        "GetCreditHold",
        ledger_client.get_credit_hold(authed(
            KEY_A,
            ledger::GetCreditHoldRequest {
                id: hold.id.clone()
            }
        ))
    );
    for active_only in [false, true] {
        let request = |page_token: String| ledger::ListCreditHoldsRequest {
            customer: customer.clone(),
            active_only,
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListCreditHolds",
            ledger_client.list_credit_holds(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListCreditHolds",
            ledger_client.list_credit_holds(authed(KEY_A, request(first.next_page_token)))
        );
    }
    rpc!(
        "ReleaseCreditHold",
        ledger_client.release_credit_hold(authed(
            KEY_A,
            ledger::ReleaseCreditHoldRequest { id: hold.id }
        ))
    );
    assert_eq!(t.worker.tick().await.thresholds_fired, 1);

    // Balances after all of it.
    for filter in [
        None,
        Some(ledger::credit_balance_filter::Kind::CreditGrant(
            grant.clone(),
        )),
        Some(ledger::credit_balance_filter::Kind::ApplicabilityScope(
            ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: vec![],
            },
        )),
    ] {
        rpc!(
            "GetCreditBalanceSummary",
            ledger_client.get_credit_balance_summary(authed(
                KEY_A,
                ledger::GetCreditBalanceSummaryRequest {
                    pool: Vec::new(),
                    customer: customer.clone(),
                    filter: filter.map(|kind| ledger::CreditBalanceFilter { kind: Some(kind) }),
                    unbilled_lines: Vec::new(),
                }
            ))
        );
    }
    // With the customer's pool.
    rpc!(
        "GetCreditBalanceSummary",
        ledger_client.get_credit_balance_summary(authed(
            KEY_A,
            ledger::GetCreditBalanceSummaryRequest {
                customer: customer.clone(),
                pool: vec![other.clone()],
                ..Default::default()
            }
        ))
    );
    for grant_filter in [String::new(), grant.clone()] {
        let request = |page_token: String| ledger::ListCreditBalanceTransactionsRequest {
            customer: customer.clone(),
            credit_grant: grant_filter.clone(),
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListCreditBalanceTransactions",
            ledger_client.list_credit_balance_transactions(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListCreditBalanceTransactions",
            ledger_client
                .list_credit_balance_transactions(authed(KEY_A, request(first.next_page_token)))
        );
    }
    // The ledger's event feed: pages with and without a type filter, and a
    // watch from the start.
    let mut feed = billing_proto::events::v1::event_service_client::EventServiceClient::new(
        t.channels[1].1.clone(),
    );
    for types in [vec![], vec!["credit_balance.created".to_owned()]] {
        let request = |page_token: String| billing_proto::events::v1::ListEventsRequest {
            created_after: None,
            created_before: None,
            types: types.clone(),
            page_size: 1,
            page_token,
        };
        let first = rpc!(
            "ListEvents",
            feed.list_events(authed(KEY_A, request(String::new())))
        );
        rpc!(
            "ListEvents",
            feed.list_events(authed(KEY_A, request(first.next_page_token)))
        );
        let mut watch = rpc!(
            "WatchEvents",
            feed.watch_events(authed(
                KEY_A,
                billing_proto::events::v1::WatchEventsRequest {
                    after_cursor: String::new(),
                    types: types.clone(),
                    until_caught_up: false,
                }
            ))
        );
        assert!(watch.message().await.unwrap().is_some());
    }
    // meter-ingest's attribution job, with usage of an unknown customer.
    t.usage(
        "api_calls",
        "cus_unknown_plan",
        t.clock.now(),
        &[("plan-unknown", "1")],
    )
    .await;
    let directory = t.meter_state.customers.as_ref().unwrap();
    meter_ingest::jobs::attribution::run_once(&t.meter_state.metering, directory)
        .await
        .unwrap();
    rpc!(
        "AuditLedger",
        ledger_client.audit_ledger(authed(KEY_A, ledger::AuditLedgerRequest {}))
    );
    let (from, to) = (
        billing_server::time::to_proto(t0()),
        billing_server::time::to_proto(t.clock.now() + chrono::TimeDelta::days(1)),
    );
    rpc!(
        "GetCreditLiabilityReport",
        ledger_client.get_credit_liability_report(authed(
            KEY_A,
            ledger::GetCreditLiabilityReportRequest {
                from: Some(from),
                to: Some(to),
            }
        ))
    );
    for customer in [String::new(), customer.clone()] {
        let mut export = rpc!(
            "ExportLedgerEntries",
            ledger_client.export_ledger_entries(authed(
                KEY_A,
                ledger::ExportLedgerEntriesRequest {
                    from: Some(from),
                    to: Some(to),
                    customer,
                }
            ))
        );
        assert!(export.message().await.unwrap().is_some());
    }
}
