//! The delivery worker: claims due deliveries with a lease, sends each as
//! soon as one of `concurrency` slots is free (a slow endpoint holds one
//! slot, never the others), and records the outcomes in batches, one
//! transaction each. A crash loses nothing: a claimed delivery whose
//! outcome was not recorded is taken again when its lease runs out (at
//! least once; receivers dedupe on `webhook-id`).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::{Semaphore, mpsc};

use super::Wakers;
use super::sender::Sender;
use crate::domain::schedule::RetrySchedule;
use crate::error::NotifierError;
use crate::ops::Notifier;
use crate::store::{Attempt, Claimed, Outcome, Target};

/// How long a claimed delivery is someone's: longer than an attempt can take.
pub const LEASE: TimeDelta = TimeDelta::seconds(60);
/// How long finished deliveries and received events are kept.
pub const RETENTION: TimeDelta = TimeDelta::days(30);
/// Most outcomes recorded in one transaction.
const RECORD_BATCH: usize = 256;

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
    /// One attempt at a claimed delivery with what it is sent with (loaded
    /// when it was claimed), not yet recorded.
    async fn attempt(&self, claimed: Claimed, target: Option<Target>) -> Attempt {
        let clock = self.notifier.clock();
        let (endpoint, outcome, endpoint_failing) = match target {
            None => (
                None,
                Outcome::Dropped {
                    reason: "the endpoint was deleted".into(),
                },
                false,
            ),
            Some(target) => {
                let outcome = match &target.disabled_reason {
                    Some(reason) => Outcome::Dropped {
                        reason: format!("the endpoint is disabled ({reason})"),
                    },
                    None => self.sender.send(&target, clock.now()).await,
                };
                (Some(target.endpoint), outcome, target.failing)
            }
        };
        Attempt {
            claimed,
            endpoint,
            endpoint_failing,
            outcome,
            at: clock.now(),
        }
    }

    /// Claims up to `limit` due deliveries and loads what each is sent
    /// with, in bulk. (A change to an endpoint after this, such as a
    /// disable, reaches deliveries claimed later.)
    async fn claim(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<(Claimed, Option<Target>)>, NotifierError> {
        let store = self.notifier.store();
        let claimed = store.claim_due(now, LEASE, limit).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let targets = store.targets(&claimed, now).await?;
        Ok(claimed.into_iter().zip(targets).collect())
    }

    /// Records outcomes as they come, a batch per transaction.
    async fn record(self, mut outcomes: mpsc::Receiver<Attempt>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            if let Err(error) = self.notifier.store().record(&batch, &self.schedule).await {
                // Their leases run out and they are tried again.
                tracing::warn!(%error, attempts = batch.len(), "delivery outcomes not recorded");
            }
            batch.clear();
        }
    }

    /// Delivers until `stop` turns true: claims due deliveries in bulk, at
    /// once when woken, else every `interval`; forgets old records hourly.
    /// On stop, the attempts in flight finish and are recorded (claimed ones
    /// not started are taken again when their lease runs out).
    pub async fn run(self, interval: Duration, mut stop: billing_server::host::Stop) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let (outcomes, received) = mpsc::channel(RECORD_BATCH * 2);
        let recorder = tokio::spawn(self.clone().record(received));
        let mut queue: std::collections::VecDeque<(Claimed, Option<Target>)> =
            std::collections::VecDeque::new();
        let mut purged_at = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let now = self.notifier.clock().now();
            if purged_at.is_none_or(|at| now - at > TimeDelta::hours(1)) {
                purged_at = Some(now);
                let cutoff = billing_server::time::to_micros(now - RETENTION);
                if let Err(error) = self.notifier.store().purge(cutoff).await {
                    tracing::warn!(%error, "purge failed");
                }
            }
            // Claim in bulk (one transaction for many deliveries) while fewer
            // than `concurrency` wait; a claimed delivery waits at most two
            // rounds of attempts for a slot, well inside its lease.
            let width = self.concurrency.max(1);
            if queue.len() < width {
                let limit = i64::try_from(2 * width - queue.len()).unwrap_or(1);
                match self.claim(now, limit).await {
                    Ok(claimed) => queue.extend(claimed),
                    Err(error) => tracing::warn!(%error, "claiming deliveries failed; retrying"),
                }
            }
            let Some((claimed, target)) = queue.pop_front() else {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = self.wakers.deliveries.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let worker = self.clone();
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let attempt = worker.attempt(claimed, target).await;
                let _ = outcomes.send(attempt).await;
                drop(slot);
            });
        }
        // Let the attempts in flight finish (each holds a slot), then the
        // recorder drains what they sent.
        let all = u32::try_from(self.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            super::sender::ATTEMPT_TIMEOUT + Duration::from_secs(5),
            slots.acquire_many(all),
        )
        .await;
        drop(outcomes);
        let _ = recorder.await;
    }
}
