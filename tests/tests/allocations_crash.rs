//! Recurring allocations are granted exactly once per period with real
//! processes: invoicing aborted between the ledger's grant and its own
//! record of it (at the subscription's start and at a period boundary), and
//! two invoicing processes working the same database at the same boundary.
//! Both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::Backend;
use chrono::{DateTime, TimeDelta, Utc};

/// Allocation grants per period start (seconds), from the ledger.
async fn allocation_grants(c: &mut Clients, customer: &str) -> BTreeMap<i64, usize> {
    grants_of(c, customer, ledger::CreditGrantSourceType::Allocation).await
}

/// Grants of one source type per period start (seconds).
async fn grants_of(
    c: &mut Clients,
    customer: &str,
    kind: ledger::CreditGrantSourceType,
) -> BTreeMap<i64, usize> {
    let grants = c
        .ledger
        .list_credit_grants(authed(ledger::ListCreditGrantsRequest {
            customer: customer.into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .credit_grants;
    let mut per_period = BTreeMap::new();
    for grant in grants {
        let Some(source) = grant.source else { continue };
        if source.r#type() == kind {
            *per_period
                .entry(source.period_start.unwrap().seconds)
                .or_insert(0) += 1;
        }
    }
    per_period
}

struct Setup {
    customer: String,
    subscription: String,
    start: DateTime<Utc>,
}

async fn subscribe(c: &mut Clients) -> Setup {
    let start = clock_now(c).await;
    let customer = customer_named(c, "Allocated").await;
    let (_, price) = metered_price(c, "calls", "1").await;
    // The first period's grant is made inside CreateSubscription: with the
    // failpoint set, the process dies there, after the subscription and its
    // allocation row committed. The request id makes the retry safe.
    let request = inv::CreateSubscriptionRequest {
        request_id: "allocated-subscription".into(),
        customer: customer.clone(),
        items: vec![inv::SubscriptionItemInput { price }],
        billing_interval: inv::BillingInterval::Month.into(),
        credit_allocations: vec![inv::CreditAllocation {
            amount: usd(1_000),
            rollover_max_amount: usd(300),
            ..Default::default()
        }],
        ..Default::default()
    };
    let created = c.invoicing.create_subscription(authed(request)).await;
    let subscription = match created {
        Ok(response) => response.into_inner().subscription.unwrap().id,
        Err(_) => String::new(),
    };
    Setup {
        customer,
        subscription,
        start,
    }
}

async fn check(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };

    // 1. At the subscription's start: killed between the grant and its record.
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_allocation_grant"),
    );
    let setup = subscribe(&mut c).await;
    assert!(setup.subscription.is_empty(), "the process died mid-call");
    crashing.wait_exit(Duration::from_secs(10));
    assert_eq!(
        allocation_grants(&mut c, &setup.customer).await.len(),
        1,
        "the ledger granted before the abort"
    );
    // Restarted: its start-up tick repeats the keyed grant and records it.
    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let retried = c
        .invoicing
        .list_subscriptions(authed(inv::ListSubscriptionsRequest {
            customer: setup.customer.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(retried.len(), 1, "one subscription");
    tick(&mut c).await.unwrap();
    let first_period = setup.start.timestamp();
    assert_eq!(
        allocation_grants(&mut c, &setup.customer).await,
        BTreeMap::from([(first_period, 1)]),
        "granted once for the first period"
    );
    restarted.kill();

    // 2. At the period boundary: the period closes, the next period's grant
    // is made, and the process dies before recording it.
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_allocation_grant"),
    );
    let boundary = setup.start + TimeDelta::days(32);
    assert!(
        try_advance(&mut c, boundary).await.is_err(),
        "died mid-tick"
    );
    crashing.wait_exit(Duration::from_secs(10));
    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    try_advance(&mut c, boundary).await.unwrap();
    let grants = allocation_grants(&mut c, &setup.customer).await;
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(
        grants.values().all(|n| *n == 1),
        "each period once: {grants:?}"
    );
    restarted.kill();

    // 3. Two processes reach the next boundary at the same time.
    let (one, mut c1) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let (two, mut c2) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    let boundary = setup.start + TimeDelta::days(63);
    let (a, b) = tokio::join!(
        try_advance(&mut c1, boundary),
        try_advance(&mut c2, boundary)
    );
    a.unwrap();
    b.unwrap();
    try_advance(&mut c1, boundary).await.unwrap();
    let grants = allocation_grants(&mut c1, &setup.customer).await;
    assert_eq!(grants.len(), 3, "{grants:?}");
    assert!(
        grants.values().all(|n| *n == 1),
        "each period once: {grants:?}"
    );
    let invoices = c1
        .invoicing
        .list_invoices(authed(inv::ListInvoicesRequest {
            subscription: retried[0].id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(invoices.len(), 2, "one invoice per closed period");
    drop((one, two));

    // 4. The first period was rolled over in the last tick (its invoice had
    // finalized by itself once its grace was over). The second period's
    // invoice finalizes in the next tick, and the tick after that rolls it
    // over and dies right after the ledger's rollover, before invoicing
    // records it.
    let rollover = ledger::CreditGrantSourceType::Rollover;
    assert_eq!(grants_of(&mut c1, &setup.customer, rollover).await.len(), 1);
    let (crashing, mut c) = start_invoicing(
        &dbs,
        &ledger_process,
        &meter_process,
        Some("after_rollover"),
    );
    let later = boundary + TimeDelta::hours(2);
    try_advance(&mut c, later).await.unwrap();
    let later = later + TimeDelta::hours(1);
    assert!(try_advance(&mut c, later).await.is_err(), "died mid-tick");
    crashing.wait_exit(Duration::from_secs(10));
    assert_eq!(grants_of(&mut c, &setup.customer, rollover).await.len(), 2);
    let (restarted, mut c) = start_invoicing(&dbs, &ledger_process, &meter_process, None);
    try_advance(&mut c, later + TimeDelta::hours(1))
        .await
        .unwrap();
    let rolled = grants_of(&mut c, &setup.customer, rollover).await;
    assert_eq!(rolled.len(), 2, "{rolled:?}");
    assert!(
        rolled.values().all(|n| *n == 1),
        "each period once: {rolled:?}"
    );
    drop(restarted);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_are_granted_once_per_period_across_kills_and_replicas_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_are_granted_once_per_period_across_kills_and_replicas_on_postgres() {
    check(Backend::Postgres).await;
}
