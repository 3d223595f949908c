//! The delivery worker: claims due deliveries with a lease, sends them
//! concurrently and records each attempt. A crash loses nothing: a claimed
//! delivery whose outcome was not recorded is taken again when its lease
//! runs out (at least once; receivers dedupe on `webhook-id`).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures_util::StreamExt;

use super::Wakers;
use super::sender::Sender;
use crate::domain::schedule::RetrySchedule;
use crate::error::NotifierError;
use crate::ops::Notifier;
use crate::store::{Claimed, Outcome};

/// How long a claimed delivery is someone's: longer than an attempt can take.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);
/// How long finished deliveries and received events are kept.
pub const RETENTION: TimeDelta = TimeDelta::days(30);

/// The worker.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// The use cases.
    pub notifier: Notifier,
    /// HTTP.
    pub sender: Sender,
    /// When to retry.
    pub schedule: RetrySchedule,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Woken by the followers.
    pub wakers: Arc<Wakers>,
}

impl Deliverer {
    /// Claims and sends one batch of due deliveries; returns how many.
    pub async fn tick(&self) -> Result<usize, NotifierError> {
        let store = self.notifier.store();
        let now = self.notifier.clock().now();
        let limit = i64::try_from(self.concurrency * 4).unwrap_or(128);
        let claimed = store.claim_due(now, LEASE, limit).await?;
        let count = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(self.concurrency.max(1), |claimed| async move {
                if let Err(error) = self.attempt(&claimed).await {
                    // The lease runs out and the delivery is tried again.
                    tracing::warn!(delivery = %claimed.id, %error, "delivery attempt not recorded");
                }
            })
            .await;
        Ok(count)
    }

    async fn attempt(&self, claimed: &Claimed) -> Result<(), NotifierError> {
        let store = self.notifier.store();
        let clock = self.notifier.clock();
        let target = store.target(claimed, clock.now()).await?;
        let (endpoint, outcome) = match &target {
            None => (
                None,
                Outcome::Dropped {
                    reason: "the endpoint was deleted".into(),
                },
            ),
            Some(target) => match &target.disabled_reason {
                Some(reason) => (
                    Some(target.endpoint.as_str()),
                    Outcome::Dropped {
                        reason: format!("the endpoint is disabled ({reason})"),
                    },
                ),
                None => (
                    Some(target.endpoint.as_str()),
                    self.sender.send(target, clock.now()).await,
                ),
            },
        };
        store
            .record(claimed, endpoint, &outcome, &self.schedule, clock.now())
            .await
    }

    /// Delivers until `stop` turns true: at once when woken, else every
    /// `interval`; forgets old records hourly.
    pub async fn run(self, interval: Duration, mut stop: billing_server::host::Stop) {
        let mut purged_at = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let busy = match self.tick().await {
                Ok(count) => count > 0,
                Err(error) => {
                    tracing::warn!(%error, "delivery tick failed; retrying");
                    false
                }
            };
            let now = self.notifier.clock().now();
            if purged_at.is_none_or(|at| now - at > TimeDelta::hours(1)) {
                purged_at = Some(now);
                let cutoff = billing_server::time::to_micros(now - RETENTION);
                if let Err(error) = self.notifier.store().purge(cutoff).await {
                    tracing::warn!(%error, "purge failed");
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.wakers.deliveries.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }
}
