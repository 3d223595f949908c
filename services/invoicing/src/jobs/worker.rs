//! The background worker: closes ended subscription periods into drafts,
//! finalizes drafts whose grace period is over, and resumes invoices left
//! mid-saga (`finalizing`, `voiding`) after a crash or an outage, runs
//! auto top-ups, purchases, allocations and usage thresholds, and purges
//! expired `request_id` keys.
//!
//! Every step is idempotent and conditional, so several replicas may run
//! the worker at once, and none repeats another's work: a saga run first
//! claims its invoice (ops/claims.rs), the worker a whole batch of
//! unfinished invoices in one transaction (`SKIP LOCKED` on PostgreSQL),
//! so replicas get disjoint batches and stay off an invoice a live call is
//! working on; period closes,
//! purchases, allocation lines and each account's top-up feed are leased
//! per item (`billing_server::leases`), and the usage threshold round as a
//! whole. A step that fails is logged and retried: a saga step after its
//! invoice's backoff delay, anything else next tick.
//!
//! Resuming is bounded: at most [`WorkerOptions::concurrency`] invoices at a
//! time, and none started once the tick has run [`WorkerOptions::budget`],
//! so invoices stuck on a hung ledger cost about one deadline per
//! `concurrency` of them, and period closing still runs every tick; the
//! claims of those not started go back at once.

use std::sync::Arc;
use std::time::Duration;

use billing_server::leases::{Leases, item_key};
use futures_util::StreamExt;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::domain::invoice::Status;
use crate::domain::subscription::Subscription;
use crate::error::InvoicingError;
use crate::ops::{Invoicing, Progress};
use crate::store::{AllocationPeriod, WorkItem};

/// Items handled per kind and tick.
const BATCH: i64 = 200;

/// Lease jobs (`job_leases.job`) of the worker's steps.
const CLOSE_PERIODS: &str = "close_periods";
const PURCHASE: &str = "complete_purchase";
const ALLOCATION: &str = "allocation_line";
const TOP_UP_FEED: &str = "top_up_feed";
const THRESHOLDS: &str = "usage_threshold_round";

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Subscriptions whose ended periods were closed.
    pub subscriptions_closed: usize,
    /// Drafts finalized after their grace period.
    pub drafts_finalized: usize,
    /// Invoices resumed mid-saga.
    pub sagas_resumed: usize,
    /// Steps that failed (logged; retried later).
    pub failures: usize,
    /// Invoices due for resuming left for the next tick (the budget ran out).
    pub sagas_deferred: usize,
    /// Invoices skipped because another call or replica held them, or
    /// finished them meanwhile.
    pub sagas_claimed_elsewhere: usize,
    /// Allocation periods moved (a grant made, a rollover, a cancel expiry).
    pub allocations_moved: usize,
    /// Purchases whose saga was resumed.
    pub purchases_moved: usize,
    /// Ledger balance-drop events the auto top-ups decided on.
    pub top_up_events: usize,
    /// `subscription.usage_exceeded_threshold` events fired.
    pub thresholds_fired: usize,
    /// Due items (period closes, purchases, allocation lines, top-up
    /// feeds, the threshold round) another replica held.
    pub leased_elsewhere: usize,
    /// A full batch of unfinished invoices was listed and some resumed:
    /// more may be waiting, so the worker ticks again at once instead of
    /// sleeping.
    pub backlog: bool,
}

/// How much one tick may spend resuming invoices.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Invoices resumed at once.
    pub concurrency: usize,
    /// No resume starts after the tick has run this long.
    pub budget: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            budget: Duration::from_secs(30),
        }
    }
}

/// The worker; [`Worker::tick`] runs one pass (tests and the test clock call it).
#[derive(Debug, Clone)]
pub struct Worker {
    invoicing: Invoicing,
    options: WorkerOptions,
    /// This replica's leases on the steps' items.
    leases: Leases,
    /// One tick at a time per process; it holds where the usage threshold
    /// round continues (a round covers every watched subscription over
    /// as many ticks as it takes).
    running: Arc<Mutex<Option<(String, String)>>>,
}

impl Worker {
    /// A worker over the operations, with the default options.
    pub fn new(invoicing: Invoicing) -> Self {
        Self::with_options(invoicing, WorkerOptions::default())
    }

    /// A worker over the operations.
    pub fn with_options(invoicing: Invoicing, options: WorkerOptions) -> Self {
        let leases = Leases::new(invoicing.store().db().clone(), invoicing.instance());
        Self {
            invoicing,
            options,
            leases,
            running: Arc::new(Mutex::new(None)),
        }
    }

    /// Ticks every `interval` until `stop` turns true; a tick in progress
    /// finishes first (each step is a safe point).
    pub async fn run(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        // What a dead predecessor of this instance's name held is ours now.
        let instance = self.invoicing.instance().to_owned();
        let real_now =
            billing_server::time::to_micros(billing_server::clock::Clock::system().now());
        match self
            .invoicing
            .store()
            .release_instance_claims(&instance, real_now)
            .await
        {
            Ok(0) => {}
            Ok(released) => tracing::info!(
                released,
                instance,
                "took over invoices claimed before a restart"
            ),
            Err(error) => tracing::warn!(%error, "could not release this instance's old claims"),
        }
        match self.leases.give_back_all().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "gave back leases held before a restart"),
            Err(error) => tracing::warn!(%error, "could not give back this instance's old leases"),
        }
        loop {
            if self.tick().await.backlog && !*stop.borrow() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass over every kind of work (module docs), each step leased or
    /// claimed so that replicas split it.
    pub async fn tick(&self) -> TickReport {
        let mut thresholds_cursor = self.running.lock().await;
        let mut report = TickReport::default();
        let now = self.invoicing.clock().now();
        let store = self.invoicing.store();

        // Resume first: a restarted process finishes what it left behind
        // before it starts new sagas. The batch is claimed as it is listed,
        // so replicas get disjoint batches.
        let now_us = billing_server::time::to_micros(now);
        let terms = self.invoicing.claim_terms();
        let batch = self.resume_batch();
        match store.claim_unfinished(now_us, batch, terms).await {
            Ok(items) => {
                let full = items.len() >= usize::try_from(batch).unwrap_or(usize::MAX);
                self.resume(items, &mut report).await;
                // Only while it makes progress: failures wait for their retry.
                report.backlog = full && report.sagas_resumed > 0;
            }
            Err(error) => log_failure(&mut report.failures, "claim unfinished invoices", &error),
        }
        match store.due_subscriptions(now, BATCH).await {
            Ok(subs) => {
                let (subs, held) = self
                    .lease(CLOSE_PERIODS, subs, |(a, id)| item_key(a, id), &mut report)
                    .await;
                for (account, id) in subs {
                    let result = self.invoicing.close_periods(&account, &id).await;
                    count(
                        &mut report.subscriptions_closed,
                        &mut report.failures,
                        result,
                        "close period",
                        &id,
                    );
                }
                self.leases.give_back(CLOSE_PERIODS, &held).await;
            }
            Err(error) => log_failure(&mut report.failures, "list due subscriptions", &error),
        }
        // Auto top-ups first: their purchases are then finished below.
        match store.top_up_accounts().await {
            Ok(accounts) => {
                let (accounts, held) = self
                    .lease(TOP_UP_FEED, accounts, Clone::clone, &mut report)
                    .await;
                let (handled, failed) = self.invoicing.run_top_ups(&accounts).await;
                report.top_up_events += handled;
                report.failures += failed;
                self.leases.give_back(TOP_UP_FEED, &held).await;
            }
            Err(error) => log_failure(&mut report.failures, "list auto top-ups", &error),
        }
        match store.open_purchases(BATCH).await {
            Ok(purchases) => {
                let (purchases, held) = self
                    .lease(PURCHASE, purchases, |(a, id)| item_key(a, id), &mut report)
                    .await;
                for (account, id) in purchases {
                    let result = self.invoicing.complete_purchase(&account, &id).await;
                    count(
                        &mut report.purchases_moved,
                        &mut report.failures,
                        result,
                        "complete purchase",
                        &id,
                    );
                }
                self.leases.give_back(PURCHASE, &held).await;
            }
            Err(error) => log_failure(&mut report.failures, "list open purchases", &error),
        }
        let round = vec![THRESHOLDS.to_owned()];
        let (round, held) = self
            .lease(THRESHOLDS, round, Clone::clone, &mut report)
            .await;
        if !round.is_empty() {
            match self
                .invoicing
                .run_usage_thresholds(thresholds_cursor.take())
                .await
            {
                Ok((fired, failed, next)) => {
                    report.thresholds_fired += fired;
                    report.failures += failed;
                    *thresholds_cursor = next;
                }
                Err(error) => log_failure(&mut report.failures, "usage thresholds", &error),
            }
            self.leases.give_back(THRESHOLDS, &held).await;
        }
        match store.open_allocation_periods(BATCH).await {
            Ok(rows) => {
                // Per allocation line: its periods move in order.
                let line = |row: &AllocationPeriod| {
                    let line = format!("{}/{}", row.subscription, row.allocation);
                    item_key(&row.account, &line)
                };
                let (rows, held) = self.lease(ALLOCATION, rows, line, &mut report).await;
                self.allocations(rows, &mut report).await;
                self.leases.give_back(ALLOCATION, &held).await;
            }
            Err(error) => log_failure(&mut report.failures, "list allocation periods", &error),
        }
        // request_id keys are kept RETENTION_DAYS (DESIGN.md: at least 30 days).
        let cutoff = now - chrono::TimeDelta::days(billing_db::idempotency::RETENTION_DAYS);
        if let Err(error) = store
            .purge_idempotency_keys(billing_server::time::to_micros(cutoff))
            .await
        {
            log_failure(&mut report.failures, "purge idempotency keys", &error);
        }
        match store.due_drafts(now, BATCH).await {
            Ok(items) => {
                for item in items {
                    let result = match self
                        .invoicing
                        .auto_finalize(&item.account, &item.invoice)
                        .await
                    {
                        // Another run holds it, or finalized it meanwhile.
                        Ok(None) | Err(InvoicingError::Busy(_)) => {
                            report.sagas_claimed_elsewhere += 1;
                            continue;
                        }
                        other => other,
                    };
                    count(
                        &mut report.drafts_finalized,
                        &mut report.failures,
                        result,
                        "auto-finalize",
                        &item.invoice,
                    );
                }
            }
            Err(error) => log_failure(&mut report.failures, "list due drafts", &error),
        }
        report
    }
}

impl Worker {
    /// How many unfinished invoices one tick claims: four rounds of
    /// `concurrency`, at most [`BATCH`]. Small enough that a replica does
    /// not hold far more than it is working on, so replicas starting at
    /// different moments still share a backlog; the worker ticks again at
    /// once while batches come back full.
    fn resume_batch(&self) -> i64 {
        let rounds = self.options.concurrency.max(1).saturating_mul(4);
        i64::try_from(rounds).unwrap_or(BATCH).clamp(16, BATCH)
    }

    /// Takes the leases of `items` of `job` (keyed by `key`; several items
    /// may share a key): the items this replica got, and the keys to give
    /// back when done. Items another replica holds are counted; when the
    /// leases cannot be taken, none is worked on this tick.
    async fn lease<T>(
        &self,
        job: &str,
        items: Vec<T>,
        key: impl Fn(&T) -> String,
        report: &mut TickReport,
    ) -> (Vec<T>, Vec<String>) {
        let mut keys: Vec<String> = items.iter().map(&key).collect();
        keys.sort_unstable();
        keys.dedup();
        let held = match self.leases.take(job, &keys).await {
            Ok(held) => held,
            Err(error) => {
                log_failure(&mut report.failures, "take leases", &error.into());
                return (Vec::new(), Vec::new());
            }
        };
        report.leased_elsewhere += keys.len() - held.len();
        let mine: std::collections::HashSet<&String> = held.iter().collect();
        let items = items
            .into_iter()
            .filter(|item| mine.contains(&key(item)))
            .collect();
        (items, held)
    }

    /// Moves allocation periods, in period order per subscription and
    /// allocation; after a failure the rest of that allocation waits for the
    /// next tick (a later period's rollover needs the earlier one's).
    async fn allocations(&self, rows: Vec<AllocationPeriod>, report: &mut TickReport) {
        let mut sub: Option<Subscription> = None;
        let mut blocked: Option<(String, String, u32)> = None;
        for row in rows {
            let line = (
                row.account.clone(),
                row.subscription.clone(),
                row.allocation,
            );
            if blocked.as_ref() == Some(&line) {
                continue;
            }
            if sub.as_ref().is_none_or(|s| s.id != row.subscription) {
                match self
                    .invoicing
                    .subscription(&row.account, &row.subscription)
                    .await
                {
                    Ok(found) => sub = Some(found),
                    Err(error) => {
                        log_failure(&mut report.failures, "read subscription", &error);
                        blocked = Some(line);
                        continue;
                    }
                }
            }
            let Some(current) = sub.as_ref() else {
                continue;
            };
            match self.invoicing.advance_allocation(current, &row).await {
                Ok(Progress::Moved) => report.allocations_moved += 1,
                Ok(Progress::Waiting) => blocked = Some(line),
                Err(error) => {
                    report.failures += 1;
                    tracing::warn!(%error, subscription = %row.subscription, "allocation step failed; retried next tick");
                    blocked = Some(line);
                }
            }
        }
    }

    /// Resumes `items` at most `concurrency` at a time, starting none once
    /// the budget is spent (those are counted as deferred).
    async fn resume(&self, items: Vec<WorkItem>, report: &mut TickReport) {
        let started = Instant::now();
        let budget = self.options.budget;
        let outcomes: Vec<_> = futures_util::stream::iter(items)
            .map(|item| async move {
                if started.elapsed() >= budget {
                    // Its claim goes back for the next tick or replica.
                    let key = (item.account.as_str(), item.invoice.as_str());
                    self.invoicing.release(key, true).await;
                    return None;
                }
                let saga = match item.status {
                    Status::Voiding => "void",
                    _ => "finalize",
                };
                let result = self
                    .invoicing
                    .resume_claimed(&item.account, &item.invoice)
                    .await;
                Some((item.invoice, saga, result))
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            let Some((invoice, saga, result)) = outcome else {
                report.sagas_deferred += 1;
                continue;
            };
            match result {
                Ok(Some(_)) => self.invoicing.count_recovery(saga),
                // Another run holds it, or finished it meanwhile.
                Ok(None) | Err(InvoicingError::Busy(_)) => {
                    report.sagas_claimed_elsewhere += 1;
                    continue;
                }
                Err(_) => {}
            }
            count(
                &mut report.sagas_resumed,
                &mut report.failures,
                result,
                "resume",
                &invoice,
            );
        }
    }
}

fn count<T>(
    done: &mut usize,
    failures: &mut usize,
    result: Result<T, InvoicingError>,
    what: &str,
    id: &str,
) {
    match result {
        Ok(_) => *done += 1,
        Err(error) => {
            *failures += 1;
            tracing::warn!(%error, id, "{what} failed; retried later");
        }
    }
}

fn log_failure(failures: &mut usize, what: &str, error: &InvoicingError) {
    *failures += 1;
    tracing::warn!(%error, "{what} failed; retrying next tick");
}
