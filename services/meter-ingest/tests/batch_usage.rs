//! BatchGetUsage (DESIGN.md §12): the same totals as GetUsage, on both
//! backends, while its cache of hours that ended more than two hours ago
//! is in play: an event more than an hour late and a cancel are seen on the
//! next read, as is a recent event; bad ranges are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::meter::v1 as pb;
use billing_server::time::to_proto;
use billing_testkit::{authed, bad_request_fields};
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use tonic::Code;

backends!(
    batch_totals_match_get_usage_across_late_events_and_cancels,
    bad_batches_are_refused,
);

fn range(meter: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> pb::UsageRange {
    pb::UsageRange {
        meter: meter.into(),
        start_time: Some(to_proto(start)),
        end_time: Some(to_proto(end)),
    }
}

async fn batch(
    t: &TestMeter,
    customer: &str,
    ranges: Vec<pb::UsageRange>,
) -> Result<Vec<String>, tonic::Status> {
    Ok(t.client()
        .batch_get_usage(authed(
            KEY_A,
            pb::BatchGetUsageRequest {
                customer: customer.into(),
                ranges,
            },
        ))
        .await?
        .into_inner()
        .usages
        .into_iter()
        .map(|u| u.total.unwrap().value)
        .collect())
}

/// Every range of `ranges` through BatchGetUsage, twice (the second read
/// may come from the cache), and through GetUsage: all three agree.
async fn agree(
    t: &TestMeter,
    customer: &str,
    ranges: &[(String, DateTime<Utc>, DateTime<Utc>)],
) -> Vec<String> {
    let asked: Vec<pb::UsageRange> = ranges
        .iter()
        .map(|(meter, start, end)| range(meter, *start, *end))
        .collect();
    let first = batch(t, customer, asked.clone()).await.unwrap();
    let second = batch(t, customer, asked).await.unwrap();
    assert_eq!(first, second);
    for ((meter, start, end), total) in ranges.iter().zip(&first) {
        assert_eq!(
            &t.total(meter, customer, *start, *end).await,
            total,
            "{meter} {start}..{end}"
        );
    }
    first
}

async fn batch_totals_match_get_usage_across_late_events_and_cancels(t: &TestMeter) {
    let sum = t.meter("calls", pb::Aggregation::Sum).await.id;
    let last = t.meter("level", pb::Aggregation::Last).await.id;
    let max = t.meter("peak", pb::Aggregation::Max).await.id;
    let now = t0() + TimeDelta::days(3) + TimeDelta::minutes(20);
    t.clock.set(now);
    let at = |hours: i64| t0() + TimeDelta::hours(hours);
    let mut events = Vec::new();
    for (name, id, hours, value) in [
        ("calls", "c1", 1, "1"),
        ("calls", "c2", 10, "2"),
        ("calls", "c3", 71, "4"),
        ("level", "l1", 2, "7"),
        ("level", "l2", 71, "3"),
        ("peak", "p1", 3, "9"),
    ] {
        events.push(event(name, id, at(hours), "cus_1", value));
    }
    assert_eq!(t.ingest(events).await.accepted, 6);
    let period = |meter: &str| (meter.to_owned(), t0(), t0() + TimeDelta::days(30));
    let ranges = vec![
        period(&sum),
        period(&last),
        period(&max),
        // Wholly before the cache's horizon, wholly after, and cut mid-hour.
        (sum.clone(), t0(), at(20)),
        (sum.clone(), now, now + TimeDelta::days(1)),
        (
            sum.clone(),
            at(1) + TimeDelta::minutes(30),
            at(71) + TimeDelta::minutes(1),
        ),
    ];
    assert_eq!(agree(t, "cus_1", &ranges).await[..3], ["7", "3", "9"]);

    // An event an hour and more late lands in a cached hour: seen at once.
    t.ingest(vec![event("calls", "late", at(5), "cus_1", "8")])
        .await;
    assert_eq!(agree(t, "cus_1", &ranges).await[0], "15");
    // So is a cancel.
    t.client()
        .cancel_event(authed(
            KEY_A,
            pb::CancelEventRequest {
                identifier: "c2".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(agree(t, "cus_1", &ranges).await[0], "13");
    // And a recent event, in the part read every time.
    t.ingest(vec![event(
        "calls",
        "recent",
        now - TimeDelta::minutes(5),
        "cus_1",
        "16",
    )])
    .await;
    assert_eq!(agree(t, "cus_1", &ranges).await[0], "29");
    // Time moves on: the horizon passes the recent hours.
    t.clock.set(now + TimeDelta::hours(5));
    assert_eq!(agree(t, "cus_1", &ranges).await[0], "29");
    // A customer without events.
    assert_eq!(agree(t, "cus_none", &ranges[..1]).await, ["0"]);
}

async fn bad_batches_are_refused(t: &TestMeter) {
    let sum = t.meter("calls", pb::Aggregation::Sum).await.id;
    let fields = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        bad_request_fields(&status)
    };
    assert_eq!(
        fields(batch(t, "cus_1", vec![]).await.unwrap_err()),
        ["ranges"]
    );
    let many = vec![range(&sum, t0(), t0() + TimeDelta::days(1)); 101];
    assert_eq!(
        fields(batch(t, "cus_1", many).await.unwrap_err()),
        ["ranges"]
    );
    let backwards = vec![range(&sum, t0(), t0())];
    assert_eq!(
        fields(batch(t, "cus_1", backwards).await.unwrap_err()),
        ["ranges[0].end_time"]
    );
    let unknown = vec![range("mtr_nope", t0(), t0() + TimeDelta::days(1))];
    assert_eq!(
        batch(t, "cus_1", unknown).await.unwrap_err().code(),
        Code::NotFound
    );
    let other = t
        .client()
        .batch_get_usage(authed(
            KEY_B,
            pb::BatchGetUsageRequest {
                customer: "cus_1".into(),
                ranges: vec![range(&sum, t0(), t0() + TimeDelta::days(1))],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
}
