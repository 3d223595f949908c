//! Real-time balances, access checks and usage thresholds through the real
//! services (DESIGN.md §12): the unbilled amount is exact the moment usage
//! is acknowledged and equals what the invoice later charges; 64
//! concurrent reservations against credits for 10 hold exactly 10; holds
//! end by time alone or at release; BLOCK and ALLOW_UP_TO deny as they
//! say; a usage threshold fires once per period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::{usd, value_of};
use billing_testkit::{authed, bad_request_fields};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::*;
use tonic::Code;

backends!(
    the_unbilled_balance_is_exact_at_once_and_matches_the_invoice,
    concurrent_reservations_hold_exactly_what_the_credits_cover,
    block_and_allow_up_to_deny_as_they_say,
    a_usage_threshold_fires_once_per_period,
    bad_controls_and_checks_are_refused,
);

fn day(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
}

async fn fund(t: &Suite, customer: &str, cents: i64) {
    t.grant(ledger::CreateCreditGrantRequest {
        customer: customer.into(),
        amount: usd(cents),
        applicability_config: billing_testkit::fixtures::metered(),
        ..Default::default()
    })
    .await;
}

async fn subscribe(
    t: &Suite,
    customer: &str,
    price: &str,
    overage: Option<pb::OveragePolicy>,
    usage_thresholds: Vec<pb::UsageThreshold>,
) -> Result<pb::Subscription, tonic::Status> {
    Ok(t.invoicing
        .clone()
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer: customer.into(),
                items: vec![pb::SubscriptionItemInput {
                    price: price.into(),
                }],
                billing_interval: pb::BillingInterval::Month.into(),
                overage,
                usage_thresholds,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .subscription
        .unwrap())
}

fn policy(mode: pb::OverageMode, limit: Option<i64>) -> Option<pb::OveragePolicy> {
    Some(pb::OveragePolicy {
        mode: mode.into(),
        limit: limit.and_then(usd),
    })
}

async fn balance(t: &Suite, customer: &str) -> pb::AssetBalance {
    let mut found = t.customer_balance(customer).await;
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn check(
    customer: &str,
    meter: &str,
    reserve: Option<i64>,
    request_id: &str,
) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        request_id: request_id.into(),
        customer: customer.into(),
        meter: meter.into(),
        reserve: reserve.and_then(usd),
        ..Default::default()
    }
}

async fn access(t: &Suite, request: pb::CheckAccessRequest) -> pb::CheckAccessResponse {
    t.invoicing
        .clone()
        .check_access(authed(KEY_A, request))
        .await
        .expect("checked")
        .into_inner()
}

/// 7 units at 12.345¢ = 86.415¢, rounded once to 86¢; 50¢ of credits.
async fn the_unbilled_balance_is_exact_at_once_and_matches_the_invoice(t: &Suite) {
    let meter = t.meter("api_calls").await;
    let price = t.per_unit_price(&meter, "12.345").await;
    let customer = t.customer("Acme").await;
    let sub = subscribe(t, &customer, &price, None, Vec::new())
        .await
        .unwrap();
    fund(t, &customer, 50).await;
    let start = t.clock.now();
    // Acknowledged, then asked at once: no tick, no refresh.
    t.usage(
        "api_calls",
        &customer,
        start,
        &[("e1", "2.5"), ("e2", "4.5")],
    )
    .await;
    let now = balance(t, &customer).await;
    assert_eq!(value_of(&now.unbilled_usage), 86);
    assert_eq!(value_of(&now.available), 50);
    assert_eq!(value_of(&now.unbilled_credits), 50);
    assert_eq!(value_of(&now.ongoing_balance), 0);
    assert_eq!(value_of(&now.overage), 36);
    assert_eq!(value_of(&now.credits_reserved), 0);

    // The period closes into a draft: still unbilled, still 86.
    t.advance_to(day(2, 1) + TimeDelta::seconds(1)).await;
    let draft = t.create_invoice(&sub.id).await;
    assert_eq!(draft.status(), pb::InvoiceStatus::Draft);
    assert_eq!(value_of(&balance(t, &customer).await.unbilled_usage), 86);
    // Finalized, it charges exactly what the balance said.
    let invoice = t.finalize(&draft.id).await.unwrap();
    let line = &invoice.lines[0];
    assert_eq!(value_of(&line.amount), 86);
    assert_eq!(value_of(&line.credits_applied), 50);
    let after = balance(t, &customer).await;
    assert_eq!(value_of(&after.unbilled_usage), 0);
    assert_eq!(value_of(&after.available), 0);
}

async fn concurrent_reservations_hold_exactly_what_the_credits_cover(t: &Suite) {
    let meter = t.meter("renders").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Render Co").await;
    let block = policy(pb::OverageMode::Block, None);
    subscribe(t, &customer, &price, block, Vec::new())
        .await
        .unwrap();
    fund(t, &customer, 1_000).await;
    let calls = (0..64).map(|i| {
        let mut client = t.invoicing.clone();
        let request = check(&customer, &meter, Some(100), &format!("render-{i}"));
        async move { client.check_access(authed(KEY_A, request)).await }
    });
    let answers: Vec<pb::CheckAccessResponse> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("checked").into_inner())
        .collect();
    let allowed: Vec<&pb::CheckAccessResponse> = answers.iter().filter(|a| a.allowed).collect();
    assert_eq!(allowed.len(), 10);
    assert!(allowed.iter().all(|a| a.hold.starts_with("hold_")));
    assert!(
        answers
            .iter()
            .filter(|a| !a.allowed)
            .all(|a| a.reason() == pb::AccessReason::Depleted && a.hold.is_empty())
    );
    assert_eq!(
        value_of(&balance(t, &customer).await.credits_reserved),
        1_000
    );
    // A retry of an allowed check returns its hold, not a second one.
    let (i, first) = answers.iter().enumerate().find(|(_, a)| a.allowed).unwrap();
    let again = access(
        t,
        check(&customer, &meter, Some(100), &format!("render-{i}")),
    )
    .await;
    assert!(again.allowed);
    assert_eq!(again.hold, first.hold);
    assert_eq!(
        value_of(&balance(t, &customer).await.credits_reserved),
        1_000
    );

    // A release frees its credits at once.
    t.ledger
        .clone()
        .release_credit_hold(authed(
            KEY_A,
            ledger::ReleaseCreditHoldRequest {
                id: allowed[0].hold.clone(),
            },
        ))
        .await
        .unwrap();
    let freed = access(t, check(&customer, &meter, Some(100), "after-release")).await;
    assert!(freed.allowed, "{freed:?}");
    // Past their timeout (300 s by default) every hold counts for nothing,
    // without any sweeper run.
    t.clock.advance(TimeDelta::seconds(301));
    assert_eq!(value_of(&balance(t, &customer).await.credits_reserved), 0);
    let later = access(t, check(&customer, &meter, Some(1_000), "all-of-it")).await;
    assert!(later.allowed, "{later:?}");
    assert_eq!(value_of(&later.balance.unwrap().credits_reserved), 1_000);
}

async fn block_and_allow_up_to_deny_as_they_say(t: &Suite) {
    let meter = t.meter("tokens").await;
    let price = t.per_unit_price(&meter, "1").await;
    let blocked = t.customer("Blocked").await;
    let block = policy(pb::OverageMode::Block, None);
    subscribe(t, &blocked, &price, block, Vec::new())
        .await
        .unwrap();
    let now = t.clock.now();
    let denied = access(t, check(&blocked, &meter, None, "")).await;
    assert!(!denied.allowed);
    assert_eq!(denied.reason(), pb::AccessReason::Depleted);
    // A grant allows again; usage that consumes it denies again.
    fund(t, &blocked, 300).await;
    let allowed = access(t, check(&blocked, &meter, None, "")).await;
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(value_of(&allowed.balance.unwrap().ongoing_balance), 300);
    t.usage("tokens", &blocked, now, &[("b1", "300")]).await;
    let spent = access(t, check(&blocked, &meter, None, "")).await;
    assert_eq!(spent.reason(), pb::AccessReason::Depleted);
    // A purchase that needs no payment allows again.
    t.invoicing
        .clone()
        .create_credit_purchase(authed(
            KEY_A,
            pb::CreateCreditPurchaseRequest {
                customer: blocked.clone(),
                credits: usd(100),
                unit_amount_decimal: "1".into(),
                currency: "usd".into(),
                require_successful_payment: Some(false),
                ..Default::default()
            },
        ))
        .await
        .expect("bought");
    let bought = access(t, check(&blocked, &meter, None, "")).await;
    assert!(bought.allowed, "{bought:?}");

    // Up to 500¢ of overage: 499 allowed, 500 denied.
    let capped = t.customer("Capped").await;
    let up_to = policy(pb::OverageMode::AllowUpTo, Some(500));
    subscribe(t, &capped, &price, up_to, Vec::new())
        .await
        .unwrap();
    t.usage("tokens", &capped, now, &[("c1", "499")]).await;
    let within = access(t, check(&capped, &meter, None, "")).await;
    assert!(within.allowed, "{within:?}");
    assert_eq!(value_of(&within.balance.unwrap().overage), 499);
    t.usage("tokens", &capped, now, &[("c2", "1")]).await;
    let past = access(t, check(&capped, &meter, None, "")).await;
    assert!(!past.allowed);
    assert_eq!(past.reason(), pb::AccessReason::OverageLimitReached);

    // A meter no subscription bills.
    let other = t.meter("other").await;
    let none = access(t, check(&capped, &other, None, "")).await;
    assert_eq!(none.reason(), pb::AccessReason::NotSubscribed);
    assert!(!none.allowed);
}

async fn crossings(t: &Suite) -> Vec<pb::UsageThresholdCrossing> {
    let page = EventServiceClient::new(t.channels[0].1.clone())
        .list_events(authed(
            KEY_A,
            ev::ListEventsRequest {
                types: vec!["subscription.usage_exceeded_threshold".into()],
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    page.events
        .into_iter()
        .map(|e| match e.data {
            Some(ev::event::Data::UsageThresholdCrossing(data)) => data,
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn a_usage_threshold_fires_once_per_period(t: &Suite) {
    let meter = t.meter("gb").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Storage").await;
    let threshold = pb::UsageThreshold {
        meter: meter.clone(),
        quantity: "100".into(),
    };
    let sub = subscribe(t, &customer, &price, None, vec![threshold.clone()])
        .await
        .unwrap();
    assert_eq!(sub.usage_thresholds, [threshold]);
    let start = t.clock.now();
    t.usage("gb", &customer, start, &[("g1", "60")]).await;
    assert_eq!(t.worker.tick().await.thresholds_fired, 0);
    t.usage("gb", &customer, start, &[("g2", "50")]).await;
    assert_eq!(t.worker.tick().await.thresholds_fired, 1);
    // Crossed again (and far past): nothing more this period.
    t.usage("gb", &customer, start, &[("g3", "500")]).await;
    assert_eq!(t.worker.tick().await.thresholds_fired, 0);
    assert_eq!(t.worker.tick().await.thresholds_fired, 0);
    let fired = crossings(t).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].usage.as_str(), fired[0].threshold_index),
        ("110", 0)
    );
    // The next period fires again.
    t.advance_to(day(2, 1) + TimeDelta::seconds(1)).await;
    t.usage("gb", &customer, day(2, 2), &[("g4", "101")]).await;
    assert_eq!(t.worker.tick().await.thresholds_fired, 1);
    let fired = crossings(t).await;
    assert_eq!(fired.len(), 2);
    assert_eq!(
        fired[0].period_start,
        Some(billing_server::time::to_proto(day(2, 1)))
    );
}

async fn bad_controls_and_checks_are_refused(t: &Suite) {
    let meter = t.meter("jobs").await;
    let other_meter = t.meter("other_jobs").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Careful").await;
    let field = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        bad_request_fields(&status)
    };
    let wrong_meter = pb::UsageThreshold {
        meter: other_meter.clone(),
        quantity: "10".into(),
    };
    let refused = subscribe(t, &customer, &price, None, vec![wrong_meter]).await;
    assert_eq!(field(refused.unwrap_err()), ["usage_thresholds[0].meter"]);
    let bad_quantity = pb::UsageThreshold {
        meter: meter.clone(),
        quantity: "-1".into(),
    };
    let refused = subscribe(t, &customer, &price, None, vec![bad_quantity]).await;
    assert_eq!(
        field(refused.unwrap_err()),
        ["usage_thresholds[0].quantity"]
    );
    let eur_limit = Some(pb::OveragePolicy {
        mode: pb::OverageMode::AllowUpTo.into(),
        limit: billing_testkit::fixtures::money("eur", 100),
    });
    let refused = subscribe(t, &customer, &price, eur_limit, Vec::new()).await;
    assert_eq!(field(refused.unwrap_err()), ["overage.limit"]);
    let stray_limit = policy(pb::OverageMode::Block, Some(100));
    let refused = subscribe(t, &customer, &price, stray_limit, Vec::new()).await;
    assert_eq!(field(refused.unwrap_err()), ["overage.limit"]);
    // None of it was written.
    let subs = t
        .invoicing
        .clone()
        .list_subscriptions(authed(
            KEY_A,
            pb::ListSubscriptionsRequest {
                customer: customer.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(subs.subscriptions.is_empty());

    subscribe(t, &customer, &price, None, Vec::new())
        .await
        .unwrap();
    let call = |request: pb::CheckAccessRequest| {
        let mut client = t.invoicing.clone();
        async move { client.check_access(authed(KEY_A, request)).await }
    };
    let no_key = call(check(&customer, &meter, Some(5), ""))
        .await
        .unwrap_err();
    assert_eq!(field(no_key), ["request_id"]);
    let mut both = check(&customer, &meter, None, "");
    both.price = price.clone();
    assert_eq!(field(call(both).await.unwrap_err()), ["meter"]);
    let mut eur = check(&customer, &meter, None, "k1");
    eur.reserve = billing_testkit::fixtures::money("eur", 5);
    assert_eq!(field(call(eur).await.unwrap_err()), ["reserve"]);
    let mut too_long = check(&customer, &meter, Some(5), "k2");
    too_long.hold_timeout_seconds = 86_401;
    assert_eq!(
        field(call(too_long).await.unwrap_err()),
        ["hold_timeout_seconds"]
    );
    // Another account's customer is unknown.
    let other = t
        .invoicing
        .clone()
        .get_customer_balance(authed(
            KEY_B,
            pb::GetCustomerBalanceRequest {
                customer: customer.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let other = t
        .invoicing
        .clone()
        .check_access(authed(KEY_B, check(&customer, &meter, None, "")))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
}
