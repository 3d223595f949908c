//! The usage threshold worker (DESIGN.md §12): each threshold a
//! subscription's usage passes in a period fires
//! `subscription.usage_exceeded_threshold` once, keyed by (subscription,
//! period, threshold) in the store.

use std::collections::BTreeMap;

use super::Invoicing;
use crate::domain::realtime::{self, UsageThresholdCrossing};
use crate::domain::subscription::Subscription;
use crate::error::InvoicingError;

/// Subscriptions the usage threshold worker looks at per tick.
const WATCHED_PER_TICK: i64 = 200;

impl Invoicing {
    /// One round of the usage threshold worker: subscriptions with
    /// thresholds after `after`, each threshold passed in the current
    /// period recorded (with its event) once. Returns (events fired,
    /// failures, where the next round starts).
    pub async fn run_usage_thresholds(
        &self,
        after: Option<(String, String)>,
    ) -> Result<(usize, usize, Option<(String, String)>), InvoicingError> {
        let cursor = after.as_ref().map(|(a, i)| (a.as_str(), i.as_str()));
        let watched = self
            .store
            .watched_subscriptions(cursor, WATCHED_PER_TICK)
            .await?;
        let next = if i64::try_from(watched.len()).unwrap_or(i64::MAX) < WATCHED_PER_TICK {
            None
        } else {
            watched.last().map(|(a, s)| (a.clone(), s.id.clone()))
        };
        let (mut fired, mut failed) = (0, 0);
        for (account, sub) in &watched {
            match self.check_thresholds(account, sub).await {
                Ok(count) => fired += count,
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%error, subscription = %sub.id, "usage thresholds failed; retried next tick");
                }
            }
        }
        Ok((fired, failed, next))
    }

    async fn check_thresholds(
        &self,
        account: &str,
        sub: &Subscription,
    ) -> Result<usize, InvoicingError> {
        let period_start_us = billing_server::time::to_micros(sub.period_start);
        let fired = self
            .store
            .fired_thresholds(account, &sub.id, period_start_us)
            .await?;
        let thresholds = &sub.controls.usage_thresholds;
        let mut meters: Vec<&str> = thresholds
            .iter()
            .enumerate()
            .filter(|(i, _)| !fired.contains(i))
            .map(|(_, t)| t.meter.as_str())
            .collect();
        meters.sort_unstable();
        meters.dedup();
        if meters.is_empty() {
            return Ok(0);
        }
        let ranges: Vec<(&str, _, _)> = meters
            .iter()
            .map(|meter| (*meter, sub.period_start, sub.period_end))
            .collect();
        let usages = self
            .upstream
            .usages(account, &sub.customer, &ranges)
            .await?;
        let usage: BTreeMap<String, _> =
            meters.iter().map(|m| (*m).to_owned()).zip(usages).collect();
        let now = self.clock.now();
        let mut count = 0;
        for index in realtime::thresholds_passed(thresholds, &usage, &fired) {
            let threshold = thresholds[index].clone();
            let crossing = UsageThresholdCrossing {
                subscription: sub.id.clone(),
                customer: sub.customer.clone(),
                threshold_index: index,
                usage: usage.get(&threshold.meter).copied().unwrap_or_default(),
                threshold,
                period_start: sub.period_start,
                period_end: sub.period_end,
                created: now,
            };
            if self.store.record_crossing(account, &crossing).await? {
                super::failpoint("after_threshold_crossing");
                count += 1;
            }
        }
        Ok(count)
    }
}
