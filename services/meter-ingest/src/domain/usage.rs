//! Hourly buckets and the usage windows built from them.
//!
//! A usage query over `[start, end)` reads the hourly buckets lying wholly
//! inside the range and the raw events of the at most two partial hours at its
//! edges, so its cost is bounded by the range's hours, never by history.

use std::collections::BTreeMap;

use billing_money::Decimal;
use chrono::{DateTime, TimeDelta, Utc};

use super::event::ValidEvent;
use super::meter::Aggregation;

/// Bucket width: one hour, in microseconds.
pub const BUCKET_US: i64 = 3_600_000_000;
/// Most windows one grouped query may return.
pub const WINDOWS_MAX: i64 = 2_000;

/// The start of the hour bucket holding `timestamp_us`.
pub fn bucket_of(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(BUCKET_US) * BUCKET_US
}

/// The smallest bucket start at or after `timestamp_us`.
pub fn bucket_ceil(timestamp_us: i64) -> i64 {
    let floor = bucket_of(timestamp_us);
    if floor == timestamp_us {
        floor
    } else {
        floor + BUCKET_US
    }
}

/// Everything every aggregation needs, mergeable across events and buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Number of events.
    pub count: i64,
    /// Σ values.
    pub sum: Decimal,
    /// Largest value (meaningful when count > 0).
    pub max: Decimal,
    /// Latest event: (timestamp, identifier, value).
    pub last: (i64, String, Decimal),
}

impl Aggregate {
    /// One event.
    pub fn of(timestamp_us: i64, identifier: &str, value: Decimal) -> Self {
        Self {
            count: 1,
            sum: value,
            max: value,
            last: (timestamp_us, identifier.to_owned(), value),
        }
    }

    /// Adds `other` in. Sums stay exact: event values are bounded (see
    /// `event::VALUE_ABS_MAX`), so an overflow means corrupt data.
    pub fn merge(&mut self, other: &Aggregate) -> Result<(), AggregateOverflow> {
        if other.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            *self = other.clone();
            return Ok(());
        }
        self.count = self
            .count
            .checked_add(other.count)
            .ok_or(AggregateOverflow)?;
        self.sum = self.sum.checked_add(other.sum).ok_or(AggregateOverflow)?;
        self.max = self.max.max(other.max);
        if (other.last.0, &other.last.1) > (self.last.0, &self.last.1) {
            self.last = other.last.clone();
        }
        Ok(())
    }

    /// Nothing yet.
    pub fn empty() -> Self {
        Self {
            count: 0,
            sum: Decimal::ZERO,
            max: Decimal::ZERO,
            last: (i64::MIN, String::new(), Decimal::ZERO),
        }
    }

    /// The aggregated value; 0 when there are no events.
    pub fn value(&self, aggregation: Aggregation) -> Decimal {
        if self.count == 0 {
            return Decimal::ZERO;
        }
        match aggregation {
            Aggregation::Count => Decimal::from(self.count),
            Aggregation::Sum => self.sum.normalize(),
            Aggregation::Max => self.max.normalize(),
            Aggregation::Last => self.last.2.normalize(),
        }
    }
}

/// A sum left the representable range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("usage aggregate out of range")]
pub struct AggregateOverflow;

/// Bucket key: (series id, bucket start).
pub type BucketKey = (i64, i64);

/// The per-bucket deltas of a batch of accepted events, each with its
/// series id, in key order (so concurrent writers lock bucket rows in the
/// same order).
pub fn deltas<'a>(
    events: impl IntoIterator<Item = (i64, &'a ValidEvent)>,
) -> Result<BTreeMap<BucketKey, Aggregate>, AggregateOverflow> {
    let mut out: BTreeMap<BucketKey, Aggregate> = BTreeMap::new();
    for (series, event) in events {
        let ts = event.timestamp.timestamp_micros();
        out.entry((series, bucket_of(ts)))
            .or_insert_with(Aggregate::empty)
            .merge(&Aggregate::of(ts, &event.identifier, event.value))?;
    }
    Ok(out)
}

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One window over the range.
    None,
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
}

/// The parts of a range: the full buckets, and the partial edges that need raw events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePlan {
    /// Full buckets `[first, last)`, empty when first >= last.
    pub buckets: (i64, i64),
    /// Raw-event edges `[start, end)`, each possibly empty.
    pub edges: [(i64, i64); 2],
}

/// Splits `[start_us, end_us)` into full hours and partial edges.
pub fn plan_range(start_us: i64, end_us: i64) -> RangePlan {
    let first = bucket_ceil(start_us);
    let last = bucket_of(end_us);
    if first >= last {
        return RangePlan {
            buckets: (0, 0),
            edges: [(start_us, end_us), (0, 0)],
        };
    }
    RangePlan {
        buckets: (first, last),
        edges: [(start_us, first), (last, end_us)],
    }
}

/// One output window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
    /// Aggregate of what falls inside.
    pub aggregate: Aggregate,
}

impl Grouping {
    /// Window width in microseconds (the whole range when ungrouped).
    pub fn width_us(self) -> i64 {
        match self {
            Self::None => i64::MAX,
            Self::Hour => BUCKET_US,
            Self::Day => 24 * BUCKET_US,
        }
    }
}

/// How many windows [`window_bounds`] would make, computed from the
/// arithmetic alone, so a huge range is refused before any work.
pub fn window_count(start: DateTime<Utc>, end: DateTime<Utc>, grouping: Grouping) -> i64 {
    let step_us = match grouping {
        Grouping::None => return 1,
        Grouping::Hour => BUCKET_US,
        Grouping::Day => BUCKET_US * 24,
    };
    if end <= start {
        return 0;
    }
    // Windows are aligned to the step: count the aligned steps that the
    // range touches. i128: no range of valid timestamps can overflow it.
    let first = i128::from(start.timestamp_micros()).div_euclid(i128::from(step_us));
    let last = (i128::from(end.timestamp_micros()) - 1).div_euclid(i128::from(step_us));
    i64::try_from(last - first + 1).unwrap_or(i64::MAX)
}

/// The window boundaries of `[start, end)` for a grouping (clipped to the range).
pub fn window_bounds(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    grouping: Grouping,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let step = match grouping {
        Grouping::None => return vec![(start, end)],
        Grouping::Hour => TimeDelta::hours(1),
        Grouping::Day => TimeDelta::days(1),
    };
    let step_us = step.num_microseconds().unwrap_or(BUCKET_US);
    let mut bounds = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let aligned = cursor.timestamp_micros().div_euclid(step_us) * step_us + step_us;
        let next = DateTime::from_timestamp_micros(aligned)
            .unwrap_or(end)
            .min(end);
        bounds.push((cursor, next));
        cursor = next;
    }
    bounds
}

/// Folds buckets (keyed by start) and edge events into the windows.
pub fn fold(
    bounds: &[(DateTime<Utc>, DateTime<Utc>)],
    buckets: &[(i64, Aggregate)],
    edge_events: &[(i64, String, Decimal)],
) -> Result<Vec<Window>, AggregateOverflow> {
    let mut windows: Vec<Window> = bounds
        .iter()
        .map(|(start, end)| Window {
            start: *start,
            end: *end,
            aggregate: Aggregate::empty(),
        })
        .collect();
    let index_of = |ts_us: i64| windows_index(bounds, ts_us);
    for (bucket, aggregate) in buckets {
        if let Some(i) = index_of(*bucket) {
            windows[i].aggregate.merge(aggregate)?;
        }
    }
    for (ts, identifier, value) in edge_events {
        if let Some(i) = index_of(*ts) {
            windows[i]
                .aggregate
                .merge(&Aggregate::of(*ts, identifier, *value))?;
        }
    }
    Ok(windows)
}

fn windows_index(bounds: &[(DateTime<Utc>, DateTime<Utc>)], ts_us: i64) -> Option<usize> {
    let position = bounds.partition_point(|(_, end)| end.timestamp_micros() <= ts_us);
    bounds
        .get(position)
        .filter(|(start, _)| start.timestamp_micros() <= ts_us)
        .map(|_| position)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, 0).unwrap()
    }

    /// The arithmetic count equals the windows actually built, including
    /// ranges cut mid-hour and mid-day, and a range to year 9999 is counted
    /// without building anything.
    #[test]
    fn window_count_matches_window_bounds() {
        for (start, end) in [
            (at(0, 0), at(1, 0)),
            (at(0, 30), at(1, 0)),
            (at(0, 30), at(1, 1)),
            (at(0, 0), at(23, 59)),
            (at(5, 5), at(5, 6)),
        ] {
            for grouping in [Grouping::None, Grouping::Hour, Grouping::Day] {
                let built = window_bounds(start, end, grouping).len();
                assert_eq!(window_count(start, end, grouping), built as i64);
            }
        }
        let far = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap();
        assert!(window_count(at(0, 0), far, Grouping::Hour) > 60_000_000);
    }

    #[test]
    fn ranges_split_into_buckets_and_edges() {
        let h = BUCKET_US;
        assert_eq!(
            plan_range(h, 3 * h),
            RangePlan {
                buckets: (h, 3 * h),
                edges: [(h, h), (3 * h, 3 * h)]
            }
        );
        assert_eq!(
            plan_range(h + 5, 3 * h + 7),
            RangePlan {
                buckets: (2 * h, 3 * h),
                edges: [(h + 5, 2 * h), (3 * h, 3 * h + 7)]
            }
        );
        assert_eq!(plan_range(h + 5, h + 9).buckets, (0, 0));
        assert_eq!(plan_range(h + 5, h + 9).edges[0], (h + 5, h + 9));
    }

    #[test]
    fn windows_are_aligned_and_clipped() {
        let bounds = window_bounds(at(1, 30), at(3, 15), Grouping::Hour);
        assert_eq!(
            bounds,
            vec![
                (at(1, 30), at(2, 0)),
                (at(2, 0), at(3, 0)),
                (at(3, 0), at(3, 15))
            ]
        );
        assert_eq!(window_bounds(at(1, 30), at(3, 15), Grouping::None).len(), 1);
        assert_eq!(window_bounds(at(1, 30), at(3, 15), Grouping::Day).len(), 1);
    }

    #[test]
    fn aggregates_merge_exactly() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        let mut total = Aggregate::empty();
        total.merge(&Aggregate::of(10, "b", d("0.1"))).unwrap();
        total.merge(&Aggregate::of(10, "a", d("0.2"))).unwrap();
        total.merge(&Aggregate::of(5, "z", d("7"))).unwrap();
        assert_eq!(total.value(Aggregation::Sum), d("7.3"));
        assert_eq!(total.value(Aggregation::Count), d("3"));
        assert_eq!(total.value(Aggregation::Max), d("7"));
        assert_eq!(
            total.value(Aggregation::Last),
            d("0.1"),
            "latest timestamp, then greatest identifier"
        );
        assert_eq!(Aggregate::empty().value(Aggregation::Max), Decimal::ZERO);
    }
}
