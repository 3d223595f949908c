//! A balance alert fires once per crossing even when the ledger process is
//! killed -9 in the middle of the applications that cross it: the alert
//! state moves in the transaction of the change, so a change that was not
//! committed fired nothing, and the retried one (ApplyCredits is idempotent
//! on the invoice) fires it once. Real processes, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use billing_e2e::scenario::usd;
use billing_e2e::*;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::Backend;

const CUSTOMER: &str = "cus_alert_crash";

/// ApplyCredits needs the `apply_credits` scope: the internal key, acting
/// for the test account.
fn as_invoicing<T>(message: T) -> tonic::Request<T> {
    let mut request = billing_testkit::authed(INTERNAL_KEY, message);
    request.metadata_mut().insert(
        billing_server::auth::ACCOUNT_METADATA_KEY,
        "acct_e2e".parse().unwrap(),
    );
    request
}

/// The same request every time it is sent (a retry must match).
fn apply(n: usize, period_end: chrono::DateTime<chrono::Utc>) -> ledger::ApplyCreditsRequest {
    ledger::ApplyCreditsRequest {
        pool: Vec::new(),
        customer: CUSTOMER.into(),
        invoice: format!("in_crash_{n}"),
        period_end: Some(billing_server::time::to_proto(period_end)),
        lines: vec![ledger::InvoiceLine {
            invoice_line_item: "il_1".into(),
            price: "price_a".into(),
            amount: usd(25),
        }],
        preview: false,
    }
}

async fn check(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    let first = ledger(&dbs.ledger, "127.0.0.1:0");
    let addr = first.addr;
    let mut client = LedgerServiceClient::new(first.channel());
    client
        .create_balance_alert(authed(ledger::CreateBalanceAlertRequest {
            customer: CUSTOMER.into(),
            threshold: usd(500),
            ..Default::default()
        }))
        .await
        .unwrap();
    client
        .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
            customer: CUSTOMER.into(),
            amount: usd(1_000),
            applicability_config: Some(ledger::ApplicabilityConfig {
                scope: Some(ledger::ApplicabilityScope {
                    price_type: ledger::PriceType::Metered.into(),
                    prices: vec![],
                }),
            }),
            ..Default::default()
        }))
        .await
        .unwrap();

    // 48 applications of 25 against 1,000 (the balance crosses 500 and
    // reaches 0) from 4 writers, killed with the crossing of 500 (the 20th)
    // in flight.
    let period_end = chrono::Utc::now();
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (mut client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                for n in (w..48).step_by(4) {
                    match client
                        .apply_credits(as_invoicing(apply(n, period_end)))
                        .await
                    {
                        Ok(_) => done.fetch_add(1, Ordering::SeqCst),
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) < 18 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = done.load(Ordering::SeqCst);
    eprintln!("{acknowledged} of 48 applications acknowledged before the kill");

    // Restart on the same database and port; retry every application.
    let second = ledger(&dbs.ledger, &addr.to_string());
    let mut client = LedgerServiceClient::new(second.channel());
    for n in 0..48 {
        client
            .apply_credits(as_invoicing(apply(n, period_end)))
            .await
            .unwrap();
    }
    let events = events_of(
        second.channel(),
        &[
            "customer.credit_balance_dropped",
            "customer.credit_balance_depleted",
            "customer.credit_balance_recovered",
        ],
    )
    .await;
    let mut types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "customer.credit_balance_depleted",
            "customer.credit_balance_dropped"
        ],
        "one event per crossing"
    );
    let audit = client
        .audit_ledger(authed(ledger::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
    drop(second);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_across_a_kill_9_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_across_a_kill_9_on_postgres() {
    check(Backend::Postgres).await;
}
