//! Credit pools across a customer hierarchy (DESIGN.md §13) through the
//! real services: a child's own grants pay first, then its parent's grants
//! shared with descendants, then its grandparent's; twenty children
//! finalizing at once never overdraw the parent's pool; a hierarchy has no
//! cycles and is at most five deep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::{metered, usd, value_of};
use billing_testkit::{authed, bad_request_fields};
use chrono::{Months, TimeDelta};
use common::*;
use tonic::Code;

backends!(
    twenty_children_finalizing_at_once_never_overdraw_the_pool,
    own_grants_pay_first_then_the_parent_then_the_grandparent,
    a_hierarchy_has_no_cycles_and_is_at_most_five_deep,
);

async fn customer(t: &Suite, name: &str, parent: &str) -> Result<String, tonic::Status> {
    Ok(t.invoicing
        .clone()
        .create_customer(authed(
            KEY_A,
            pb::CreateCustomerRequest {
                name: name.into(),
                parent: parent.into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .customer
        .unwrap()
        .id)
}

async fn move_to(t: &Suite, id: &str, parent: &str) -> Result<pb::Customer, tonic::Status> {
    Ok(t.invoicing
        .clone()
        .update_customer(authed(
            KEY_A,
            pb::UpdateCustomerRequest {
                id: id.into(),
                parent: Some(parent.into()),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .customer
        .unwrap())
}

async fn grant(t: &Suite, customer: &str, cents: i64, shared: bool) -> String {
    t.grant(ledger::CreateCreditGrantRequest {
        customer: customer.into(),
        name: if shared { "pool" } else { "own" }.into(),
        amount: usd(cents),
        applicability_config: metered(),
        shared_with_descendants: shared,
        ..Default::default()
    })
    .await
    .id
}

async fn available(t: &Suite, grant: &str) -> i64 {
    let found = t
        .ledger
        .clone()
        .get_credit_grant(authed(
            KEY_A,
            ledger::GetCreditGrantRequest { id: grant.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    value_of(&found.available)
}

/// Bills `customer` `calls` calls in the first period (a cent a call).
async fn usage(t: &Suite, customer: &str, calls: &str) {
    t.usage(
        "pool_calls",
        customer,
        t0() + TimeDelta::days(2),
        &[(&format!("{customer}-calls"), calls)],
    )
    .await;
}

async fn audit_clean(t: &Suite) {
    let audit = t
        .ledger
        .clone()
        .audit_ledger(authed(KEY_A, ledger::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
}

async fn twenty_children_finalizing_at_once_never_overdraw_the_pool(t: &Suite) {
    let meter = t.meter("pool_calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let parent = customer(t, "Holding", "").await.unwrap();
    let pool = grant(t, &parent, 10_000, true).await;
    let kept = grant(t, &parent, 5_000, false).await;
    let mut children = Vec::new();
    for n in 0..20 {
        let child = customer(t, &format!("Unit {n}"), &parent).await.unwrap();
        let own = grant(t, &child, 100, false).await;
        let sub = t.subscribe(&child, &[&price]).await.id;
        children.push((child, own, sub));
    }
    for (child, _, _) in &children {
        usage(t, child, "700").await;
    }
    t.advance_to(t0().checked_add_months(Months::new(1)).unwrap())
        .await;
    let mut drafts = Vec::new();
    for (_, _, sub) in &children {
        drafts.push(t.create_invoice(sub).await.id);
    }
    // All twenty at once.
    let finalized = futures_util::future::join_all(drafts.iter().map(|id| t.finalize(id))).await;
    let mut applied = 0;
    for invoice in finalized {
        let invoice = invoice.unwrap();
        applied += value_of(&invoice.totals[0].total_credits_applied);
    }
    // 20 × 700 due; the children's own 20 × 100 go first; the pool pays
    // what it holds and not a cent more; the parent's own grant pays none.
    assert_eq!(applied, 2_000 + 10_000);
    assert_eq!(available(t, &pool).await, 0);
    assert_eq!(available(t, &kept).await, 5_000);
    for (_, own, _) in &children {
        assert_eq!(available(t, own).await, 0, "each child's own credits first");
    }
    audit_clean(t).await;
}

async fn own_grants_pay_first_then_the_parent_then_the_grandparent(t: &Suite) {
    let meter = t.meter("pool_calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let top = customer(t, "Group", "").await.unwrap();
    let middle = customer(t, "Division", &top).await.unwrap();
    let leaf = customer(t, "Team", &middle).await.unwrap();
    let from_top = grant(t, &top, 300, true).await;
    let from_middle = grant(t, &middle, 200, true).await;
    let own = grant(t, &leaf, 100, false).await;
    let sub = t.subscribe(&leaf, &[&price]).await.id;
    usage(t, &leaf, "700").await;

    // The leaf's summary shows what the pool offers, apart from its own.
    let summary = t
        .ledger
        .clone()
        .get_credit_balance_summary(authed(
            KEY_A,
            ledger::GetCreditBalanceSummaryRequest {
                customer: leaf.clone(),
                pool: vec![middle.clone(), top.clone()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_of(&summary.balances[0].available_balance), 100);
    assert_eq!(value_of(&summary.balances[0].pooled_available), 500);
    // Invoicing's real-time balance counts the pool: 700 of usage, 100 of
    // the leaf's own and 500 of the pool's credits would pay 600.
    let now = t.customer_balance(&leaf).await;
    assert_eq!(
        (
            value_of(&now[0].pooled_available),
            value_of(&now[0].unbilled_credits),
            value_of(&now[0].ongoing_balance),
            value_of(&now[0].overage)
        ),
        (500, 600, 0, 100)
    );
    assert_eq!(now[0].overage_converted, None, "usd does not convert");

    t.advance_to(t0().checked_add_months(Months::new(1)).unwrap())
        .await;
    let draft = t.create_invoice(&sub).await;
    let done = t.finalize(&draft.id).await.unwrap();
    let paid: Vec<(String, i64)> = done.lines[0]
        .credit_applications
        .iter()
        .map(|a| (a.credit_grant.clone(), value_of(&a.amount)))
        .collect();
    assert_eq!(
        paid,
        [
            (own.clone(), 100),
            (from_middle.clone(), 200),
            (from_top.clone(), 300)
        ]
    );
    assert_eq!(value_of(&done.totals[0].amount_due), 100);
    assert_eq!(available(t, &from_top).await, 0);

    // Voiding gives each grant its own credits back.
    t.void(&draft.id).await.unwrap();
    assert_eq!(
        (
            available(t, &own).await,
            available(t, &from_middle).await,
            available(t, &from_top).await
        ),
        (100, 200, 300)
    );
    audit_clean(t).await;
}

async fn a_hierarchy_has_no_cycles_and_is_at_most_five_deep(t: &Suite) {
    let mut chain = vec![customer(t, "Level 1", "").await.unwrap()];
    for level in 2..=5 {
        let parent = chain.last().unwrap().clone();
        chain.push(
            customer(t, &format!("Level {level}"), &parent)
                .await
                .unwrap(),
        );
    }
    // A sixth level is refused, naming the field.
    let deep = customer(t, "Level 6", chain.last().unwrap())
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&deep), ["parent"]);
    // So is moving a two-level subtree under level 4.
    let other = customer(t, "Other", "").await.unwrap();
    customer(t, "Other's child", &other).await.unwrap();
    let moved = move_to(t, &other, &chain[3]).await.unwrap_err();
    assert_eq!(bad_request_fields(&moved), ["parent"]);
    // A cycle is refused; so is being one's own parent.
    let cycle = move_to(t, &chain[0], &chain[2]).await.unwrap_err();
    assert_eq!(bad_request_fields(&cycle), ["parent"]);
    let own = move_to(t, &chain[0], &chain[0]).await.unwrap_err();
    assert_eq!(bad_request_fields(&own), ["parent"]);
    // Unknown and other accounts' parents are NOT_FOUND.
    let unknown = customer(t, "Orphan", "cus_nobody").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let foreign = t
        .invoicing
        .clone()
        .create_customer(authed(
            KEY_B,
            pb::CreateCustomerRequest {
                name: "Theirs".into(),
                parent: chain[0].clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    // "" removes the parent; then the move fits.
    let detached = move_to(t, &chain[4], "").await.unwrap();
    assert_eq!(detached.parent, "");
    let fits = move_to(t, &chain[1], &other).await.unwrap();
    assert_eq!(fits.parent, other);
}
