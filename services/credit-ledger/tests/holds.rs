//! Credit holds (DESIGN.md §12) on both backends: concurrent holds never
//! take the same credit, a hold past its timeout counts for nothing without
//! any sweeper, a release frees at once, holds never stop ApplyCredits, and
//! the RPCs refuse bad input and other accounts' holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;
use tonic::Code;

backends!(
    concurrent_holds_take_exactly_the_free_credits,
    expired_holds_free_credits_without_a_sweeper_and_released_ones_at_once,
    holds_never_stop_an_invoice_and_unbilled_usage_counts,
    holds_are_idempotent_bounded_and_per_account,
);

fn hold_request(customer: &str, value: i64, request_id: &str) -> pb::CreateCreditHoldRequest {
    pb::CreateCreditHoldRequest {
        request_id: request_id.into(),
        customer: customer.into(),
        amount: usd(value),
        timeout_seconds: 60,
        unbilled: None,
    }
}

async fn hold(
    t: &TestLedger,
    request: pb::CreateCreditHoldRequest,
) -> Result<pb::CreditHold, tonic::Status> {
    Ok(t.client()
        .create_credit_hold(authed(KEY_A, request))
        .await?
        .into_inner()
        .credit_hold
        .unwrap())
}

async fn held(t: &TestLedger, customer: &str) -> i64 {
    let summary = t
        .client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: customer.into(),
                filter: None,
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    value_of(&summary.balances[0].held_balance)
}

/// 64 concurrent holds of 100 against 1,000: exactly 10 are granted.
async fn concurrent_holds_take_exactly_the_free_credits(t: &TestLedger) {
    create_grant(t, grant_request("cus_1", "g", 1_000)).await;
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let mut client = t.client();
            let request = hold_request("cus_1", 100, &format!("hold-{i}"));
            tokio::spawn(async move { client.create_credit_hold(authed(KEY_A, request)).await })
        })
        .collect();
    let mut granted = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => granted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("does not fit"), "{status:?}");
            }
        }
    }
    assert_eq!(granted, 10);
    assert_eq!(held(t, "cus_1").await, 1_000);
    let active = t
        .client()
        .list_credit_holds(authed(
            KEY_A,
            pb::ListCreditHoldsRequest {
                customer: "cus_1".into(),
                active_only: true,
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.credit_holds.len(), 10);
    assert_audit_clean(t).await;
}

async fn expired_holds_free_credits_without_a_sweeper_and_released_ones_at_once(t: &TestLedger) {
    create_grant(t, grant_request("cus_1", "g", 300)).await;
    let first = hold(t, hold_request("cus_1", 300, "h1")).await.unwrap();
    assert_eq!(first.status(), pb::CreditHoldStatus::Active);
    let refused = hold(t, hold_request("cus_1", 1, "h2")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // The timeout passes; nothing runs; the credits are free again.
    t.clock.advance(TimeDelta::seconds(60));
    assert_eq!(held(t, "cus_1").await, 0);
    let second = hold(t, hold_request("cus_1", 300, "h3")).await.unwrap();
    let expired = t
        .client()
        .get_credit_hold(authed(
            KEY_A,
            pb::GetCreditHoldRequest {
                id: first.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_hold
        .unwrap();
    assert_eq!(expired.status(), pb::CreditHoldStatus::Expired);
    // Releasing the expired one changes nothing; releasing the active one
    // frees its credits at once.
    let release = |id: String| {
        let mut client = t.client();
        async move {
            client
                .release_credit_hold(authed(KEY_A, pb::ReleaseCreditHoldRequest { id }))
                .await
                .unwrap()
                .into_inner()
                .credit_hold
                .unwrap()
        }
    };
    assert_eq!(
        release(first.id.clone()).await.status(),
        pb::CreditHoldStatus::Expired
    );
    let released = release(second.id.clone()).await;
    assert_eq!(released.status(), pb::CreditHoldStatus::Released);
    assert!(released.released_at.is_some());
    assert_eq!(
        release(second.id).await,
        released,
        "a second release is a no-op"
    );
    assert_eq!(held(t, "cus_1").await, 0);
    hold(t, hold_request("cus_1", 300, "h4")).await.unwrap();
}

async fn holds_never_stop_an_invoice_and_unbilled_usage_counts(t: &TestLedger) {
    create_grant(t, grant_request("cus_1", "g", 1_000)).await;
    // 400 of unbilled usage and 500 held leave room for 100.
    let mut with_usage = hold_request("cus_1", 101, "h1");
    with_usage.unbilled = usd(400);
    with_usage.amount = usd(500);
    hold(t, with_usage.clone()).await.unwrap();
    let mut more = with_usage.clone();
    more.request_id = "h2".into();
    more.amount = usd(101);
    assert_eq!(
        hold(t, more.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    more.amount = usd(100);
    hold(t, more).await.unwrap();
    // An invoice still takes every credit it is owed.
    let applied = t
        .client()
        .apply_credits(authed(
            KEY_A,
            apply_request(t, "cus_1", "in_1", vec![line("il_1", "price_1", 1_000)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_of(&applied.lines[0].credits_applied), 1_000);
    assert_eq!(held(t, "cus_1").await, 600, "holds outlive the credits");
    assert_audit_clean(t).await;
}

async fn holds_are_idempotent_bounded_and_per_account(t: &TestLedger) {
    create_grant(t, grant_request("cus_1", "g", 1_000)).await;
    let first = hold(t, hold_request("cus_1", 100, "same")).await.unwrap();
    let again = hold(t, hold_request("cus_1", 100, "same")).await.unwrap();
    assert_eq!(first.id, again.id, "a retry returns the same hold");
    assert_eq!(held(t, "cus_1").await, 100);
    let reused = hold(t, hold_request("cus_1", 200, "same"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");

    let field = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        billing_testkit::bad_request_fields(&status)
    };
    let mut no_key = hold_request("cus_1", 1, "");
    assert_eq!(
        field(hold(t, no_key.clone()).await.unwrap_err()),
        ["request_id"]
    );
    no_key.request_id = "k".into();
    no_key.timeout_seconds = 86_401;
    assert_eq!(
        field(hold(t, no_key.clone()).await.unwrap_err()),
        ["timeout_seconds"]
    );
    no_key.timeout_seconds = 60;
    no_key.amount = usd(0);
    assert_eq!(
        field(hold(t, no_key.clone()).await.unwrap_err()),
        ["amount.monetary.value"]
    );
    no_key.amount = usd(1);
    no_key.unbilled = money("eur", 5);
    assert_eq!(field(hold(t, no_key).await.unwrap_err()), ["unbilled"]);
    // Nothing of that was held.
    assert_eq!(held(t, "cus_1").await, 100);

    let other = t
        .client()
        .get_credit_hold(authed(
            KEY_B,
            pb::GetCreditHoldRequest {
                id: first.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let other = t
        .client()
        .release_credit_hold(authed(KEY_B, pb::ReleaseCreditHoldRequest { id: first.id }))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
}
