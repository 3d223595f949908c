//! ApplyCredits' credit pool at the ledger's edge: the pool is checked
//! field by field, an ancestor's grant pays only when shared, and a retry
//! with another pool returns the first outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::ledger::v1 as pb;
use billing_testkit::bad_request_fields;
use common::*;

backends!(
    a_bad_pool_is_refused_naming_each_entry,
    only_shared_grants_of_the_pool_pay_and_a_retry_keeps_the_first_outcome,
);

async fn grant(t: &TestLedger, customer: &str, cents: i64, shared: bool) -> String {
    create_grant(
        t,
        pb::CreateCreditGrantRequest {
            customer: customer.into(),
            name: "pool".into(),
            amount: usd(cents),
            applicability_config: metered(),
            shared_with_descendants: shared,
            ..Default::default()
        },
    )
    .await
    .id
}

async fn apply(
    t: &TestLedger,
    invoice: &str,
    pool: &[&str],
) -> Result<pb::ApplyCreditsResponse, tonic::Status> {
    let mut request = apply_request(t, "cus_child", invoice, vec![line("il_1", "price_1", 500)]);
    request.pool = pool.iter().map(|p| (*p).to_owned()).collect();
    t.client()
        .apply_credits(authed(KEY_A, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn a_bad_pool_is_refused_naming_each_entry(t: &TestLedger) {
    let error = apply(t, "in_bad", &["cus_child", "cus_a", "cus_a", "has space"])
        .await
        .unwrap_err();
    assert_eq!(
        bad_request_fields(&error),
        ["pool[0]", "pool[2]", "pool[3]"]
    );
    let error = apply(t, "in_bad", &["a", "b", "c", "d", "e"])
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&error), ["pool"]);
    assert!(all_transactions(t, "cus_child").await.is_empty());
}

async fn only_shared_grants_of_the_pool_pay_and_a_retry_keeps_the_first_outcome(t: &TestLedger) {
    grant(t, "cus_parent", 1_000, false).await;
    let shared = grant(t, "cus_parent", 300, true).await;
    let own = grant(t, "cus_child", 100, false).await;
    let first = apply(t, "in_1", &["cus_parent"]).await.unwrap();
    let paid: Vec<(&str, i64)> = first
        .applications
        .iter()
        .map(|a| (a.credit_grant.as_str(), value_of(&a.amount)))
        .collect();
    assert_eq!(paid, [(own.as_str(), 100), (shared.as_str(), 300)]);
    // The hierarchy changed before a retry: the first application stands.
    let again = apply(t, "in_1", &[]).await.unwrap();
    assert_eq!(again.applications, first.applications);
    assert_audit_clean(t).await;
}
