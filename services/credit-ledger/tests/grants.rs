//! Grant lifecycle: idempotent creation, update, void, expire, the expiry
//! sweeper's grace period, balance summaries, pagination, pricing units.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::common::v1 as common_pb;
use billing_proto::ledger::v1 as pb;
use billing_server::leases::{Leases, item_key};
use chrono::TimeDelta;
use common::*;
use credit_ledger::jobs::sweeper::{SweeperOptions, sweep_once};
use tonic_types::StatusExt;

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

async fn summary(
    t: &TestLedger,
    customer: &str,
    filter: Option<pb::credit_balance_filter::Kind>,
) -> Vec<(i64, i64)> {
    t.client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: customer.into(),
                filter: filter.map(|kind| pb::CreditBalanceFilter { kind: Some(kind) }),
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .balances
        .iter()
        .map(|b| (value_of(&b.available_balance), value_of(&b.ledger_balance)))
        .collect()
}

async fn request_id_makes_creation_idempotent(t: &TestLedger) {
    let mut request = grant_request("cus_idem", "g", 100);
    request.request_id = "req-1".into();
    let first = create_grant(t, request.clone()).await;
    t.clock.advance(TimeDelta::seconds(5));
    let again = create_grant(t, request.clone()).await;
    assert_eq!(first, again, "a replay returns the original response");

    request.amount = usd(101);
    let status = t
        .client()
        .create_credit_grant(authed(KEY_A, request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(reason(&status), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(summary(t, "cus_idem", None).await, vec![(100, 100)]);

    // The same key on another method is a different request.
    let status = t
        .client()
        .void_credit_grant(authed(
            KEY_A,
            pb::VoidCreditGrantRequest {
                request_id: "req-1".into(),
                id: first.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "IDEMPOTENCY_KEY_REUSED");
    // Keys are per account.
    let mut other = grant_request("cus_idem", "g", 100);
    other.request_id = "req-1".into();
    assert!(
        t.client()
            .create_credit_grant(authed(KEY_B, other))
            .await
            .is_ok()
    );
}

async fn void_only_unapplied_grants(t: &TestLedger) {
    let customer = "cus_void";
    let drained = create_grant(t, grant_request(customer, "drained", 100)).await;
    let partly = create_grant(t, grant_request(customer, "partly", 100)).await;
    let apply = apply_request(t, customer, "in_1", vec![line("l1", "price_a", 150)]);
    t.client()
        .apply_credits(authed(KEY_A, apply))
        .await
        .unwrap();
    let void = |id: String| {
        let mut client = t.client();
        async move {
            client
                .void_credit_grant(authed(
                    KEY_A,
                    pb::VoidCreditGrantRequest {
                        id,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    let fresh = create_grant(t, grant_request(customer, "fresh", 70)).await;
    let voided = void(fresh.id.clone())
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert_eq!(voided.state, pb::CreditGrantState::Voided as i32);
    assert_eq!(value_of(&voided.available), 0);
    assert!(voided.voided_at.is_some());
    for id in [drained.id, partly.id] {
        let status = void(id).await.unwrap_err();
        assert_eq!(reason(&status), "GRANT_ALREADY_APPLIED");
    }
    assert_eq!(reason(&void(fresh.id).await.unwrap_err()), "GRANT_VOIDED");
    assert_audit_clean(t).await;
}

async fn expire_now_and_update(t: &TestLedger) {
    let customer = "cus_expire";
    let grant = create_grant(t, grant_request(customer, "g", 100)).await;
    let mut update = pb::UpdateCreditGrantRequest {
        id: grant.id.clone(),
        name: Some("renamed".into()),
        expires_at: ts(t0() + TimeDelta::days(30)),
        ..Default::default()
    };
    update.metadata.insert("plan".into(), "pro".into());
    let updated = t
        .client()
        .update_credit_grant(authed(KEY_A, update))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        updated.metadata.get("plan").map(String::as_str),
        Some("pro")
    );
    assert_eq!(updated.expires_at, ts(t0() + TimeDelta::days(30)));

    let mut removal = pb::UpdateCreditGrantRequest {
        id: grant.id.clone(),
        clear_expires_at: true,
        ..Default::default()
    };
    removal.metadata.insert("plan".into(), String::new());
    let updated = t
        .client()
        .update_credit_grant(authed(KEY_A, removal))
        .await
        .unwrap()
        .into_inner()
        .credit_grant
        .unwrap();
    assert!(updated.metadata.is_empty() && updated.expires_at.is_none());

    let bad = pb::UpdateCreditGrantRequest {
        id: grant.id.clone(),
        expires_at: ts(t0() - TimeDelta::days(30)),
        ..Default::default()
    };
    let status = t
        .client()
        .update_credit_grant(authed(KEY_A, bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let expire = || {
        let mut client = t.client();
        let id = grant.id.clone();
        async move {
            client
                .expire_credit_grant(authed(
                    KEY_A,
                    pb::ExpireCreditGrantRequest {
                        id,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    let expired = expire().await.unwrap().into_inner().credit_grant.unwrap();
    assert_eq!(expired.state, pb::CreditGrantState::Expired as i32);
    assert_eq!(summary(t, customer, None).await, vec![(0, 0)]);
    assert_eq!(
        reason(&expire().await.unwrap_err()),
        "GRANT_ALREADY_EXPIRED"
    );
    assert_audit_clean(t).await;
}

async fn sweeper_waits_for_the_grace_period(t: &TestLedger) {
    let customer = "cus_sweep";
    let mut request = grant_request(customer, "g", 1_000);
    request.expires_at = ts(t0() + TimeDelta::hours(1));
    let grant = create_grant(t, request).await;
    let options = SweeperOptions::default();

    t.clock.advance(TimeDelta::hours(2));
    assert_eq!(
        summary(t, customer, None).await,
        vec![(0, 1_000)],
        "not available, still on the ledger"
    );
    assert_eq!(
        sweep_once(&t.ledger, &options)
            .await
            .unwrap()
            .grants_expired,
        0,
        "inside the grace period"
    );

    // An invoice whose period ended before expires_at can still use it.
    let mut apply = apply_request(t, customer, "in_late", vec![line("l1", "price_a", 300)]);
    apply.period_end = ts(t0() + TimeDelta::minutes(30));
    let applied = t
        .client()
        .apply_credits(authed(KEY_A, apply))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value_of(&applied.totals[0].credits_applied), 300);

    t.clock.advance(TimeDelta::hours(24));
    assert_eq!(
        sweep_once(&t.ledger, &options)
            .await
            .unwrap()
            .grants_expired,
        1
    );
    assert_eq!(summary(t, customer, None).await, vec![(0, 0)]);
    let newest = &all_transactions(t, customer).await[0];
    let debit = newest.debit.as_ref().unwrap();
    assert_eq!(
        (debit.r#type, value_of(&debit.amount)),
        (pb::DebitType::CreditsExpired as i32, 700)
    );
    assert_eq!(
        newest.effective_at,
        ts(t0() + TimeDelta::hours(1)),
        "effective at expires_at"
    );
    assert_eq!(newest.credit_grant, grant.id);
    assert_eq!(
        sweep_once(&t.ledger, &options)
            .await
            .unwrap()
            .grants_expired,
        0,
        "nothing left to sweep"
    );
    assert_audit_clean(t).await;
}

/// Replicas split the sweep (issue 19): a grant another replica has
/// leased is left to it, two sweeps at once expire every grant once, and a
/// lease given back (or run out) is anyone's.
async fn replicas_split_the_sweep(t: &TestLedger) {
    let customer = "cus_split";
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut request = grant_request(customer, &format!("g{i}"), 100);
        request.expires_at = ts(t0() + TimeDelta::hours(1));
        ids.push(create_grant(t, request).await.id);
    }
    t.clock.advance(TimeDelta::hours(26));
    let replica = |name: &str| SweeperOptions {
        instance: name.to_owned(),
        ..SweeperOptions::default()
    };
    // Replica b is expiring the first four.
    let b = Leases::new(t.ledger.store().db().clone(), "b");
    let held: Vec<String> = ids[..4].iter().map(|id| item_key("acct_a", id)).collect();
    assert_eq!(b.take("expire_grant", &held).await.unwrap(), held);
    let report = sweep_once(&t.ledger, &replica("a")).await.unwrap();
    assert_eq!((report.grants_expired, report.leased_elsewhere), (8, 4));
    assert_eq!(summary(t, customer, None).await, vec![(0, 400)]);
    b.give_back("expire_grant", &held).await;

    // Two sweeps at once: each grant's expiry recorded once.
    let (a, c) = (replica("a"), replica("c"));
    let (first, second) = tokio::join!(sweep_once(&t.ledger, &a), sweep_once(&t.ledger, &c));
    let expired = first.unwrap().grants_expired + second.unwrap().grants_expired;
    assert_eq!(expired, 4);
    assert_eq!(summary(t, customer, None).await, vec![(0, 0)]);
    let expiries = all_transactions(t, customer)
        .await
        .iter()
        .filter(|tx| {
            tx.debit
                .as_ref()
                .is_some_and(|d| d.r#type == pb::DebitType::CreditsExpired as i32)
        })
        .count();
    assert_eq!(expiries, 12);
    assert_audit_clean(t).await;
}

async fn balance_summary_filters(t: &TestLedger) {
    let customer = "cus_summary";
    let metered = create_grant(t, grant_request(customer, "metered", 100)).await;
    let mut scoped = grant_request(customer, "scoped", 50);
    scoped.applicability_config = Some(pb::ApplicabilityConfig {
        scope: Some(pb::ApplicabilityScope {
            price_type: 0,
            prices: vec!["price_b".into()],
        }),
    });
    create_grant(t, scoped).await;
    let mut pending = grant_request(customer, "pending", 25);
    pending.effective_at = ts(t0() + TimeDelta::days(1));
    create_grant(t, pending).await;
    let mut eur = grant_request(customer, "eur", 7);
    eur.amount = money("eur", 7);
    create_grant(t, eur).await;

    assert_eq!(
        summary(t, customer, None).await,
        vec![(7, 7), (150, 175)],
        "eur then usd; pending only on the ledger"
    );
    use pb::credit_balance_filter::Kind;
    assert_eq!(
        summary(t, customer, Some(Kind::CreditGrant(metered.id.clone()))).await,
        vec![(100, 100)]
    );
    let price = |p: &str| {
        Kind::ApplicabilityScope(pb::ApplicabilityScope {
            price_type: 0,
            prices: vec![p.into()],
        })
    };
    assert_eq!(
        summary(t, customer, Some(price("price_b"))).await,
        vec![(7, 7), (150, 175)]
    );
    assert_eq!(
        summary(t, customer, Some(price("price_a"))).await,
        vec![(7, 7), (100, 125)]
    );
    let unknown = t
        .client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: customer.into(),
                filter: Some(pb::CreditBalanceFilter {
                    kind: Some(Kind::CreditGrant("credgr_nope".into())),
                }),
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

async fn lists_page_newest_first(t: &TestLedger) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            create_grant(t, grant_request("cus_page", &format!("g{i}"), 10))
                .await
                .id,
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = t
            .client()
            .list_credit_grants(authed(
                KEY_A,
                pb::ListCreditGrantsRequest {
                    customer: "cus_page".into(),
                    page_size: 2,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.credit_grants.len() <= 2);
        seen.extend(page.credit_grants.into_iter().map(|g| g.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
}

async fn custom_pricing_units_are_exact(t: &TestLedger) {
    let unit = t
        .client()
        .create_pricing_unit(authed(
            KEY_A,
            pb::CreatePricingUnitRequest {
                display_name: "API credits".into(),
                scale: 3,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pricing_unit
        .unwrap();
    let amount = |value: &str| {
        Some(common_pb::Amount {
            kind: Some(common_pb::amount::Kind::CustomPricingUnit(
                common_pb::CustomPricingUnitAmount {
                    id: unit.id.clone(),
                    value: value.into(),
                },
            )),
        })
    };
    let mut request = grant_request("cus_units", "credits", 0);
    request.amount = amount("10.5");
    let grant = create_grant(t, request).await;
    assert_eq!(grant.amount, amount("10.500"));
    let apply = apply_request(
        t,
        "cus_units",
        "in_units",
        vec![
            pb::InvoiceLine {
                invoice_line_item: "l1".into(),
                price: "price_a".into(),
                amount: amount("4.125"),
            },
            line("l2", "price_a", 100),
        ],
    );
    let applied = t
        .client()
        .apply_credits(authed(KEY_A, apply))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        applied.applications.len(),
        1,
        "usd line gets no unit credits"
    );
    assert_eq!(applied.applications[0].amount, amount("4.125"));
    assert_eq!(applied.lines[1].amount_remaining, usd(100));
    let fetched = t
        .client()
        .get_pricing_unit(authed(
            KEY_A,
            pb::GetPricingUnitRequest {
                id: unit.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.pricing_unit.unwrap().scale, 3);
}

backends!(
    request_id_makes_creation_idempotent,
    void_only_unapplied_grants,
    expire_now_and_update,
    sweeper_waits_for_the_grace_period,
    replicas_split_the_sweep,
    balance_summary_filters,
    lists_page_newest_first,
    custom_pricing_units_are_exact,
);
