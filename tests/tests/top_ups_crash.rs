//! An auto top-up buys once per crossing across kill -9 of invoicing:
//! aborted after the purchase was made and before its feed cursor moved
//! past the ledger's event, the restarted process reads the event again and
//! buys nothing more (the purchase's request id is the event id). Real
//! processes, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_server::time::to_proto;
use billing_testkit::Backend;

async fn purchases(c: &mut Clients, customer: &str) -> Vec<inv::CreditPurchase> {
    c.invoicing
        .list_credit_purchases(authed(inv::ListCreditPurchasesRequest {
            customer: customer.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_purchases
}

async fn check(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_top_up_purchase"),
    );
    let customer = customer_named(&mut c, "Topped").await;
    metered_grant(&mut c, &customer, 3_000).await;
    c.invoicing
        .set_auto_top_up(authed(inv::SetAutoTopUpRequest {
            customer: customer.clone(),
            threshold: usd(2_000),
            amount: usd(5_000),
            currency: "usd".into(),
            unit_amount_decimal: "100".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // ApplyCredits as invoicing would: the internal key acting for the account.
    let mut apply = billing_testkit::authed(
        INTERNAL_KEY,
        ledger::ApplyCreditsRequest {
            pool: Vec::new(),
            customer: customer.clone(),
            invoice: "in_usage".into(),
            period_end: Some(to_proto(chrono::Utc::now())),
            lines: vec![ledger::InvoiceLine {
                invoice_line_item: "il_1".into(),
                price: "price_usage".into(),
                amount: usd(2_500),
            }],
            preview: false,
        },
    );
    apply
        .metadata_mut()
        .insert("x-billing-account", "acct_e2e".parse().unwrap());
    c.ledger.apply_credits(apply).await.unwrap();
    // Ticks until the crossing is read: the process buys, then dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tick(&mut c).await.is_ok() {
        assert!(Instant::now() < deadline, "the crossing was never read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crashing.wait_exit(Duration::from_secs(10));

    let (_restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    tick(&mut c).await.unwrap();
    tick(&mut c).await.unwrap();
    let bought = purchases(&mut c, &customer).await;
    assert_eq!(bought.len(), 1, "one purchase for one crossing: {bought:?}");
    assert_eq!(
        bought[0].status(),
        inv::CreditPurchaseStatus::PendingPayment
    );
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_buys_once_per_crossing_across_kill_9_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_buys_once_per_crossing_across_kill_9_on_postgres() {
    check(Backend::Postgres).await;
}
