//! Real time across kill -9 of invoicing (real processes, both backends):
//! - a usage threshold fires once per period: aborted right after the
//!   crossing and its event were committed, the restarted process sees the
//!   same crossing again and records nothing more;
//! - a CheckAccess reservation holds once: aborted after the ledger made
//!   the hold and before the answer, the retried check (same request_id)
//!   returns that hold, and the ledger has no second one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::events::v1 as ev;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_server::time::to_proto;
use billing_testkit::Backend;

/// A meter with a 1¢ price, and `customer` subscribed to it with `controls`.
async fn subscribed(
    c: &mut Clients,
    tag: &str,
    thresholds: Vec<inv::UsageThreshold>,
) -> (String, String, String) {
    let customer = customer_named(c, tag).await;
    let (meter_id, price) = metered_price(c, &format!("{tag}_calls"), "1").await;
    let thresholds = thresholds
        .into_iter()
        .map(|t| inv::UsageThreshold {
            meter: meter_id.clone(),
            ..t
        })
        .collect();
    c.invoicing
        .create_subscription(authed(inv::CreateSubscriptionRequest {
            customer: customer.clone(),
            items: vec![inv::SubscriptionItemInput { price }],
            billing_interval: inv::BillingInterval::Month.into(),
            overage: Some(inv::OveragePolicy {
                mode: inv::OverageMode::Block.into(),
                limit: None,
            }),
            usage_thresholds: thresholds,
            ..Default::default()
        }))
        .await
        .unwrap();
    (customer, meter_id, format!("{tag}_calls"))
}

async fn crossings(c: &Clients, invoicing: &Service) -> Vec<ev::Event> {
    let _ = c;
    events_of(
        invoicing.channel(),
        &["subscription.usage_exceeded_threshold"],
    )
    .await
}

async fn threshold(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_threshold_crossing"),
    );
    let over = inv::UsageThreshold {
        meter: String::new(),
        quantity: "100".into(),
    };
    let (customer, _, event_name) = subscribed(&mut c, "watched", vec![over]).await;
    let mut payload = BTreeMap::new();
    payload.insert("customer".to_owned(), customer.clone());
    payload.insert("value".to_owned(), "150".to_owned());
    c.meter
        .ingest_events(authed(meter::IngestEventsRequest {
            events: vec![meter::MeterEvent {
                event_name,
                identifier: "big".into(),
                timestamp: Some(to_proto(chrono::Utc::now())),
                payload,
            }],
        }))
        .await
        .unwrap();
    // The tick records the crossing, then the process dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tick(&mut c).await.is_ok() {
        assert!(Instant::now() < deadline, "the crossing was never seen");
    }
    crashing.wait_exit(Duration::from_secs(10));

    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    tick(&mut c).await.unwrap();
    tick(&mut c).await.unwrap();
    let fired = crossings(&c, &restarted).await;
    assert_eq!(
        fired.len(),
        1,
        "one event per threshold and period: {fired:?}"
    );
    dbs.drop_all().await;
}

async fn reservation(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_access_hold"),
    );
    let (customer, meter_id, _) = subscribed(&mut c, "reserved", Vec::new()).await;
    metered_grant(&mut c, &customer, 1_000).await;
    let check = inv::CheckAccessRequest {
        request_id: "job-42".into(),
        customer: customer.clone(),
        meter: meter_id,
        reserve: usd(600),
        hold_timeout_seconds: 600,
        ..Default::default()
    };
    let died = c.invoicing.check_access(authed(check.clone())).await;
    assert!(died.is_err(), "the process died before answering: {died:?}");
    crashing.wait_exit(Duration::from_secs(10));

    let (_restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let retried = c
        .invoicing
        .check_access(authed(check))
        .await
        .unwrap()
        .into_inner();
    assert!(retried.allowed, "{retried:?}");
    let holds = c
        .ledger
        .list_credit_holds(authed(ledger::ListCreditHoldsRequest {
            customer: customer.clone(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_holds;
    assert_eq!(holds.len(), 1, "one hold for one request: {holds:?}");
    assert_eq!(holds[0].id, retried.hold);
    assert_eq!(value_of(&retried.balance.unwrap().credits_reserved), 600);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_threshold_fires_once_across_kill_9_on_sqlite() {
    threshold(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_threshold_fires_once_across_kill_9_on_postgres() {
    threshold(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_holds_once_across_kill_9_on_sqlite() {
    reservation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_holds_once_across_kill_9_on_postgres() {
    reservation(Backend::Postgres).await;
}
