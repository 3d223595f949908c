//! Recurring credit allocations through the real services (DESIGN.md §11):
//! a monthly allocation of 1,000 with a rollover cap of 300, three periods
//! of usage, then a cancel mid-period; paid credits stay untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::{usd, value_of};
use billing_testkit::{authed, bad_request_fields};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::*;

fn day(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
}

fn micro() -> TimeDelta {
    TimeDelta::microseconds(1)
}

async fn grants(t: &Suite, customer: &str) -> Vec<ledger::CreditGrant> {
    let mut grants = t
        .ledger
        .clone()
        .list_credit_grants(authed(
            KEY_A,
            ledger::ListCreditGrantsRequest {
                customer: customer.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    grants.reverse();
    grants
}

fn source_of(grant: &ledger::CreditGrant) -> Option<(ledger::CreditGrantSourceType, i64)> {
    grant.source.as_ref().map(|s| {
        (
            s.r#type(),
            s.period_start
                .as_ref()
                .map(|t| t.seconds)
                .unwrap_or_default(),
        )
    })
}

fn find(
    grants: &[ledger::CreditGrant],
    kind: ledger::CreditGrantSourceType,
    period_start: DateTime<Utc>,
) -> ledger::CreditGrant {
    grants
        .iter()
        .find(|g| source_of(g) == Some((kind, period_start.timestamp())))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind:?} grant for {period_start}: {grants:#?}"))
}

async fn latest_invoice(t: &Suite, subscription: &str) -> String {
    t.invoicing
        .clone()
        .get_subscription(authed(
            KEY_A,
            pb::GetSubscriptionRequest {
                id: subscription.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap()
        .latest_invoice
}

async fn allocations_roll_over_up_to_the_cap_and_expire_on_cancel(t: &Suite) {
    use ledger::CreditGrantSourceType::{Allocation, Rollover};
    let meter = t.meter("api_calls").await;
    // One cent per call.
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Acme").await;
    // Bought credits (a purchase on net terms: usable at once), applied
    // after the allocation (priority 60 > 50).
    let purchase = t
        .invoicing
        .clone()
        .create_credit_purchase(authed(
            KEY_A,
            pb::CreateCreditPurchaseRequest {
                customer: customer.clone(),
                credits: usd(5_000),
                currency: "usd".into(),
                unit_amount_decimal: "100".into(),
                priority: Some(60),
                require_successful_payment: Some(false),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_purchase
        .unwrap();
    let paid_id = purchase.credit_grant.clone();
    let allocation = pb::CreditAllocation {
        amount: usd(1_000),
        rollover_max_amount: usd(300),
        ..Default::default()
    };
    let sub = t
        .subscribe_with_allocations(&customer, &[&price], vec![allocation])
        .await;
    assert_eq!(sub.credit_allocations.len(), 1);
    assert_eq!(
        sub.credit_allocations[0].expiry(),
        pb::AllocationExpiry::EndOfPeriod
    );

    // Period 1 (January): its grant exists when CreateSubscription returns.
    let all = grants(t, &customer).await;
    let a1 = find(&all, Allocation, day(1, 1));
    assert_eq!(value_of(&a1.amount), 1_000);
    assert_eq!(
        a1.category(),
        ledger::CreditGrantCategory::Promotional,
        "allocations cost nothing"
    );
    assert_eq!(
        a1.metadata.get("source").map(String::as_str),
        Some("allocation")
    );
    assert_eq!(a1.metadata.get("subscription"), Some(&sub.id));
    assert_eq!(ts_of(&a1.effective_at), day(1, 1) + micro());
    assert_eq!(ts_of(&a1.expires_at), day(2, 1) + micro());
    // Usable from the period's first microsecond after its start.
    t.clock.set(day(1, 1) + TimeDelta::seconds(1));
    assert_eq!(t.available_usd(&customer).await, 6_000);

    t.usage("api_calls", &customer, day(1, 10), &[("p1", "400")])
        .await;
    // February starts: January closes into a draft, February's grant is made.
    t.advance_to(day(2, 1)).await;
    let january = latest_invoice(t, &sub.id).await;
    let invoice = t.finalize(&january).await.unwrap();
    assert_eq!(credits_applied(&invoice), 400);
    // The next tick rolls January's remainder (600) over, capped at 300.
    t.advance_to(day(2, 1) + TimeDelta::hours(2)).await;
    let all = grants(t, &customer).await;
    let a1 = find(&all, Allocation, day(1, 1));
    assert_eq!(value_of(&a1.available), 0, "the remainder expired");
    let a2 = find(&all, Allocation, day(2, 1));
    let r2 = find(&all, Rollover, day(2, 1));
    assert_eq!(value_of(&a2.amount), 1_000);
    assert_eq!(value_of(&r2.amount), 300, "600 left, capped at 300");
    assert_eq!(ts_of(&r2.expires_at), day(3, 1) + micro());
    assert_eq!(t.available_usd(&customer).await, 5_000 + 1_000 + 300);

    // February: 1,200 calls take February's 1,000, then 200 of the 300.
    t.usage("api_calls", &customer, day(2, 10), &[("p2", "1200")])
        .await;
    t.advance_to(day(3, 1)).await;
    let february = latest_invoice(t, &sub.id).await;
    let invoice = t.finalize(&february).await.unwrap();
    assert_eq!(credits_applied(&invoice), 1_200);
    t.advance_to(day(3, 1) + TimeDelta::hours(2)).await;
    let all = grants(t, &customer).await;
    let r3 = find(&all, Rollover, day(3, 1));
    assert_eq!(value_of(&r3.amount), 100, "what was left, under the cap");
    let a3 = find(&all, Allocation, day(3, 1));
    assert_eq!(value_of(&a3.amount), 1_000);
    assert_eq!(t.available_usd(&customer).await, 5_000 + 1_000 + 100);

    // March: 100 calls, then a cancel on March 15.
    t.usage("api_calls", &customer, day(3, 10), &[("p3", "100")])
        .await;
    t.clock.set(day(3, 15));
    let (canceled, _) = cancel(t, &sub.id).await;
    assert_eq!(canceled.status(), pb::SubscriptionStatus::Canceled);
    let all = grants(t, &customer).await;
    for grant in [
        find(&all, Allocation, day(3, 1)),
        find(&all, Rollover, day(3, 1)),
    ] {
        assert_eq!(
            ts_of(&grant.expires_at),
            day(3, 15) + micro(),
            "the unused allocation expires at the cancellation"
        );
    }
    t.clock.set(day(3, 15) + TimeDelta::seconds(1));
    assert_eq!(
        t.available_usd(&customer).await,
        5_000,
        "only the bought credits are left"
    );
    // The final invoice (March 1–15) still takes its credits from March's allocation.
    let march = latest_invoice(t, &sub.id).await;
    let invoice = t.finalize(&march).await.unwrap();
    assert_eq!(credits_applied(&invoice), 100);
    t.advance_to(day(3, 16)).await;

    let paid_now = grants(t, &customer)
        .await
        .into_iter()
        .find(|g| g.id == paid_id)
        .unwrap();
    assert_eq!(
        value_of(&paid_now.available),
        5_000,
        "bought credits untouched"
    );
    assert_eq!(
        paid_now.source.as_ref().map(|s| s.r#type()),
        Some(ledger::CreditGrantSourceType::Purchase)
    );
    // One grant per allocation per period, and one per rollover: nothing twice.
    let all = grants(t, &customer).await;
    let allocations = all
        .iter()
        .filter(|g| source_of(g).is_some_and(|(k, _)| k == Allocation))
        .count();
    let rollovers = all
        .iter()
        .filter(|g| source_of(g).is_some_and(|(k, _)| k == Rollover))
        .count();
    assert_eq!((allocations, rollovers), (3, 2));
    let audit = t
        .ledger
        .clone()
        .audit_ledger(authed(KEY_A, ledger::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
}

async fn cancel(t: &Suite, id: &str) -> (pb::Subscription, Option<pb::Invoice>) {
    let response = t
        .invoicing
        .clone()
        .cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (response.subscription.unwrap(), response.final_invoice)
}

fn credits_applied(invoice: &pb::Invoice) -> i64 {
    invoice
        .totals
        .iter()
        .map(|t| value_of(&t.total_credits_applied))
        .sum()
}

fn ts_of(time: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let time = time.as_ref().expect("a time");
    Utc.timestamp_opt(time.seconds, u32::try_from(time.nanos).unwrap())
        .unwrap()
}

/// A short first period prorated, credits expiring 10 days into each
/// period, and kept on cancel.
async fn proration_after_days_and_keep_on_cancel(t: &Suite) {
    use ledger::CreditGrantSourceType::Allocation;
    let meter = t.meter("api_calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Prorated").await;
    // Started January 1, anchored on January 15: a 14-day first period of
    // the 31-day interval ending January 15 (Dec 15 – Jan 15).
    let created = t
        .invoicing
        .clone()
        .create_subscription(authed(
            KEY_A,
            pb::CreateSubscriptionRequest {
                customer: customer.clone(),
                items: vec![pb::SubscriptionItemInput {
                    price: price.clone(),
                }],
                billing_interval: pb::BillingInterval::Month.into(),
                billing_cycle_anchor: billing_testkit::fixtures::ts(day(1, 15)),
                credit_allocations: vec![pb::CreditAllocation {
                    amount: usd(3_100),
                    expiry: pb::AllocationExpiry::AfterDays.into(),
                    expiry_days: 10,
                    prorate_first_period: true,
                    on_cancel: pb::AllocationOnCancel::Keep.into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    let first = find(&grants(t, &customer).await, Allocation, day(1, 1));
    // 3,100 × 14 / 31 = 1,400 exactly.
    assert_eq!(value_of(&first.amount), 1_400);
    assert_eq!(ts_of(&first.expires_at), day(1, 11) + micro());
    // The second period is a whole one: the full amount, 10 days again.
    t.advance_to(day(1, 15)).await;
    let second = find(&grants(t, &customer).await, Allocation, day(1, 15));
    assert_eq!(value_of(&second.amount), 3_100);
    assert_eq!(ts_of(&second.expires_at), day(1, 25) + micro());
    // Canceled with KEEP: the expiry stays.
    t.clock.set(day(1, 20));
    cancel(t, &created.id).await;
    t.advance_to(day(1, 21)).await;
    let kept = find(&grants(t, &customer).await, Allocation, day(1, 15));
    assert_eq!(ts_of(&kept.expires_at), day(1, 25) + micro());
}

async fn a_bad_allocation_is_refused_and_nothing_is_written(t: &Suite) {
    let meter = t.meter("api_calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Acme").await;
    let bad = [
        (
            pb::CreditAllocation {
                amount: usd(0),
                ..Default::default()
            },
            "credit_allocations[0].amount.monetary.value",
        ),
        (
            pb::CreditAllocation {
                amount: usd(100),
                expiry: pb::AllocationExpiry::AfterDays.into(),
                ..Default::default()
            },
            "credit_allocations[0].expiry_days",
        ),
        (
            pb::CreditAllocation {
                amount: usd(100),
                prices: vec!["price_elsewhere".into()],
                ..Default::default()
            },
            "credit_allocations[0].prices[0]",
        ),
        (
            pb::CreditAllocation {
                amount: usd(100),
                priority: Some(101),
                ..Default::default()
            },
            "credit_allocations[0].priority",
        ),
    ];
    for (allocation, field) in bad {
        let status = t
            .invoicing
            .clone()
            .create_subscription(authed(
                KEY_A,
                pb::CreateSubscriptionRequest {
                    customer: customer.clone(),
                    items: vec![pb::SubscriptionItemInput {
                        price: price.clone(),
                    }],
                    billing_interval: pb::BillingInterval::Month.into(),
                    credit_allocations: vec![allocation],
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(bad_request_fields(&status), vec![field.to_owned()]);
    }
    assert!(grants(t, &customer).await.is_empty(), "nothing was granted");
    let subs = t
        .invoicing
        .clone()
        .list_subscriptions(authed(KEY_A, pb::ListSubscriptionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert!(subs.is_empty(), "nothing was created");
}

backends!(
    allocations_roll_over_up_to_the_cap_and_expire_on_cancel,
    proration_after_days_and_keep_on_cancel,
    a_bad_allocation_is_refused_and_nothing_is_written
);
