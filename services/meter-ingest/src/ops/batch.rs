//! BatchGetUsage: one customer's usage of several meters, each over its own
//! range, in a few statements, exact at read time (DESIGN.md §12).
//!
//! Each range splits at `closed_until`, the start of the hour two hours
//! before now:
//! - the part before it is the same on every read until an event more than
//!   an hour late, or a cancel, changes one of its hours; each such change
//!   bumps the series' `late_version` in its own transaction. The part is
//!   cached per (series, start, end of the part) with the version read
//!   *before* it was computed, and used only while that version is still
//!   the current one, so a cached total never misses a committed change
//!   (one hour of clock skew between replicas is covered by the margin);
//! - the part after it (at most the last two hours, and the future) is
//!   read every time, for all the request's series in one statement per
//!   distinct range, so an event acknowledged before the call is in the
//!   answer. It is read first and brings each series' version along, so
//!   the usual request is one statement.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use billing_money::FieldViolation;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};

use super::{Metering, Usage};
use crate::domain::meter::Aggregation;
use crate::domain::usage::{self, Aggregate, BUCKET_US, Grouping, Window};
use crate::error::MeterError;

/// Most ranges of one request.
pub const RANGES_MAX: usize = 100;
/// Cached closed parts at most; past it the cache starts over.
const CACHE_MAX: usize = 200_000;

/// One range of a BatchGetUsage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRange {
    /// `mtr_…`
    pub meter: String,
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive, after `start`.
    pub end: DateTime<Utc>,
}

/// A closed part's key: (series, start µs, end µs).
type ClosedKey = (i64, i64, i64);

/// Closed parts by key: the `late_version` each was computed under, and
/// its aggregate.
type ClosedParts = HashMap<ClosedKey, (i64, Aggregate)>;

/// What the batch path keeps between requests.
#[derive(Debug, Default, Clone)]
pub(super) struct UsageCache {
    /// Each meter's aggregation (it never changes) by `account:meter`.
    aggregations: Arc<Mutex<HashMap<String, Aggregation>>>,
    /// Closed parts: (series, start µs, end µs) → (late_version, aggregate).
    closed: Arc<Mutex<ClosedParts>>,
}

impl UsageCache {
    fn closed(&self, key: ClosedKey, version: i64) -> Option<Aggregate> {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        closed
            .get(&key)
            .filter(|(cached, _)| *cached == version)
            .map(|(_, aggregate)| aggregate.clone())
    }

    fn keep(&self, key: ClosedKey, version: i64, aggregate: Aggregate) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.len() >= CACHE_MAX {
            closed.clear();
        }
        closed.insert(key, (version, aggregate));
    }
}

/// One range as planned: its series and where it splits.
struct Planned {
    series: Option<i64>,
    aggregation: Aggregation,
    start_us: i64,
    split_us: i64,
    end_us: i64,
}

impl Metering {
    /// A meter's aggregation (NOT_FOUND for another account's or no meter),
    /// cached: an aggregation never changes.
    pub(super) async fn aggregation(
        &self,
        account: &str,
        meter: &str,
    ) -> Result<Aggregation, MeterError> {
        let key = format!("{}:{account}{meter}", account.len());
        let cached = self
            .cache
            .aggregations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if let Some(aggregation) = cached {
            return Ok(aggregation);
        }
        let aggregation = self.meter(account, meter).await?.aggregation;
        let mut aggregations = self
            .cache
            .aggregations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if aggregations.len() >= CACHE_MAX {
            aggregations.clear();
        }
        aggregations.insert(key, aggregation);
        Ok(aggregation)
    }

    /// The customer's usage over each range, in request order.
    pub async fn batch_usage(
        &self,
        account: &str,
        customer: &str,
        ranges: &[UsageRange],
    ) -> Result<Vec<Usage>, MeterError> {
        if ranges.len() > RANGES_MAX {
            return Err(MeterError::fields(vec![FieldViolation::new(
                "ranges",
                format!("at most {RANGES_MAX} ranges"),
            )]));
        }
        let closed_until = usage::bucket_of(to_micros(self.clock.now())) - 2 * BUCKET_US;
        let meters: Vec<&str> = ranges.iter().map(|r| r.meter.as_str()).collect();
        let series = self
            .store
            .find_series_of(account, customer, &meters)
            .await?;
        let mut planned = Vec::with_capacity(ranges.len());
        for (range, series) in ranges.iter().zip(series) {
            let (start_us, end_us) = (to_micros(range.start), to_micros(range.end));
            planned.push(Planned {
                series,
                aggregation: self.aggregation(account, &range.meter).await?,
                start_us,
                split_us: closed_until.clamp(start_us, end_us),
                end_us,
            });
        }
        let overflow = |e: usage::AggregateOverflow| MeterError::Corrupt(e.to_string());
        let mut totals = vec![Aggregate::empty(); planned.len()];
        // Live parts first: one read per distinct range, for all its
        // series; each series with recent buckets comes back with its
        // `late_version`, read in the same statement.
        let mut versions: HashMap<i64, i64> = HashMap::new();
        let mut groups: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
        for (index, plan) in planned.iter().enumerate() {
            if plan.series.is_some() && plan.split_us < plan.end_us {
                groups
                    .entry((plan.split_us, plan.end_us))
                    .or_default()
                    .push(index);
            }
        }
        for ((from_us, end_us), indexes) in groups {
            let mut series: Vec<i64> = indexes.iter().filter_map(|i| planned[*i].series).collect();
            series.sort_unstable();
            series.dedup();
            let needs_last = indexes
                .iter()
                .any(|i| planned[*i].aggregation == Aggregation::Last);
            let range_plan = usage::plan_range(from_us, end_us);
            let data = self
                .store
                .usage_many(&series, &range_plan, needs_last)
                .await?;
            for (id, found) in &data {
                if let Some(version) = found.late_version {
                    versions.insert(*id, version);
                }
            }
            let bounds = [(from_micros(from_us), from_micros(end_us))];
            for index in indexes {
                let Some(found) = planned[index].series.and_then(|s| data.get(&s)) else {
                    continue;
                };
                let windows =
                    usage::fold(&bounds, &found.buckets, &found.edge_events).map_err(overflow)?;
                for window in &windows {
                    totals[index].merge(&window.aggregate).map_err(overflow)?;
                }
            }
        }
        // Then the closed parts. Every version is read before the part it
        // validates is computed: a closed part computed after reading
        // version v holds at least every change up to v. The series without
        // recent buckets have theirs read here.
        let mut unversioned: Vec<i64> = planned
            .iter()
            .filter(|p| p.split_us > p.start_us)
            .filter_map(|p| p.series)
            .filter(|s| !versions.contains_key(s))
            .collect();
        unversioned.sort_unstable();
        unversioned.dedup();
        versions.extend(self.store.late_versions(&unversioned).await?);
        for ((plan, range), total) in planned.iter().zip(ranges).zip(totals.iter_mut()) {
            let Some(series) = plan.series else { continue };
            if plan.split_us <= plan.start_us {
                continue;
            }
            let version = versions.get(&series).copied().unwrap_or_default();
            let key = (series, plan.start_us, plan.split_us);
            let closed = match self.cache.closed(key, version) {
                Some(aggregate) => aggregate,
                None => {
                    let split = from_micros(plan.split_us);
                    let read = self
                        .usage(
                            account,
                            &range.meter,
                            customer,
                            range.start,
                            split,
                            Grouping::None,
                        )
                        .await?;
                    self.cache.keep(key, version, read.total.aggregate.clone());
                    read.total.aggregate
                }
            };
            total.merge(&closed).map_err(overflow)?;
        }
        Ok(planned
            .iter()
            .zip(ranges)
            .zip(totals)
            .map(|((plan, range), aggregate)| Usage {
                aggregation: plan.aggregation,
                total: Window {
                    start: range.start,
                    end: range.end,
                    aggregate,
                },
                windows: Vec::new(),
            })
            .collect())
    }
}
