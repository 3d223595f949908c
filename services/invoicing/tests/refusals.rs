//! What finalize and void do when the ledger refuses, hangs or rejects our
//! key (issue 12, items 1–3), on both backends.
//!
//! - A refusal (FAILED_PRECONDITION, PERMISSION_DENIED, …) is not retried:
//!   the invoice goes back to `draft` (or `open`) with the error and an
//!   event, and auto-finalize leaves it alone.
//! - A refused internal key is INTERNAL (UPSTREAM_KEY_REFUSED) for the
//!   caller, never the caller's own PERMISSION_DENIED.
//! - A hung ledger is recorded as DEADLINE_EXCEEDED, and recovering many
//!   invoices stuck on it is bounded and leaves period closing running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use billing_proto::invoicing::v1 as pb;
use billing_proto::ledger::v1 as ledger;
use billing_server::auth::ApiKeys;
use chrono::{Months, TimeDelta};
use common::*;
use invoicing::jobs::worker::{Worker, WorkerOptions};
use tonic::Code;
use tonic_types::StatusExt;

/// A customer with a subscription to one price, 10 × 100 units of usage
/// (2,500 cents at 2.5; a day into the suite, or now if later) and a
/// 1,000-cent grant. Returns (customer, sub).
async fn billed_customer(t: &Suite, event: &str) -> (String, String) {
    let meter = t.meter(event).await;
    let price = t.per_unit_price(&meter, "2.5").await;
    let customer = t.customer("Acme").await;
    let sub = t.subscribe(&customer, &[&price]).await.id;
    let events: Vec<(String, &str)> = (0..10).map(|i| (format!("{event}-{i}"), "100")).collect();
    let events: Vec<(&str, &str)> = events.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    let at = t.clock.now().max(t0() + TimeDelta::days(1));
    t.usage(event, &customer, at, &events).await;
    t.grant(grant_request(&customer, "paid", 1_000)).await;
    (customer, sub)
}

fn month_end() -> chrono::DateTime<chrono::Utc> {
    t0().checked_add_months(Months::new(1)).unwrap()
}

async fn event_types(t: &Suite, invoice: &str) -> Vec<String> {
    t.invoicing
        .clone()
        .list_invoice_events(authed(
            KEY_A,
            pb::ListInvoiceEventsRequest {
                invoice: invoice.into(),
                page_size: 50,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.r#type)
        .collect()
}

/// The suite's keys, with invoicing's internal key stripped of its scopes
/// (a misconfigured ledger): ApplyCredits and ReverseCredits refuse it.
fn keys_with_internal_key_unscoped() -> ApiKeys {
    let mut keys = keys();
    keys.insert_plain(INTERNAL, "_invoicing", &[]);
    keys
}

/// Applies credits under `invoice`'s id with other lines, directly in the
/// ledger: from then on the ledger refuses the finalize's ApplyCredits for
/// good (FAILED_PRECONDITION).
async fn use_invoice_id_elsewhere(t: &Suite, customer: &str, invoice: &str) {
    t.ledger
        .clone()
        .apply_credits(authed(
            KEY_A_APPLY,
            ledger::ApplyCreditsRequest {
                pool: Vec::new(),
                customer: customer.into(),
                invoice: invoice.into(),
                period_end: ts(month_end()),
                lines: vec![ledger::InvoiceLine {
                    invoice_line_item: "elsewhere".into(),
                    price: "price_elsewhere".into(),
                    amount: usd(1),
                }],
                preview: false,
            },
        ))
        .await
        .unwrap();
}

async fn a_refused_finalize_returns_the_invoice_to_draft(t: &Suite) {
    let (customer, sub) = billed_customer(t, "calls").await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;
    assert!(draft.auto_finalize_at.is_some());
    // Someone already applied credits under this invoice's id with other
    // lines: the ledger refuses the finalize's ApplyCredits for good.
    use_invoice_id_elsewhere(t, &customer, &draft.id).await;
    let before = t.available_usd(&customer).await;

    let error = t.finalize(&draft.id).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(error.message().starts_with("credit-ledger: "), "{error:?}");
    let back = t.invoice(&draft.id).await;
    assert_eq!(back.status(), pb::InvoiceStatus::Draft);
    assert_eq!(back.auto_finalize_at, None, "auto-finalize skips it");
    let step = back.last_finalization_error.clone().expect("error shown");
    assert_eq!(
        (step.code.as_str(), step.attempts),
        ("FAILED_PRECONDITION", 1)
    );
    assert_eq!(step.next_attempt_at, None, "not retried automatically");
    assert!(
        event_types(t, &draft.id)
            .await
            .contains(&"invoice.finalization_failed".to_owned())
    );
    assert_eq!(t.available_usd(&customer).await, before, "nothing applied");

    // Neither the recovery worker nor auto-finalize touches it, days later.
    let report = t.advance_to(month_end() + TimeDelta::days(3)).await;
    assert_eq!(
        (
            report.sagas_resumed,
            report.drafts_finalized,
            report.failures
        ),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(t.invoice(&draft.id).await, back);

    // Calling FinalizeInvoice again tries again (and is refused again).
    let again = t.finalize(&draft.id).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        t.invoice(&draft.id).await.status(),
        pb::InvoiceStatus::Draft
    );
}

async fn a_refused_key_is_internal_and_a_refused_void_returns_to_open(t: &Suite) {
    let (customer, sub) = billed_customer(t, "calls").await;
    t.advance_to(month_end()).await;
    let open = t.finalize(&t.create_invoice(&sub).await.id).await.unwrap();
    assert_eq!(open.status(), pb::InvoiceStatus::Open);
    assert_eq!(t.available_usd(&customer).await, 0);

    // The ledger now refuses invoicing's key for ReverseCredits.
    t.stop_ledger().await;
    t.restart_ledger_with(keys_with_internal_key_unscoped())
        .await;
    let error = t.void(&open.id).await.unwrap_err();
    assert_eq!(error.code(), Code::Internal, "{error:?}");
    assert_eq!(
        error
            .get_error_details()
            .error_info()
            .map(|i| i.reason.as_str()),
        Some("UPSTREAM_KEY_REFUSED"),
        "{error:?}"
    );
    let back = t.invoice(&open.id).await;
    assert_eq!(back.status(), pb::InvoiceStatus::Open);
    let step = back.last_void_error.clone().expect("error shown");
    assert_eq!(step.code, "PERMISSION_DENIED");
    assert_eq!(step.next_attempt_at, None);
    assert!(
        event_types(t, &open.id)
            .await
            .contains(&"invoice.void_failed".to_owned())
    );

    // A finalize refused the same way goes back to draft.
    let (_, other_sub) = billed_customer(t, "other_calls").await;
    t.advance_to(month_end() + TimeDelta::days(32)).await;
    let draft = t.create_invoice(&other_sub).await;
    let error = t.finalize(&draft.id).await.unwrap_err();
    assert_eq!(error.code(), Code::Internal, "{error:?}");
    assert_eq!(
        t.invoice(&draft.id).await.status(),
        pb::InvoiceStatus::Draft
    );

    // Once the keys are fixed, VoidInvoice completes and gives credits back.
    t.stop_ledger().await;
    t.restart_ledger().await;
    let void = t.void(&open.id).await.unwrap();
    assert_eq!(void.status(), pb::InvoiceStatus::Void);
    assert_eq!(void.last_void_error, None);
    assert_eq!(t.available_usd(&customer).await, 1_000);
}

async fn a_hung_ledger_is_a_deadline_and_recovery_is_bounded(t: &Suite) {
    // 20 invoices stuck finalizing while the ledger is down.
    let mut subs = Vec::new();
    for n in 0..20 {
        subs.push(billed_customer(t, &format!("calls_{n}")).await.1);
    }
    // (The usage moved the clock a day on: periods end a day later.)
    t.advance_to(month_end() + TimeDelta::days(1)).await;
    t.stop_ledger().await;
    let mut stuck = Vec::new();
    for sub in &subs {
        let draft = t.create_invoice(sub).await;
        let error = t.finalize(&draft.id).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
        stuck.push(draft.id);
    }

    // The ledger comes back hung: it accepts connections, never answers.
    let hung = t.hang_ledger().await;
    // A subscription whose first period ends later must still be closed.
    let late_customer = t.customer("Late").await;
    let late_price = t.per_unit_price(&t.meter("late").await, "1").await;
    let late = t.subscribe(&late_customer, &[&late_price]).await;

    let worker = Worker::with_options(
        t.ops.clone(),
        WorkerOptions {
            concurrency: 16,
            budget: Duration::from_millis(500),
        },
    );
    t.clock.set(month_end() + TimeDelta::days(40));
    let report = worker.tick().await;
    // One round of 16 at a time (each waits out the deadline), then the
    // budget is spent: the other 4 wait for the next tick.
    assert_eq!(
        (report.failures, report.sagas_deferred),
        (16, 4),
        "{report:?}"
    );
    assert!(report.subscriptions_closed >= 1, "{report:?}");
    let late = t
        .invoicing
        .clone()
        .get_subscription(authed(KEY_A, pb::GetSubscriptionRequest { id: late.id }))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert!(
        !late.latest_invoice.is_empty(),
        "period closing was not starved"
    );
    let mut deadlines = 0;
    for id in &stuck {
        let invoice = t.invoice(id).await;
        assert_eq!(invoice.status(), pb::InvoiceStatus::Finalizing);
        if invoice.last_finalization_error.unwrap().code == "DEADLINE_EXCEEDED" {
            deadlines += 1;
        }
    }
    assert_eq!(deadlines, 16, "a hung ledger is a deadline, not CANCELLED");
    hung.abort();
}

/// Eight concurrent finalizes the ledger refuses: every caller gets a
/// refusal (never INTERNAL, even one that reads the invoice after another
/// put it back to draft), nothing is applied, the invoice ends a draft.
async fn concurrent_refused_finalizes_are_all_refusals(t: &Suite) {
    let (customer, sub) = billed_customer(t, "calls").await;
    t.advance_to(month_end()).await;
    let draft = t.create_invoice(&sub).await;
    use_invoice_id_elsewhere(t, &customer, &draft.id).await;
    let before = t.available_usd(&customer).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = t.invoicing.clone();
            let id = draft.id.clone();
            tokio::spawn(async move {
                client
                    .finalize_invoice(authed(
                        KEY_A,
                        pb::FinalizeInvoiceRequest {
                            id,
                            ..Default::default()
                        },
                    ))
                    .await
            })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    }
    assert_eq!(
        t.invoice(&draft.id).await.status(),
        pb::InvoiceStatus::Draft
    );
    assert_eq!(t.available_usd(&customer).await, before, "nothing applied");
}

backends!(
    concurrent_refused_finalizes_are_all_refusals,
    a_refused_finalize_returns_the_invoice_to_draft,
    a_refused_key_is_internal_and_a_refused_void_returns_to_open,
    a_hung_ledger_is_a_deadline_and_recovery_is_bounded,
);
