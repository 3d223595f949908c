//! The credit purchase saga across kill -9 of invoicing, with real
//! processes: aborted after the ledger made the grant (before invoicing
//! recorded it), and after the ledger activated it on MarkInvoicePaid
//! (before invoicing recorded that). Each time the restarted process
//! finishes the purchase with the same grant: one grant, activated once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::Backend;

async fn grants(c: &mut Clients, customer: &str) -> Vec<ledger::CreditGrant> {
    c.ledger
        .list_credit_grants(authed(ledger::ListCreditGrantsRequest {
            customer: customer.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grants
}

async fn purchase(c: &mut Clients, id: &str) -> inv::CreditPurchase {
    c.invoicing
        .get_credit_purchase(authed(inv::GetCreditPurchaseRequest { id: id.into() }))
        .await
        .unwrap()
        .into_inner()
        .credit_purchase
        .unwrap()
}

async fn check(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };

    // 1. Killed after the ledger made the grant.
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_purchase_grant"),
    );
    let customer = customer_named(&mut c, "Buyer").await;
    let request = inv::CreateCreditPurchaseRequest {
        request_id: "buy-credits".into(),
        customer: customer.clone(),
        credits: usd(10_000),
        currency: "usd".into(),
        unit_amount_decimal: "95".into(),
        ..Default::default()
    };
    assert!(
        c.invoicing
            .create_credit_purchase(authed(request.clone()))
            .await
            .is_err(),
        "died mid-call"
    );
    crashing.wait_exit(Duration::from_secs(10));
    assert_eq!(
        grants(&mut c, &customer).await.len(),
        1,
        "the ledger granted"
    );

    // The client retries with its request id; the restarted process
    // finishes the saga with the same grant.
    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let bought = c
        .invoicing
        .create_credit_purchase(authed(request.clone()))
        .await
        .unwrap()
        .into_inner()
        .credit_purchase
        .unwrap();
    tick(&mut c).await.unwrap();
    let bought = purchase(&mut c, &bought.id).await;
    assert_eq!(bought.status(), inv::CreditPurchaseStatus::PendingPayment);
    let all = grants(&mut c, &customer).await;
    assert_eq!(all.len(), 1, "one grant: {all:?}");
    assert_eq!(all[0].id, bought.credit_grant);
    assert_eq!(all[0].state(), ledger::CreditGrantState::PendingPayment);
    restarted.kill();

    // 2. Killed after the ledger activated the grant on MarkInvoicePaid.
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_purchase_activation"),
    );
    assert!(
        c.invoicing
            .mark_invoice_paid(authed(inv::MarkInvoicePaidRequest {
                id: bought.invoice.clone(),
                ..Default::default()
            }))
            .await
            .is_err(),
        "died mid-call"
    );
    crashing.wait_exit(Duration::from_secs(10));
    let (_restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    // The invoice was paid before the abort; its purchase is finished by
    // the restarted process's worker.
    tick(&mut c).await.unwrap();
    let done = purchase(&mut c, &bought.id).await;
    assert_eq!(done.status(), inv::CreditPurchaseStatus::Active);
    let all = grants(&mut c, &customer).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state(), ledger::CreditGrantState::Granted);
    assert_eq!(value_of(&all[0].available), 10_000);
    // One activation event: the purchase became active once.
    let transactions = c
        .ledger
        .list_credit_balance_transactions(authed(ledger::ListCreditBalanceTransactionsRequest {
            customer: customer.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_balance_transactions;
    assert_eq!(transactions.len(), 1, "granted once: {transactions:?}");
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_completes_once_across_kill_9_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_completes_once_across_kill_9_on_postgres() {
    check(Backend::Postgres).await;
}
