//! Usage for a customer invoicing does not know is kept and reported as
//! `meter.usage_unattributed` by meter-ingest's attribution job: once per
//! customer, meter and UTC day with usage, whatever the number of passes
//! or replicas running them; a known customer's usage never is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use chrono::TimeDelta;
use common::*;
use meter_ingest::jobs::attribution::run_once;

backends!(unknown_customers_are_reported_once_a_day);

async fn reported(t: &Suite) -> Vec<billing_proto::meter::v1::UnattributedUsage> {
    let mut feed = EventServiceClient::new(t.channels[2].1.clone());
    let mut events = feed
        .list_events(authed(
            KEY_A,
            ev::ListEventsRequest {
                types: vec!["meter.usage_unattributed".into()],
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    events.reverse();
    events
        .into_iter()
        .map(|e| match e.data {
            Some(ev::event::Data::UnattributedUsage(usage)) => usage,
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn unknown_customers_are_reported_once_a_day(t: &Suite) {
    let meter = t.meter("calls").await;
    let known = t.customer("Acme").await;
    let start = t0() + TimeDelta::hours(1);
    t.usage("calls", &known, start, &[("k-1", "1")]).await;
    t.usage("calls", "cus_typo", start, &[("u-1", "1")]).await;
    let state = &t.meter_state;
    let directory = state.customers.as_ref().unwrap();

    // Two passes at once (two replicas): one report.
    let (a, b) = tokio::join!(
        run_once(&state.metering, directory),
        run_once(&state.metering, directory)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.reported + b.reported, 1, "{a:?} {b:?}");
    assert!(a.attributed + b.attributed >= 1);
    let first = reported(t).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].meter.as_str(), first[0].customer.as_str()),
        (meter.as_str(), "cus_typo")
    );

    // More usage the same day, another pass: nothing new.
    t.usage(
        "calls",
        "cus_typo",
        start + TimeDelta::hours(2),
        &[("u-2", "1")],
    )
    .await;
    let again = run_once(&state.metering, directory).await.unwrap();
    assert_eq!(again.reported, 0);

    // The next day with usage: reported again; a day without usage: not.
    let next_day = start + TimeDelta::days(1);
    t.usage("calls", "cus_typo", next_day, &[("u-3", "1")])
        .await;
    assert_eq!(
        run_once(&state.metering, directory).await.unwrap().reported,
        1
    );
    t.clock.set(next_day + TimeDelta::days(1));
    assert_eq!(
        run_once(&state.metering, directory).await.unwrap().reported,
        0
    );
    let all = reported(t).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|u| u.customer == "cus_typo"));
    assert!(all[1].day.as_ref().unwrap().seconds > all[0].day.as_ref().unwrap().seconds);
}
