//! Each aggregation over windows that cut through buckets, grouping, cancellation, late events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use billing_proto::meter::v1 as pb;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use tonic_types::StatusExt;

/// 2026-01-14 at hh:mm:ss (the day before the clock's now).
fn at(h: i64, m: i64, s: i64) -> DateTime<Utc> {
    t0() - TimeDelta::days(1) + TimeDelta::hours(h) + TimeDelta::minutes(m) + TimeDelta::seconds(s)
}

async fn seed(t: &TestMeter) -> [String; 4] {
    let mut ids = Vec::new();
    for (name, aggregation) in [
        ("api_count", pb::Aggregation::Count),
        ("api_sum", pb::Aggregation::Sum),
        ("api_max", pb::Aggregation::Max),
        ("api_last", pb::Aggregation::Last),
    ] {
        ids.push(t.meter(name, aggregation).await.id);
        let events = vec![
            event(name, &format!("{name}-1"), at(10, 5, 0), "cus_1", "1.5"),
            event(name, &format!("{name}-2"), at(10, 40, 0), "cus_1", "2.25"),
            event(name, &format!("{name}-3"), at(11, 10, 0), "cus_1", "4"),
            event(name, &format!("{name}-4"), at(12, 59, 59), "cus_1", "0.5"),
            event(name, &format!("{name}-5"), at(13, 0, 0), "cus_1", "3"),
            event(name, &format!("{name}-6"), at(11, 0, 0), "cus_2", "100"),
        ];
        assert_eq!(t.ingest(events).await.accepted, 6);
    }
    ids.try_into().unwrap()
}

async fn check_all(
    t: &TestMeter,
    meters: &[String; 4],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    expected: [&str; 4],
) {
    for (meter, want) in meters.iter().zip(expected) {
        assert_eq!(
            t.total(meter, "cus_1", start, end).await,
            want,
            "meter {meter} over [{start}, {end})"
        );
    }
}

async fn aggregations_over_windows_that_cut_buckets(t: &TestMeter) {
    let meters = seed(t).await;
    // count, sum, max, last
    check_all(
        t,
        &meters,
        at(10, 30, 0),
        at(12, 30, 0),
        ["2", "6.25", "4", "4"],
    )
    .await;
    check_all(
        t,
        &meters,
        at(10, 0, 0),
        at(13, 0, 0),
        ["4", "8.25", "4", "0.5"],
    )
    .await;
    check_all(
        t,
        &meters,
        at(10, 0, 0),
        at(13, 0, 1),
        ["5", "11.25", "4", "3"],
    )
    .await;
    check_all(
        t,
        &meters,
        at(10, 5, 0),
        at(10, 5, 1),
        ["1", "1.5", "1.5", "1.5"],
    )
    .await;
    check_all(
        t,
        &meters,
        at(10, 6, 0),
        at(10, 39, 0),
        ["0", "0", "0", "0"],
    )
    .await;
    check_all(
        t,
        &meters,
        at(0, 0, 0),
        at(24, 0, 0),
        ["5", "11.25", "4", "3"],
    )
    .await;
}

async fn grouping_windows(t: &TestMeter) {
    let [_, sum, _, _] = seed(t).await;
    let usage = t
        .usage(
            &sum,
            "cus_1",
            at(10, 30, 0),
            at(13, 30, 0),
            pb::GroupingWindow::Hour,
        )
        .await;
    let windows: Vec<(String, i64)> = usage
        .windows
        .iter()
        .map(|w| (w.value.clone(), w.event_count))
        .collect();
    assert_eq!(
        windows,
        vec![
            ("2.25".into(), 1),
            ("4".into(), 1),
            ("0.5".into(), 1),
            ("3".into(), 1)
        ],
        "[10:30,11) [11,12) [12,13) [13,13:30)"
    );
    assert_eq!(
        usage.windows[0].start_time,
        Some(billing_server::time::to_proto(at(10, 30, 0)))
    );
    assert_eq!(usage.total.unwrap().value, "9.75");

    let days = t
        .usage(
            &sum,
            "cus_1",
            at(-24, 0, 0),
            at(24, 0, 0),
            pb::GroupingWindow::Day,
        )
        .await;
    let values: Vec<&str> = days.windows.iter().map(|w| w.value.as_str()).collect();
    assert_eq!(values, vec!["0", "11.25"]);
}

async fn cancellation_leaves_every_aggregate(t: &TestMeter) {
    let meters = seed(t).await;
    for name in ["api_count", "api_sum", "api_max", "api_last"] {
        let cancelled = t
            .client()
            .cancel_event(authed(
                KEY_A,
                pb::CancelEventRequest {
                    identifier: format!("{name}-3"),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(cancelled.cancelled_at.is_some());
    }
    check_all(
        t,
        &meters,
        at(10, 0, 0),
        at(13, 0, 0),
        ["3", "4.25", "2.25", "0.5"],
    )
    .await;
    // A bucket whose only event is cancelled disappears from every aggregate.
    t.client()
        .cancel_event(authed(
            KEY_A,
            pb::CancelEventRequest {
                identifier: "api_max-5".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        t.total(&meters[2], "cus_1", at(13, 0, 0), at(14, 0, 0))
            .await,
        "0"
    );

    let again = t
        .client()
        .cancel_event(authed(
            KEY_A,
            pb::CancelEventRequest {
                identifier: "api_sum-3".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        again.get_error_details().error_info().unwrap().reason,
        "EVENT_ALREADY_CANCELLED"
    );
    let unknown = t
        .client()
        .cancel_event(authed(
            KEY_A,
            pb::CancelEventRequest {
                identifier: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // A cancelled identifier stays taken: re-sending it is a duplicate, not a new event.
    let resent = t
        .ingest(vec![event(
            "api_sum",
            "api_sum-3",
            at(11, 10, 0),
            "cus_1",
            "4",
        )])
        .await;
    assert_eq!(resent.duplicate, 1);
    check_all(
        t,
        &meters,
        at(10, 0, 0),
        at(13, 0, 0),
        ["3", "4.25", "2.25", "0.5"],
    )
    .await;
}

async fn late_and_future_events(t: &TestMeter) {
    let sum = t.meter("late_sum", pb::Aggregation::Sum).await.id;
    let now = t0();
    let response = t
        .ingest(vec![
            event(
                "late_sum",
                "late-34d",
                now - TimeDelta::days(34),
                "cus_1",
                "1",
            ),
            event(
                "late_sum",
                "late-36d",
                now - TimeDelta::days(36),
                "cus_1",
                "10",
            ),
            event(
                "late_sum",
                "ahead-4m",
                now + TimeDelta::minutes(4),
                "cus_1",
                "100",
            ),
            event(
                "late_sum",
                "ahead-6m",
                now + TimeDelta::minutes(6),
                "cus_1",
                "1000",
            ),
        ])
        .await;
    let outcomes: Vec<(i32, &str)> = response
        .results
        .iter()
        .map(|r| (r.outcome, r.field.as_str()))
        .collect();
    let accepted = pb::EventOutcome::Accepted as i32;
    let rejected = pb::EventOutcome::Rejected as i32;
    assert_eq!(
        outcomes,
        vec![
            (accepted, ""),
            (rejected, "timestamp"),
            (accepted, ""),
            (rejected, "timestamp")
        ]
    );
    assert_eq!(
        t.total(
            &sum,
            "cus_1",
            now - TimeDelta::days(40),
            now + TimeDelta::hours(1)
        )
        .await,
        "101"
    );
    // A late event lands in its own (old) bucket.
    assert_eq!(
        t.total(
            &sum,
            "cus_1",
            now - TimeDelta::days(35),
            now - TimeDelta::days(33)
        )
        .await,
        "1"
    );
}

backends!(
    aggregations_over_windows_that_cut_buckets,
    grouping_windows,
    cancellation_leaves_every_aggregate,
    late_and_future_events,
);
