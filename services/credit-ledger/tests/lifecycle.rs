//! The ledger's lifecycle RPCs on both backends: RolloverCreditGrants
//! (remainder expired and carried, capped, in one transaction; replayed by
//! its request id), grants pending payment (in the ledger balance only,
//! applied to nothing, until ActivateCreditGrant), and the apply_credits
//! scope guarding all of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;
use tonic::Code;

fn source(kind: pb::CreditGrantSourceType) -> Option<pb::CreditGrantSource> {
    Some(pb::CreditGrantSource {
        r#type: kind.into(),
        subscription: "sub_1".into(),
        allocation: 0,
        period_start: ts(t0()),
        ..Default::default()
    })
}

fn rollover(ids: &[&str], cap: i64, request_id: &str) -> pb::RolloverCreditGrantsRequest {
    pb::RolloverCreditGrantsRequest {
        request_id: request_id.into(),
        credit_grants: ids.iter().map(|id| (*id).to_owned()).collect(),
        carried: Some(pb::CreateCreditGrantRequest {
            source: source(pb::CreditGrantSourceType::Rollover),
            ..grant_request("cus_1", "Carried", cap)
        }),
    }
}

async fn balance(t: &TestLedger, customer: &str) -> pb::CreditBalance {
    t.client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
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

async fn a_rollover_expires_the_remainder_and_carries_it_capped(t: &TestLedger) {
    let first = create_grant(t, grant_request("cus_1", "January", 1_000)).await;
    let second = create_grant(t, grant_request("cus_1", "Carried in", 200)).await;
    let untouched = create_grant(t, grant_request("cus_1", "Bought", 5_000)).await;
    // 900 applied, all from the oldest grant: 100 + 200 are left of the two
    // rolled over, 300 in all, capped at 250.
    t.client()
        .apply_credits(authed(
            KEY_A,
            apply_request(t, "cus_1", "in_1", vec![line("il_1", "price_1", 900)]),
        ))
        .await
        .unwrap();
    t.clock.advance(TimeDelta::hours(1));
    let request = rollover(&[&first.id, &second.id], 250, "roll-1");
    let rolled = t
        .client()
        .rollover_credit_grants(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let left: i64 = rolled.expired.iter().map(|g| value_of(&g.available)).sum();
    assert_eq!(left, 0, "the remainder expired");
    let carried = rolled.carried.clone().expect("something was left");
    assert_eq!(value_of(&carried.amount), 250, "capped");
    assert_eq!(
        carried.source.as_ref().unwrap().r#type(),
        pb::CreditGrantSourceType::Rollover
    );
    // Replayed: the same outcome, nothing more written.
    let again = t
        .client()
        .rollover_credit_grants(authed(KEY_A, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, rolled);
    let after = balance(t, "cus_1").await;
    assert_eq!(value_of(&after.available_balance), 5_000 + 250);
    let bought = t
        .client()
        .get_credit_grant(authed(
            KEY_A,
            pb::GetCreditGrantRequest { id: untouched.id },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert_eq!(value_of(&bought.available), 5_000, "other grants untouched");
    assert_audit_clean(t).await;
}

async fn a_rollover_of_another_customers_grant_or_an_unknown_one_is_refused(t: &TestLedger) {
    let mine = create_grant(t, grant_request("cus_1", "Mine", 100)).await;
    let theirs = create_grant(t, grant_request("cus_2", "Theirs", 100)).await;
    let refused = t
        .client()
        .rollover_credit_grants(authed(
            KEY_A,
            rollover(&[&mine.id, &theirs.id], 50, "roll-mixed"),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&refused),
        vec!["credit_grants".to_owned()]
    );
    let unknown = t
        .client()
        .rollover_credit_grants(authed(
            KEY_A,
            rollover(&["credgr_nope"], 50, "roll-unknown"),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut without_key = rollover(&[&mine.id], 50, "");
    without_key.request_id.clear();
    let refused = t
        .client()
        .rollover_credit_grants(authed(KEY_A, without_key))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&refused),
        vec!["request_id".to_owned()]
    );
    // Nothing was written by any of them.
    assert_eq!(value_of(&balance(t, "cus_1").await.available_balance), 100);
}

async fn a_grant_pending_payment_pays_nothing_until_activated(t: &TestLedger) {
    let pending = create_grant(
        t,
        pb::CreateCreditGrantRequest {
            pending_payment: true,
            cost_basis: Some(pb::CostBasis {
                currency: "usd".into(),
                unit_amount_decimal: "95.5".into(),
            }),
            ..grant_request("cus_1", "Bought", 1_000)
        },
    )
    .await;
    assert_eq!(pending.state(), pb::CreditGrantState::PendingPayment);
    let summary = balance(t, "cus_1").await;
    assert_eq!(value_of(&summary.available_balance), 0);
    assert_eq!(value_of(&summary.pending_balance), 1_000);
    assert_eq!(value_of(&summary.ledger_balance), 1_000);
    let applied = t
        .client()
        .apply_credits(authed(
            KEY_A,
            apply_request(t, "cus_1", "in_early", vec![line("il_1", "price_1", 300)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        applied.applications.is_empty(),
        "pending credits pay nothing"
    );

    let activate = pb::ActivateCreditGrantRequest {
        id: pending.id.clone(),
        ..Default::default()
    };
    let active = t
        .client()
        .activate_credit_grant(authed(KEY_A, activate.clone()))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert_eq!(active.state(), pb::CreditGrantState::Granted);
    assert_eq!(active.cost_basis.unwrap().unit_amount_decimal, "95.5");
    // Again: nothing changes.
    t.client()
        .activate_credit_grant(authed(KEY_A, activate))
        .await
        .unwrap();
    let applied = t
        .client()
        .apply_credits(authed(
            KEY_A,
            apply_request(t, "cus_1", "in_late", vec![line("il_1", "price_1", 300)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.applications.len(), 1);
    let transactions = all_transactions(t, "cus_1").await;
    assert!(
        transactions
            .iter()
            .all(|t| t.cost_basis.as_ref().is_some_and(|c| c.currency == "usd")),
        "the cost basis is on every transaction of the grant"
    );
    assert_audit_clean(t).await;
}

async fn lifecycle_calls_need_the_apply_credits_scope(t: &TestLedger) {
    let grant = create_grant(t, grant_request("cus_1", "Any", 100)).await;
    let denied = [
        t.client()
            .rollover_credit_grants(authed(
                KEY_A_PLAIN,
                rollover(&[&grant.id], 50, "roll-plain"),
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
        t.client()
            .activate_credit_grant(authed(
                KEY_A_PLAIN,
                pb::ActivateCreditGrantRequest {
                    id: grant.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
        t.client()
            .create_credit_grant(authed(
                KEY_A_PLAIN,
                pb::CreateCreditGrantRequest {
                    source: source(pb::CreditGrantSourceType::Allocation),
                    ..grant_request("cus_1", "Claimed", 100)
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
        t.client()
            .create_credit_grant(authed(
                KEY_A_PLAIN,
                pb::CreateCreditGrantRequest {
                    pending_payment: true,
                    ..grant_request("cus_1", "Pending", 100)
                },
            ))
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    assert_eq!(value_of(&balance(t, "cus_1").await.ledger_balance), 100);
}

backends!(
    a_rollover_expires_the_remainder_and_carries_it_capped,
    a_rollover_of_another_customers_grant_or_an_unknown_one_is_refused,
    a_grant_pending_payment_pays_nothing_until_activated,
    lifecycle_calls_need_the_apply_credits_scope
);
