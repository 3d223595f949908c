//! For random event sets, cancellations and query windows, GetUsage equals a
//! direct aggregation over the raw events (computed here, independently).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::str::FromStr;

use billing_money::Decimal;
use billing_proto::meter::v1 as pb;
use chrono::TimeDelta;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone)]
struct Case {
    /// (minutes after the base, value in hundredths, cancelled)
    events: Vec<(i64, i64, bool)>,
    /// (start minute, length in minutes, grouping)
    queries: Vec<(i64, i64, u8)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(
            (
                0_i64..3 * 24 * 60,
                -50_000_i64..50_000,
                proptest::bool::weighted(0.15),
            ),
            1..60,
        ),
        proptest::collection::vec((0_i64..3 * 24 * 60, 1_i64..2 * 24 * 60, 0_u8..3), 1..6),
    )
        .prop_map(|(events, queries)| Case { events, queries })
}

fn expected(case: &Case, aggregation: pb::Aggregation, start: i64, end: i64) -> (String, i64) {
    let mut matching: Vec<(i64, String, Decimal)> = case
        .events
        .iter()
        .enumerate()
        .filter(|(_, (minute, _, cancelled))| !cancelled && (start..end).contains(minute))
        .map(|(i, (minute, cents, _))| (*minute, format!("e{i:03}"), Decimal::new(*cents, 2)))
        .collect();
    matching.sort();
    let count = i64::try_from(matching.len()).unwrap();
    let value = if matching.is_empty() {
        Decimal::ZERO
    } else {
        match aggregation {
            pb::Aggregation::Count => Decimal::from(count),
            pb::Aggregation::Sum => matching.iter().map(|e| e.2).sum(),
            pb::Aggregation::Max => matching.iter().map(|e| e.2).max().unwrap(),
            _ => matching.last().unwrap().2,
        }
    };
    (value.normalize().to_string(), count)
}

async fn run_case(t: &TestMeter, index: usize, case: &Case) -> Result<(), TestCaseError> {
    let base = t0() - TimeDelta::days(4);
    let customer = format!("cus_{index}");
    let aggregations = [
        pb::Aggregation::Count,
        pb::Aggregation::Sum,
        pb::Aggregation::Max,
        pb::Aggregation::Last,
    ];
    for aggregation in aggregations {
        let name = format!("x{index}_{}", aggregation.as_str_name().to_lowercase());
        let meter = t.meter(&name, aggregation).await.id;
        let events = case
            .events
            .iter()
            .enumerate()
            .map(|(i, (minute, cents, _))| {
                let value = Decimal::new(*cents, 2).to_string();
                event(
                    &name,
                    &format!("{name}-e{i:03}"),
                    base + TimeDelta::minutes(*minute),
                    &customer,
                    &value,
                )
            })
            .collect();
        prop_assert_eq!(t.ingest(events).await.rejected, 0);
        for (i, (_, _, cancelled)) in case.events.iter().enumerate() {
            if *cancelled {
                let request = pb::CancelEventRequest {
                    identifier: format!("{name}-e{i:03}"),
                };
                t.client()
                    .cancel_event(authed(KEY_A, request))
                    .await
                    .unwrap();
            }
        }
        for (start, length, grouping) in &case.queries {
            let (start_at, end_at) = (
                base + TimeDelta::minutes(*start),
                base + TimeDelta::minutes(start + length),
            );
            let grouping = [
                pb::GroupingWindow::Unspecified,
                pb::GroupingWindow::Hour,
                pb::GroupingWindow::Day,
            ][*grouping as usize];
            let usage = t.usage(&meter, &customer, start_at, end_at, grouping).await;
            let total = usage.total.unwrap();
            // Event identifiers sort like the expectation's tie-break.
            let want = expected(case, aggregation, *start, start + length);
            prop_assert_eq!(
                (total.value.clone(), total.event_count),
                want,
                "{:?} [{}, {})",
                aggregation,
                start,
                start + length
            );
            for window in &usage.windows {
                let from =
                    (billing_server::time::from_proto(window.start_time.as_ref().unwrap(), "w")
                        .unwrap()
                        - base)
                        .num_minutes();
                let to = (billing_server::time::from_proto(window.end_time.as_ref().unwrap(), "w")
                    .unwrap()
                    - base)
                    .num_minutes();
                prop_assert_eq!(
                    (window.value.clone(), window.event_count),
                    expected(case, aggregation, from, to)
                );
            }
            let _ = Decimal::from_str(&total.value).unwrap();
        }
    }
    Ok(())
}

async fn usage_equals_direct_aggregation(t: &TestMeter) {
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let index = std::sync::atomic::AtomicUsize::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&case(), |case| {
            let i = index.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            handle.block_on(run_case(t, i, &case))
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

backends!(usage_equals_direct_aggregation);
