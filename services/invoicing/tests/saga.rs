//! The finalize saga across the three real services: credits in Stripe's
//! order, exactly once under concurrency and outages; voiding gives them back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_server::leases::{Leases, item_key};
use chrono::{Months, TimeDelta};
use common::*;
use invoicing::jobs::worker::Worker;
use tonic::Code;

backends!(
    finalize_applies_credits_in_order_and_void_gives_them_back,
    period_close_and_auto_finalize_follow_the_clock,
    replicas_split_period_closes,
    sixteen_concurrent_finalizes_apply_once,
    concurrent_invoices_of_one_customer_never_overdraw,
    ledger_down_leaves_finalizing_then_completes_once,
    a_dead_replicas_claims_run_out_or_come_back_with_it,
    void_with_ledger_down_shows_the_error_and_retries_on_request,
    preview_writes_nothing,
    pricing_unit_lines_show_credits_in_the_unit,
    cancel_now_bills_the_partial_period,
    cancel_at_period_end_ends_with_the_period,
    zero_usage_is_paid_without_credits,
);

/// Meter, usd price of 2.5 cents per call, customer, subscription from t0,
/// 1,000 calls on day 2. Returns (customer, subscription, price).
async fn setup(t: &Suite, calls_event: &str) -> (String, String, String) {
    let meter = t.meter(calls_event).await;
    let price = t.per_unit_price(&meter, "2.5").await;
    let customer = t.customer("Acme").await;
    let sub = t.subscribe(&customer, &[&price]).await;
    let events: Vec<(String, &str)> = (0..10)
        .map(|i| (format!("{calls_event}-{customer}-{i}"), "100"))
        .collect();
    let events: Vec<(&str, &str)> = events.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    t.usage(calls_event, &customer, t0() + TimeDelta::days(1), &events)
        .await;
    (customer, sub.id, price)
}

fn month_end() -> chrono::DateTime<chrono::Utc> {
    t0().checked_add_months(Months::new(1)).unwrap()
}

async fn transactions(t: &Suite, customer: &str) -> Vec<ledger::CreditBalanceTransaction> {
    t.ledger
        .clone()
        .list_credit_balance_transactions(authed(
            KEY_A,
            ledger::ListCreditBalanceTransactionsRequest {
                customer: customer.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .credit_balance_transactions
}

/// The CREDITS_APPLIED debits' amounts.
async fn applied_debits(t: &Suite, customer: &str) -> Vec<i64> {
    transactions(t, customer)
        .await
        .iter()
        .filter_map(|x| x.debit.as_ref())
        .filter(|d| d.r#type() == ledger::DebitType::CreditsApplied)
        .map(|d| value_of(&d.amount))
        .collect()
}

async fn finalize_applies_credits_in_order_and_void_gives_them_back(t: &Suite) {
    let (customer, sub, price) = setup(t, "api_calls").await;
    let mut promo = grant_request(&customer, "promo", 500);
    promo.category = ledger::CreditGrantCategory::Promotional.into();
    promo.priority = Some(10);
    promo.expires_at = ts(t0() + TimeDelta::days(60));
    let promo = t.grant(promo).await;
    let paid = t.grant(grant_request(&customer, "paid", 1_000)).await;

    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;
    assert_eq!(draft.status(), pb::InvoiceStatus::Draft);
    assert_eq!(draft.period_start, ts(t0()));
    assert_eq!(draft.period_end, ts(month_end()));
    assert_eq!(draft.lines.len(), 1);
    let line = &draft.lines[0];
    assert_eq!(line.price, price);
    assert_eq!(line.quantity, "1000");
    assert_eq!(line.unit_amount_decimal, "2.5");
    assert_eq!(value_of(&line.amount), 2_500);

    let open = t.finalize(&draft.id).await.unwrap();
    assert_eq!(open.status(), pb::InvoiceStatus::Open);
    let line = &open.lines[0];
    assert_eq!(value_of(&line.credits_applied), 1_500);
    assert_eq!(value_of(&line.amount_due), 1_000);
    let order: Vec<(&str, i64)> = line
        .credit_applications
        .iter()
        .map(|a| (a.credit_grant.as_str(), value_of(&a.amount)))
        .collect();
    assert_eq!(
        order,
        vec![(promo.id.as_str(), 500), (paid.id.as_str(), 1_000)]
    );
    assert!(
        line.credit_applications
            .iter()
            .all(|a| a.credit_balance_transaction.starts_with("cbtxn_"))
    );
    let total = &open.totals[0];
    assert_eq!(value_of(&total.subtotal), 2_500);
    assert_eq!(value_of(&total.total_credits_applied), 1_500);
    assert_eq!(value_of(&total.amount_due), 1_000);
    assert!(open.finalized_at.is_some());

    assert_eq!(t.available_usd(&customer).await, 0);
    let applied = applied_debits(t, &customer).await;
    assert_eq!(applied.len(), 2, "one debit per grant");
    assert_eq!(applied.iter().map(|v| v.abs()).sum::<i64>(), 1_500);

    // Finalizing again returns the same invoice; nothing more is applied.
    let again = t.finalize(&draft.id).await.unwrap();
    assert_eq!(again, open);

    let void = t.void(&draft.id).await.unwrap();
    assert_eq!(void.status(), pb::InvoiceStatus::Void);
    assert!(void.voided_at.is_some());
    assert_eq!(t.available_usd(&customer).await, 1_500, "credits are back");
    // Voiding twice is a no-op; finalizing a void invoice is refused.
    let twice = t.void(&draft.id).await.unwrap();
    assert_eq!(twice.status(), pb::InvoiceStatus::Void);
    assert_eq!(t.available_usd(&customer).await, 1_500);
    let refused = t.finalize(&draft.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
}

async fn period_close_and_auto_finalize_follow_the_clock(t: &Suite) {
    let (customer, sub, _) = setup(t, "calls").await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;

    // Nothing ends before the period does.
    let report = t.advance_to(month_end() - TimeDelta::seconds(1)).await;
    assert_eq!(report.subscriptions_closed, 0);
    let early = t
        .invoicing
        .clone()
        .create_invoice(authed(
            KEY_A,
            pb::CreateInvoiceRequest {
                subscription: sub.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);

    let report = t.advance_to(month_end()).await;
    assert_eq!(report.subscriptions_closed, 1);
    assert_eq!(
        report.drafts_finalized, 0,
        "the grace period has not passed"
    );
    let subscription = t
        .invoicing
        .clone()
        .get_subscription(authed(
            KEY_A,
            pb::GetSubscriptionRequest { id: sub.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(subscription.current_period_start, ts(month_end()));
    let draft = t.invoice(&subscription.latest_invoice).await;
    assert_eq!(draft.status(), pb::InvoiceStatus::Draft);
    assert_eq!(
        draft.auto_finalize_at,
        ts(month_end() + TimeDelta::hours(1))
    );

    // A late event inside the grace period is billed: lines are re-priced on finalize.
    t.usage(
        "calls",
        &customer,
        t0() + TimeDelta::days(20),
        &[("late-1", "200")],
    )
    .await;
    let report = t.advance_to(month_end() + TimeDelta::hours(1)).await;
    assert_eq!(report.drafts_finalized, 1);
    let open = t.invoice(&draft.id).await;
    assert_eq!(open.status(), pb::InvoiceStatus::Open);
    assert_eq!(open.lines[0].quantity, "1200");
    assert_eq!(value_of(&open.lines[0].amount), 3_000);
    assert_eq!(value_of(&open.totals[0].amount_due), 2_000);

    // The next period closes a month later into a second invoice.
    let report = t
        .advance_to(month_end().checked_add_months(Months::new(1)).unwrap())
        .await;
    assert_eq!(report.subscriptions_closed, 1);
    let invoices = t.invoices_of(&sub).await;
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[0].period_start, ts(month_end()));
    assert_eq!(value_of(&invoices[0].lines[0].amount), 0);
}

/// Replicas split period closes (issue 19): a subscription another
/// replica has leased is left to it, and two workers ticking at once close
/// each ended period once.
async fn replicas_split_period_closes(t: &Suite) {
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "2.5").await;
    let mut subs = Vec::new();
    for i in 0..6 {
        let customer = t.customer(&format!("Split {i}")).await;
        subs.push(t.subscribe(&customer, &[&price]).await.id);
    }
    let b = Leases::new(t.ops.store().db().clone(), "b");
    let held: Vec<String> = subs[..2].iter().map(|id| item_key("acct_a", id)).collect();
    assert_eq!(b.take("close_periods", &held).await.unwrap(), held);
    let report = t.advance_to(month_end()).await;
    assert_eq!(report.subscriptions_closed, 4);
    assert!(report.leased_elsewhere >= 2);
    b.give_back("close_periods", &held).await;

    let c = Worker::new(t.ops.clone().with_instance("c"));
    let (first, second) = tokio::join!(t.worker.tick(), c.tick());
    assert_eq!(first.subscriptions_closed + second.subscriptions_closed, 2);
    for sub in &subs {
        let invoices = t.invoices_of(sub).await;
        assert_eq!(invoices.len(), 1, "one draft per ended period");
    }
}

async fn sixteen_concurrent_finalizes_apply_once(t: &Suite) {
    let (customer, sub, _) = setup(t, "calls").await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;
    let results = futures_util::future::join_all((0..16).map(|_| t.finalize(&draft.id))).await;
    let invoices: Vec<pb::Invoice> = results
        .into_iter()
        .map(|r| r.expect("every finalize succeeds"))
        .collect();
    assert!(
        invoices.iter().all(|i| i == &invoices[0]),
        "all callers see the same invoice"
    );
    assert_eq!(
        value_of(&invoices[0].totals[0].total_credits_applied),
        1_000
    );
    assert_eq!(t.available_usd(&customer).await, 0);
    let debits = applied_debits(t, &customer).await.len();
    assert_eq!(debits, 1, "credits applied exactly once");
}

async fn concurrent_invoices_of_one_customer_never_overdraw(t: &Suite) {
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "1").await;
    let customer = t.customer("Acme").await;
    let mut subs = Vec::new();
    for _ in 0..4 {
        subs.push(t.subscribe(&customer, &[&price]).await.id);
    }
    t.usage(
        "calls",
        &customer,
        t0() + TimeDelta::days(1),
        &[("a", "700")],
    )
    .await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    t.advance_to(month_end()).await;
    let mut drafts = Vec::new();
    for sub in &subs {
        drafts.push(t.create_invoice(sub).await.id);
    }
    let results = futures_util::future::join_all(drafts.iter().map(|id| t.finalize(id))).await;
    let applied: i64 = results
        .into_iter()
        .map(|r| value_of(&r.expect("finalized").totals[0].total_credits_applied))
        .sum();
    assert_eq!(
        applied, 1_000,
        "every invoice bills 700; together they get exactly the 1,000 granted"
    );
    assert_eq!(t.available_usd(&customer).await, 0);
}

async fn ledger_down_leaves_finalizing_then_completes_once(t: &Suite) {
    let (customer, sub, _) = setup(t, "calls").await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;

    t.stop_ledger().await;
    let error = t.finalize(&draft.id).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains("completes by itself"),
        "{}",
        error.message()
    );
    // The invoice says why it is stuck and when the worker tries again.
    let failed_at = month_end();
    let pending = t.invoice(&draft.id).await;
    assert_eq!(pending.status(), pb::InvoiceStatus::Finalizing);
    let step = pending
        .last_finalization_error
        .clone()
        .expect("error shown");
    assert_eq!((step.code.as_str(), step.attempts), ("UNAVAILABLE", 1));
    assert_eq!(
        step.failed_at,
        Some(billing_server::time::to_proto(failed_at))
    );
    let retry_at = failed_at + TimeDelta::seconds(10);
    assert_eq!(
        step.next_attempt_at,
        Some(billing_server::time::to_proto(retry_at))
    );
    // Not before its retry time.
    let report = t.worker.tick().await;
    assert_eq!(
        (report.sagas_resumed, report.failures),
        (0, 0),
        "{report:?}"
    );
    // At it, the worker tries and fails again; the delay doubles.
    let report = t.advance_to(retry_at).await;
    assert_eq!(report.failures, 1, "{report:?}");
    let step = t.invoice(&draft.id).await.last_finalization_error.unwrap();
    assert_eq!(step.attempts, 2);
    let retry_at = retry_at + TimeDelta::seconds(20);
    assert_eq!(
        step.next_attempt_at,
        Some(billing_server::time::to_proto(retry_at))
    );

    t.restart_ledger().await;
    let report = t.advance_to(retry_at).await;
    assert_eq!(report.sagas_resumed, 1, "{report:?}");
    let open = t.invoice(&draft.id).await;
    assert_eq!(open.status(), pb::InvoiceStatus::Open);
    assert_eq!(open.last_finalization_error, None, "cleared once finalized");
    assert_eq!(value_of(&open.totals[0].total_credits_applied), 1_000);
    // A late retry by the client changes nothing.
    assert_eq!(t.finalize(&draft.id).await.unwrap(), open);
    assert_eq!(t.available_usd(&customer).await, 0);
    let debits = applied_debits(t, &customer).await.len();
    assert_eq!(debits, 1);
}

/// A claim held by a replica that died (issue 19): the worker of another
/// replica leaves the invoice alone while the claim's lease runs, takes it
/// over once it has run out; a restarted process of the dead one's name
/// gives its claims back at once.
async fn a_dead_replicas_claims_run_out_or_come_back_with_it(t: &Suite) {
    let (customer, sub, price) = setup(t, "calls").await;
    let second_sub = t.subscribe(&customer, &[&price]).await.id;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    // Both periods have ended (the second began a little later).
    t.advance_to(month_end() + TimeDelta::days(2)).await;
    let first = t.create_invoice(&sub).await;
    let second = t.create_invoice(&second_sub).await;
    t.stop_ledger().await;
    for id in [&first.id, &second.id] {
        t.finalize(id).await.unwrap_err();
    }
    t.restart_ledger().await;
    // Replica "dead" claimed both (system clock, as claims are), then died:
    // the first claim's lease ran out a minute ago, the second's runs.
    let store = t.ops.store();
    let now = billing_server::time::to_micros(billing_server::clock::Clock::system().now());
    let minute = 60_000_000;
    for (id, until_us) in [(&first.id, now - minute), (&second.id, now + minute)] {
        let terms = invoicing::ClaimTerms {
            instance: "dead",
            now_us: until_us - 2 * minute,
            until_us,
        };
        assert!(store.claim_invoice("acct_a", id, terms).await.unwrap());
    }
    let report = t.advance_to(month_end() + TimeDelta::days(3)).await;
    assert_eq!(report.sagas_resumed, 1, "{report:?}");
    assert_eq!(t.invoice(&first.id).await.status(), pb::InvoiceStatus::Open);
    assert_eq!(
        t.invoice(&second.id).await.status(),
        pb::InvoiceStatus::Finalizing,
        "its claim still runs"
    );
    // "dead" comes back under its name: its claims are free at once.
    assert_eq!(store.release_instance_claims("dead", now).await.unwrap(), 1);
    let report = t.worker.tick().await;
    assert_eq!(report.sagas_resumed, 1, "{report:?}");
    assert_eq!(
        t.invoice(&second.id).await.status(),
        pb::InvoiceStatus::Open
    );
}

async fn void_with_ledger_down_shows_the_error_and_retries_on_request(t: &Suite) {
    let (customer, sub, _) = setup(t, "calls").await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;
    t.finalize(&draft.id).await.unwrap();

    t.stop_ledger().await;
    let error = t.void(&draft.id).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let voiding = t.invoice(&draft.id).await;
    assert_eq!(voiding.status(), pb::InvoiceStatus::Voiding);
    assert_eq!(voiding.last_finalization_error, None);
    let step = voiding.last_void_error.expect("error shown");
    assert_eq!((step.code.as_str(), step.attempts), ("UNAVAILABLE", 1));

    // VoidInvoice retries at once, whatever the worker's backoff says.
    t.restart_ledger().await;
    let done = t.void(&draft.id).await.unwrap();
    assert_eq!(done.status(), pb::InvoiceStatus::Void);
    assert_eq!(done.last_void_error, None, "cleared once void");
    assert_eq!(t.available_usd(&customer).await, 1_000, "credits are back");
}

async fn preview_writes_nothing(t: &Suite) {
    let (customer, sub, _) = setup(t, "calls").await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    let preview = t.preview(&sub).await.unwrap();
    assert!(preview.id.is_empty());
    assert_eq!(value_of(&preview.totals[0].subtotal), 2_500);
    assert_eq!(value_of(&preview.totals[0].total_credits_applied), 1_000);
    assert_eq!(value_of(&preview.totals[0].amount_due), 1_500);
    assert!(
        preview.lines[0].credit_applications[0]
            .credit_balance_transaction
            .is_empty()
    );
    assert_eq!(
        t.available_usd(&customer).await,
        1_000,
        "the ledger wrote nothing"
    );
    let invoices = t
        .invoicing
        .clone()
        .list_invoices(authed(KEY_A, pb::ListInvoicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert!(invoices.is_empty(), "invoicing wrote nothing");
}

async fn pricing_unit_lines_show_credits_in_the_unit(t: &Suite) {
    let unit = t.pricing_unit("tokens", 2, None).await;
    let meter = t.meter("tokens_used").await;
    // 0.5 hundredths of a token per event value: 1,001 × 0.5 = 500.5 → 501 (half away from zero).
    let price = t
        .create_price(pb::CreatePriceRequest {
            pricing_unit: unit.id.clone(),
            meter: meter.clone(),
            billing_scheme: pb::BillingScheme::PerUnit.into(),
            unit_amount_decimal: "0.5".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(price.pricing_unit, unit.id);
    let customer = t.customer("Acme").await;
    let sub = t.subscribe(&customer, &[&price.id]).await;
    assert!(sub.currency.is_empty());
    t.usage(
        "tokens_used",
        &customer,
        t0() + TimeDelta::days(3),
        &[("t1", "1001")],
    )
    .await;
    let mut grant = grant_request(&customer, "tokens", 0);
    grant.amount = Some(billing_proto::common::v1::Amount {
        kind: Some(billing_proto::common::v1::amount::Kind::CustomPricingUnit(
            billing_proto::common::v1::CustomPricingUnitAmount {
                id: unit.id.clone(),
                value: "3.5".into(),
            },
        )),
    });
    t.grant(grant).await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub.id).await;
    assert_eq!(unit_value_of(&draft.lines[0].amount), "5.01");
    let open = t.finalize(&draft.id).await.unwrap();
    assert_eq!(unit_value_of(&open.lines[0].credits_applied), "3.50");
    assert_eq!(unit_value_of(&open.lines[0].amount_due), "1.51");
    assert_eq!(unit_value_of(&open.totals[0].amount_due), "1.51");
}

async fn cancel_now_bills_the_partial_period(t: &Suite) {
    let (_customer, sub, _) = setup(t, "calls").await;
    t.advance_to(t0() + TimeDelta::days(10)).await;
    let response = t
        .invoicing
        .clone()
        .cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: sub.clone(),
                at_period_end: false,
                request_id: "cancel-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let canceled = response.subscription.unwrap();
    assert_eq!(canceled.status(), pb::SubscriptionStatus::Canceled);
    assert_eq!(canceled.ended_at, ts(t0() + TimeDelta::days(10)));
    let invoice = response.final_invoice.unwrap();
    assert_eq!(
        invoice.billing_reason(),
        pb::BillingReason::SubscriptionCancel
    );
    assert_eq!(invoice.period_end, ts(t0() + TimeDelta::days(10)));
    assert_eq!(value_of(&invoice.lines[0].amount), 2_500);
    // Nothing more is invoiced after the end.
    let report = t.advance_to(month_end()).await;
    assert_eq!(report.subscriptions_closed, 0);
    // The replay returns the original response.
    let replay = t
        .invoicing
        .clone()
        .cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: sub,
                at_period_end: false,
                request_id: "cancel-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.final_invoice.unwrap().id, invoice.id);
}

async fn cancel_at_period_end_ends_with_the_period(t: &Suite) {
    let (_customer, sub, _) = setup(t, "calls").await;
    let response = t
        .invoicing
        .clone()
        .cancel_subscription(authed(
            KEY_A,
            pb::CancelSubscriptionRequest {
                id: sub.clone(),
                at_period_end: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let sub_after = response.subscription.unwrap();
    assert!(sub_after.cancel_at_period_end);
    assert_eq!(sub_after.status(), pb::SubscriptionStatus::Active);
    assert!(response.final_invoice.is_none());
    t.advance_to(month_end()).await;
    let ended = t
        .invoicing
        .clone()
        .get_subscription(authed(KEY_A, pb::GetSubscriptionRequest { id: sub }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(ended.status(), pb::SubscriptionStatus::Canceled);
    assert_eq!(ended.ended_at, ts(month_end()));
    let last = t.invoice(&ended.latest_invoice).await;
    assert_eq!(last.billing_reason(), pb::BillingReason::SubscriptionCycle);
    assert_eq!(value_of(&last.lines[0].amount), 2_500);
}

async fn zero_usage_is_paid_without_credits(t: &Suite) {
    let meter = t.meter("calls").await;
    let price = t.per_unit_price(&meter, "3").await;
    let customer = t.customer("Idle").await;
    let sub = t.subscribe(&customer, &[&price]).await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub.id).await;
    let paid = t.finalize(&draft.id).await.unwrap();
    assert_eq!(paid.status(), pb::InvoiceStatus::Paid);
    assert_eq!(value_of(&paid.totals[0].subtotal), 0);
    assert_eq!(t.available_usd(&customer).await, 1_000);
    // A paid invoice cannot be voided.
    let refused = t.void(&draft.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}
