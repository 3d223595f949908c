//! Balance alerts (DESIGN.md §10): exactly one event per crossing under
//! concurrency, recovery on reversal, re-arming, time-driven changes found
//! by the sweeper, the state in the balance summary, and the CRUD RPCs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::ledger::v1 as pb;
use chrono::TimeDelta;
use common::*;
use credit_ledger::jobs::sweeper::{SweeperOptions, sweep_once};

backends!(
    concurrent_applications_cross_each_threshold_once,
    a_reversal_recovers_once_and_alerts_re_arm,
    time_driven_changes_fire_from_the_sweeper,
    alerts_are_created_listed_and_deleted_per_account,
    holds_move_the_balance_the_alerts_watch,
);

const ALERT_TYPES: [&str; 3] = [
    "customer.credit_balance_dropped",
    "customer.credit_balance_depleted",
    "customer.credit_balance_recovered",
];

async fn create_alert(t: &TestLedger, customer: &str, threshold: i64) -> pb::BalanceAlert {
    t.client()
        .create_balance_alert(authed(
            KEY_A,
            pb::CreateBalanceAlertRequest {
                customer: customer.into(),
                threshold: usd(threshold),
                title: format!("below {threshold}"),
                ..Default::default()
            },
        ))
        .await
        .expect("alert created")
        .into_inner()
        .balance_alert
        .unwrap()
}

/// Every alert event of account A so far, oldest first, as
/// `(type, customer, available, alert id)`.
async fn alert_events(t: &TestLedger) -> Vec<(String, String, i64, String)> {
    let mut feed = EventServiceClient::new(t.channel.clone());
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = feed
            .list_events(authed(
                KEY_A,
                ev::ListEventsRequest {
                    created_after: None,
                    created_before: None,
                    types: ALERT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
                    page_size: 100,
                    page_token: token,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for event in page.events {
            let Some(ev::event::Data::CreditBalanceAlert(data)) = event.data else {
                panic!("{} without its data", event.r#type);
            };
            out.push((
                event.r#type,
                data.customer,
                value_of(&data.available_balance),
                data.balance_alert.map(|a| a.id).unwrap_or_default(),
            ));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    out.reverse();
    out
}

async fn summary(t: &TestLedger, customer: &str) -> pb::BalanceAlertStatus {
    t.client()
        .get_credit_balance_summary(authed(
            KEY_A,
            pb::GetCreditBalanceSummaryRequest {
                pool: Vec::new(),
                customer: customer.into(),
                filter: None,
                unbilled_lines: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .balances
        .pop()
        .expect("one asset")
        .alerts
        .expect("the alert state")
}

fn types(events: &[(String, String, i64, String)]) -> Vec<&str> {
    events.iter().map(|e| e.0.as_str()).collect()
}

/// 48 concurrent ApplyCredits of 25 each against 1,000: the balance falls
/// through 500 once and reaches 0 once, whatever the interleaving.
async fn concurrent_applications_cross_each_threshold_once(t: &TestLedger) {
    let customer = "cus_hot";
    let alert = create_alert(t, customer, 500).await;
    // An alert of every customer fires for this one too.
    let everyone = create_alert(t, "", 100).await;
    create_grant(t, grant_request(customer, "g", 1_000)).await;
    let calls: Vec<_> = (0..48)
        .map(|i| {
            let mut client = t.client();
            let request = apply_request(
                t,
                customer,
                &format!("in_{i}"),
                vec![line("l1", "price_a", 25)],
            );
            tokio::spawn(async move { client.apply_credits(authed(KEY_A, request)).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("every call succeeds");
    }
    // Each crossing once. (The feed orders events by the position of their
    // transactions, which concurrent transactions take in an order that
    // need not be their commit order: compare as a set.)
    let mut events = alert_events(t).await;
    events.sort_by_key(|e| std::cmp::Reverse(e.2));
    assert_eq!(
        types(&events),
        [
            "customer.credit_balance_dropped",
            "customer.credit_balance_dropped",
            "customer.credit_balance_depleted",
        ],
        "{events:?}"
    );
    assert_eq!(events[0].3, alert.id);
    assert!(events[0].2 < 500 && events[0].2 >= 100);
    assert_eq!(events[1].3, everyone.id);
    assert!(events[1].2 < 100 && events[1].2 > 0);
    assert_eq!((events[2].2, events[2].3.as_str()), (0, ""));
    let state = summary(t, customer).await;
    assert!(state.depleted);
    assert_eq!(value_of(&state.evaluated_balance), 0);
    assert!(state.balance_alerts.iter().all(|a| a.triggered));
    assert_eq!(state.balance_alerts.len(), 2);
    assert_audit_clean(t).await;
}

/// Down through a threshold, back up by a reversal, down again: each
/// crossing fires once, in both directions.
async fn a_reversal_recovers_once_and_alerts_re_arm(t: &TestLedger) {
    let customer = "cus_cycle";
    let alert = create_alert(t, customer, 300).await;
    create_grant(t, grant_request(customer, "g", 1_000)).await;
    let apply = |invoice: &str, value: i64| {
        let request = apply_request(t, customer, invoice, vec![line("l1", "price_a", value)]);
        let mut client = t.client();
        async move { client.apply_credits(authed(KEY_A, request)).await.unwrap() }
    };
    apply("in_1", 800).await; // 1,000 → 200: dropped
    apply("in_2", 200).await; // 200 → 0: depleted
    reverse(t, "in_2").await.unwrap(); // 0 → 200: recovered (built in)
    reverse(t, "in_2").await.unwrap(); // a replay: nothing
    reverse(t, "in_1").await.unwrap(); // 200 → 1,000: recovered (the alert)
    apply("in_3", 900).await; // 1,000 → 100: dropped again
    let events = alert_events(t).await;
    let seen: Vec<(&str, i64, bool)> = events
        .iter()
        .map(|e| (e.0.as_str(), e.2, e.3 == alert.id))
        .collect();
    assert_eq!(
        seen,
        [
            ("customer.credit_balance_dropped", 200, true),
            ("customer.credit_balance_depleted", 0, false),
            ("customer.credit_balance_recovered", 200, false),
            ("customer.credit_balance_recovered", 1_000, true),
            ("customer.credit_balance_dropped", 100, true),
        ]
    );
    let state = summary(t, customer).await;
    assert!(!state.depleted);
    assert!(state.balance_alerts[0].triggered);
}

/// A grant that becomes effective later, and one that expires: the balance
/// moves without a request, and the sweeper's next run fires the events.
async fn time_driven_changes_fire_from_the_sweeper(t: &TestLedger) {
    let customer = "cus_time";
    let now = t.clock.now();
    let mut expiring = grant_request(customer, "expiring", 400);
    expiring.expires_at = ts(now + TimeDelta::days(2));
    create_grant(t, expiring).await;
    let mut later = grant_request(customer, "later", 600);
    later.effective_at = ts(now + TimeDelta::days(5));
    create_grant(t, later).await;
    let options = SweeperOptions::default();
    sweep_once(&t.ledger, &options).await.unwrap();
    assert!(alert_events(t).await.is_empty());

    // Past the expiry, before its grace ends (the expiry debit is not yet
    // recorded): only the balance evaluation sees the change.
    t.clock.set(now + TimeDelta::hours(60));
    assert_eq!(
        types(&alert_events(t).await),
        [] as [&str; 0],
        "time alone writes nothing until the sweeper runs"
    );
    let report = sweep_once(&t.ledger, &options).await.unwrap();
    assert_eq!(report.balances_evaluated, 1);
    // A second sweep has nothing left to do.
    let report = sweep_once(&t.ledger, &options).await.unwrap();
    assert_eq!(report.balances_evaluated, 0);
    t.clock.set(now + TimeDelta::days(6));
    sweep_once(&t.ledger, &options).await.unwrap();
    let events = alert_events(t).await;
    let seen: Vec<(&str, i64)> = events.iter().map(|e| (e.0.as_str(), e.2)).collect();
    assert_eq!(
        seen,
        [
            ("customer.credit_balance_depleted", 0),
            ("customer.credit_balance_recovered", 600),
        ]
    );
    assert!(!summary(t, customer).await.depleted);
}

async fn alerts_are_created_listed_and_deleted_per_account(t: &TestLedger) {
    let alert = create_alert(t, "cus_crud", 250).await;
    assert!(alert.id.starts_with("balalrt_"));
    let mut client = t.client();
    let got = client
        .get_balance_alert(authed(
            KEY_A,
            pb::GetBalanceAlertRequest {
                id: alert.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.balance_alert.unwrap(), alert);
    // Another account sees none of it.
    let foreign = client
        .get_balance_alert(authed(
            KEY_B,
            pb::GetBalanceAlertRequest {
                id: alert.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::NotFound);
    let listed = client
        .list_balance_alerts(authed(
            KEY_A,
            pb::ListBalanceAlertsRequest {
                customer: "cus_crud".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.balance_alerts, std::slice::from_ref(&alert));

    // Bad input names the field and writes nothing.
    let bad = client
        .create_balance_alert(authed(
            KEY_A,
            pb::CreateBalanceAlertRequest {
                customer: "acme".into(),
                threshold: usd(0),
                title: "x".repeat(201),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&bad),
        ["customer", "title"]
    );
    let zero = client
        .create_balance_alert(authed(
            KEY_A,
            pb::CreateBalanceAlertRequest {
                threshold: usd(0),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        billing_testkit::bad_request_fields(&zero),
        ["threshold.monetary.value"]
    );

    let deleted = client
        .delete_balance_alert(authed(
            KEY_A,
            pb::DeleteBalanceAlertRequest {
                id: alert.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.balance_alert.unwrap().id, alert.id);
    let again = client
        .delete_balance_alert(authed(
            KEY_A,
            pb::DeleteBalanceAlertRequest { id: alert.id },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    let listed = client
        .list_balance_alerts(authed(KEY_A, pb::ListBalanceAlertsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.balance_alerts.is_empty());
}

/// A hold takes from the balance the alerts watch as a debit would; a
/// release gives it back at once, a timeout through the sweeper.
async fn holds_move_the_balance_the_alerts_watch(t: &TestLedger) {
    let customer = "cus_held";
    let alert = create_alert(t, customer, 500).await;
    create_grant(t, grant_request(customer, "g", 1_000)).await;
    let hold = |value: i64, request_id: &str, timeout_seconds: u32| {
        let mut client = t.client();
        let request = pb::CreateCreditHoldRequest {
            request_id: request_id.into(),
            customer: customer.into(),
            amount: usd(value),
            timeout_seconds,
            unbilled: None,
        };
        async move {
            client
                .create_credit_hold(authed(KEY_A, request))
                .await
                .unwrap()
                .into_inner()
                .credit_hold
                .unwrap()
        }
    };
    let first = hold(600, "h1", 600).await; // 1,000 → 400: dropped
    t.client()
        .release_credit_hold(authed(KEY_A, pb::ReleaseCreditHoldRequest { id: first.id }))
        .await
        .unwrap(); // 400 → 1,000: recovered
    hold(1_000, "h2", 60).await; // 1,000 → 0: dropped, depleted
    let state = summary(t, customer).await;
    assert!(state.depleted);
    t.clock.advance(TimeDelta::seconds(61));
    sweep_once(&t.ledger, &SweeperOptions::default())
        .await
        .unwrap(); // the hold timed out: 0 → 1,000
    let events = alert_events(t).await;
    let seen: Vec<(&str, i64, bool)> = events
        .iter()
        .map(|e| (e.0.as_str(), e.2, e.3 == alert.id))
        .collect();
    assert_eq!(
        seen,
        [
            ("customer.credit_balance_dropped", 400, true),
            ("customer.credit_balance_recovered", 1_000, true),
            ("customer.credit_balance_dropped", 0, true),
            ("customer.credit_balance_depleted", 0, false),
            ("customer.credit_balance_recovered", 1_000, false),
            ("customer.credit_balance_recovered", 1_000, true),
        ]
    );
}
