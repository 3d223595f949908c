//! Never overdraw, never apply twice: concurrency, replays, reversals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;
use tonic_types::StatusExt;

/// 32 concurrent ApplyCredits for one customer (different invoices) apply
/// exactly the credit available when demand exceeds it; no grant goes negative.
async fn concurrent_applications_never_overdraw(t: &TestLedger) {
    let customer = "cus_hot";
    for (name, value) in [("a", 300), ("b", 300), ("c", 400)] {
        create_grant(t, grant_request(customer, name, value)).await;
    }
    let mut calls = Vec::new();
    for i in 0..32 {
        let mut client = t.client();
        let request = apply_request(
            t,
            customer,
            &format!("in_{i}"),
            vec![line("l1", "price_a", 50)],
        );
        calls.push(tokio::spawn(async move {
            client.apply_credits(authed(KEY_A, request)).await
        }));
    }
    let mut applied = 0;
    for call in calls {
        let response = call
            .await
            .unwrap()
            .expect("every call succeeds")
            .into_inner();
        applied += value_of(&response.totals[0].credits_applied);
    }
    assert_eq!(applied, 1_000, "demand 1,600 against 1,000 available");

    let grants = t
        .client()
        .list_credit_grants(authed(
            KEY_A,
            pb::ListCreditGrantsRequest {
                customer: customer.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    assert!(grants.iter().all(|g| value_of(&g.available) == 0));
    assert_audit_clean(t).await;
}

async fn replay_returns_the_same_response_and_writes_nothing(t: &TestLedger) {
    let customer = "cus_replay";
    create_grant(t, grant_request(customer, "g", 1_000)).await;
    let request = apply_request(
        t,
        customer,
        "in_1",
        vec![line("l1", "price_a", 300), line("l2", "price_a", 200)],
    );
    let first = t
        .client()
        .apply_credits(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let before = all_transactions(t, customer).await;

    let replay = t
        .client()
        .apply_credits(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, replay);
    assert_eq!(
        all_transactions(t, customer).await,
        before,
        "a replay writes no row"
    );

    // The same invoice with other lines is refused and writes nothing.
    let mut other = request.clone();
    other.lines[0].amount = usd(301);
    let status = t
        .client()
        .apply_credits(authed(KEY_A, other))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "INVOICE_ALREADY_APPLIED"
    );
    assert_eq!(all_transactions(t, customer).await, before);

    // A preview of an applied invoice shows the stored result.
    let mut preview = request;
    preview.preview = true;
    let shown = t
        .client()
        .apply_credits(authed(KEY_A, preview))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown, first);
    assert_audit_clean(t).await;
}

async fn preview_writes_nothing(t: &TestLedger) {
    let customer = "cus_preview";
    create_grant(t, grant_request(customer, "g", 500)).await;
    let mut request = apply_request(t, customer, "in_p", vec![line("l1", "price_a", 800)]);
    request.preview = true;
    let before = all_transactions(t, customer).await;
    let shown = t
        .client()
        .apply_credits(authed(KEY_A, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(shown.preview);
    assert_eq!(value_of(&shown.totals[0].credits_applied), 500);
    assert!(shown.applications[0].credit_balance_transaction.is_empty());
    assert_eq!(all_transactions(t, customer).await, before);
    // The real application afterwards is not blocked by the preview.
    request.preview = false;
    let applied = t
        .client()
        .apply_credits(authed(KEY_A, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_of(&applied.totals[0].amount_remaining), 300);
}

async fn reversal_reinstates_credit_for_the_next_invoice(t: &TestLedger) {
    let customer = "cus_reverse";
    create_grant(t, grant_request(customer, "g", 1_000)).await;
    let first = apply_request(t, customer, "in_1", vec![line("l1", "price_a", 700)]);
    t.client()
        .apply_credits(authed(KEY_A, first))
        .await
        .unwrap();

    let reversal = reverse(t, "in_1").await.unwrap();
    assert_eq!(reversal.reversals.len(), 1);
    assert!(reversal.reversals[0].expired_balance_transaction.is_empty());
    // Reversing again changes nothing and answers the same.
    let before = all_transactions(t, customer).await;
    let again = reverse(t, "in_1").await.unwrap();
    assert_eq!(again, reversal);
    assert_eq!(all_transactions(t, customer).await, before);

    let second = apply_request(t, customer, "in_2", vec![line("l1", "price_a", 1_000)]);
    let applied = t
        .client()
        .apply_credits(authed(KEY_A, second))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        value_of(&applied.totals[0].credits_applied),
        1_000,
        "the reinstated 700 is used again"
    );

    let unknown = reverse(t, "in_never").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_audit_clean(t).await;
}

async fn reversal_on_an_expired_grant_expires_at_once(t: &TestLedger) {
    let customer = "cus_reverse_expired";
    let mut request = grant_request(customer, "g", 1_000);
    request.expires_at = ts(t0() + TimeDelta::hours(1));
    let grant = create_grant(t, request).await;
    let apply = apply_request(t, customer, "in_1", vec![line("l1", "price_a", 400)]);
    t.client()
        .apply_credits(authed(KEY_A, apply))
        .await
        .unwrap();

    t.clock.advance(TimeDelta::hours(2));
    let reversal = reverse(t, "in_1").await.unwrap();
    assert!(!reversal.reversals[0].expired_balance_transaction.is_empty());

    let kinds: Vec<(i32, i64)> = all_transactions(t, customer)
        .await
        .iter()
        .filter(|tx| tx.credit_grant == grant.id)
        .map(|tx| match (&tx.credit, &tx.debit) {
            (Some(c), _) => (c.r#type, value_of(&c.amount)),
            (_, Some(d)) => (-d.r#type, value_of(&d.amount)),
            _ => unreachable!(),
        })
        .collect();
    let expired = -(pb::DebitType::CreditsExpired as i32);
    let reinstated = pb::CreditType::CreditsApplicationInvoiceVoided as i32;
    assert_eq!(
        kinds[0],
        (expired, 400),
        "newest first: the immediate expiry"
    );
    assert_eq!(kinds[1], (reinstated, 400));

    let fetched = t
        .client()
        .get_credit_grant(authed(
            KEY_A,
            pb::GetCreditGrantRequest {
                id: grant.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert_eq!(
        value_of(&fetched.available),
        600,
        "only the unapplied remainder is left to the sweeper"
    );
    assert_audit_clean(t).await;
}

async fn apply_needs_the_scope(t: &TestLedger) {
    let request = apply_request(t, "cus_scope", "in_1", vec![line("l1", "price_a", 1)]);
    let status = t
        .client()
        .apply_credits(authed(KEY_A_PLAIN, request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = t
        .client()
        .reverse_credits(authed(
            KEY_A_PLAIN,
            pb::ReverseCreditsRequest {
                invoice: "in_1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

backends!(
    concurrent_applications_never_overdraw,
    replay_returns_the_same_response_and_writes_nothing,
    preview_writes_nothing,
    reversal_reinstates_credit_for_the_next_invoice,
    reversal_on_an_expired_grant_expires_at_once,
    apply_needs_the_scope,
);
