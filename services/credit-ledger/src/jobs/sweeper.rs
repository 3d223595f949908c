//! The background worker that records expiries, evaluates the balance
//! alerts of changes caused by time alone, and forgets old idempotency keys.
//!
//! A grant's credits stop counting in `available_balance` at `expires_at`, but
//! the `credits_expired` debit is recorded only after a grace period (default
//! 24 h), so that invoices for periods ending before `expires_at` can still use
//! the grant while they finalize.
//!
//! Replicas split the sweep: each takes the leases of the due grants and
//! balances it lists (`billing_server::leases`) and works only on those it
//! got, so no two sweep one item at once and none repeats another's.

use std::collections::HashSet;
use std::time::Duration;

use billing_server::leases::{Leases, item_key};
use chrono::TimeDelta;
use tokio::sync::watch;

use crate::domain::grant::Grant;
use crate::domain::transaction::NewId;
use crate::error::LedgerError;
use crate::ops::Ledger;

/// How the sweeper runs.
#[derive(Debug, Clone)]
pub struct SweeperOptions {
    /// Time between sweeps.
    pub interval: Duration,
    /// How long after `expires_at` the expiry is recorded.
    pub grace: TimeDelta,
    /// Most grants expired per sweep; the next sweep continues.
    pub batch_max: i64,
    /// This replica's name, under which it leases what it sweeps
    /// (`LEDGER_INSTANCE`, else `HOSTNAME`, else `local`).
    pub instance: String,
}

impl Default for SweeperOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            grace: TimeDelta::hours(24),
            batch_max: 500,
            instance: "local".to_owned(),
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Grants whose expiry was recorded.
    pub grants_expired: usize,
    /// Balances re-evaluated because a grant became effective or expired.
    pub balances_evaluated: usize,
    /// Idempotency keys deleted.
    pub keys_purged: u64,
    /// Due grants and balances left to another replica sweeping them.
    pub leased_elsewhere: usize,
}

/// Lease jobs (`job_leases.job`).
const EXPIRE: &str = "expire_grant";
const REEVALUATE: &str = "reevaluate_balance";

/// Runs one sweep at the ledger clock's now.
pub async fn sweep_once(
    ledger: &Ledger,
    options: &SweeperOptions,
) -> Result<SweepReport, LedgerError> {
    let now = ledger.clock().now();
    let leases = Leases::new(ledger.store().db().clone(), &options.instance);
    let mut report = SweepReport::default();
    let due = ledger
        .store()
        .grants_due_for_expiry(now - options.grace, options.batch_max)
        .await?;
    let keys: Vec<String> = due.iter().map(|(a, id)| item_key(a, id)).collect();
    let mine = leases.take(EXPIRE, &keys).await?;
    report.leased_elsewhere += keys.len() - mine.len();
    let result = expire(ledger, due, &mine, now, &mut report).await;
    leases.give_back(EXPIRE, &mine).await;
    result?;
    // Balances moved by time alone (a grant became effective or passed
    // `expires_at`): their alerts fire within one interval of the change.
    let due = ledger.store().balances_due(now, options.batch_max).await?;
    let keys: Vec<String> = due
        .iter()
        .map(|b| item_key(&b.account, &format!("{}/{}", b.customer, b.asset.key())))
        .collect();
    let mine = leases.take(REEVALUATE, &keys).await?;
    report.leased_elsewhere += keys.len() - mine.len();
    let result = async {
        let taken: HashSet<&String> = mine.iter().collect();
        for (balance, key) in due.iter().zip(&keys) {
            if !taken.contains(key) {
                continue;
            }
            ledger.store().reevaluate(balance, now).await?;
            report.balances_evaluated += 1;
        }
        Ok::<_, LedgerError>(())
    }
    .await;
    leases.give_back(REEVALUATE, &mine).await;
    result?;
    let cutoff = now - TimeDelta::days(billing_db::idempotency::RETENTION_DAYS);
    report.keys_purged = ledger
        .store()
        .purge_idempotency_keys(cutoff.timestamp_micros())
        .await?;
    Ok(report)
}

/// Records the expiry of the due grants this replica leased (`mine`).
async fn expire(
    ledger: &Ledger,
    due: Vec<(String, String)>,
    mine: &[String],
    now: chrono::DateTime<chrono::Utc>,
    report: &mut SweepReport,
) -> Result<(), LedgerError> {
    let taken: HashSet<&String> = mine.iter().collect();
    for (account, id) in due {
        if !taken.contains(&item_key(&account, &id)) {
            continue;
        }
        let change = Box::new(move |grant: &mut Grant, new_id: NewId<'_>| {
            // Re-checked under the lock: the grant may have changed since it was listed.
            match grant.expires_at {
                Some(at) if grant.voided_at.is_none() && grant.available > 0 => {
                    grant.updated = now;
                    Ok(grant.record_expiry(at, now, new_id)?)
                }
                _ => Ok(Vec::new()),
            }
        });
        ledger
            .store()
            .change_grant(&account, &id, None, now, change)
            .await?;
        report.grants_expired += 1;
    }
    Ok(())
}

/// Sweeps every `options.interval` until `stop` turns true.
pub async fn run(ledger: Ledger, options: SweeperOptions, mut stop: watch::Receiver<bool>) {
    // What a dead predecessor of this instance's name leased is free now.
    let leases = Leases::new(ledger.store().db().clone(), &options.instance);
    match leases.give_back_all().await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "gave back leases held before a restart"),
        Err(error) => tracing::warn!(%error, "could not give back this instance's old leases"),
    }
    loop {
        match sweep_once(&ledger, &options).await {
            Ok(report)
                if report.grants_expired > 0
                    || report.balances_evaluated > 0
                    || report.keys_purged > 0 =>
            {
                tracing::info!(
                    grants_expired = report.grants_expired,
                    balances_evaluated = report.balances_evaluated,
                    keys_purged = report.keys_purged,
                    "sweep"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "expiry sweep failed; retrying next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
