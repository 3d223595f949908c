//! Claims on invoices' sagas (issue 19; docs/operations.md).
//!
//! A saga's steps are idempotent, so two runs of one invoice's saga at once
//! lose nothing, but they double the ledger calls and contend on the same
//! rows: a replica's worker resuming an invoice that a live FinalizeInvoice
//! is still working on, or the workers of two replicas walking the same
//! unfinished invoices. So every saga run (live call, resume, auto-finalize)
//! first claims its invoice:
//! - in the process, a set of the invoices it is working on;
//! - across processes, the invoice's `claimed_by` / `claimed_until_us`
//!   columns: taken when free, expired, or held under this process's own
//!   instance name (a restarted process takes over what it held before it
//!   died), released when the run ends. A crashed replica's claims expire
//!   after [`CLAIM_LEASE`] and are then anyone's.
//!
//! A live call that finds its invoice claimed waits for the other run to
//! end (a double submit gets the first one's answer), up to [`CLAIM_WAIT`],
//! then answers ABORTED (`INVOICE_BUSY`, retry); the worker skips the
//! invoice at once. The
//! lease runs on the system clock whatever the test clock says: it is
//! about processes, not billing time.
//!
//! The live finalize of a draft, the hot path, writes no claim of its own:
//! its freeze takes the claim in the same statement that moves the draft
//! to `finalizing`, and its completion gives it back in the same
//! transaction that moves it on (`finalize_draft` below). Only a run
//! that does not start from a draft claims in a transaction of its own.
//!
//! Every run is written to the attempt log (`invoice_saga_runs`): opened
//! with its claim, closed with its release, so that two runs of one
//! invoice that overlapped would show.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use billing_server::clock::Clock;
use billing_server::time::to_micros;
use chrono::TimeDelta;

use super::Invoicing;
use crate::domain::invoice::{Invoice, Status};
use crate::error::InvoicingError;
use crate::store::{ClaimTerms, RunOutcome};

/// How long a claim holds when its process does not release it (a crash).
pub const CLAIM_LEASE: TimeDelta = TimeDelta::seconds(120);

/// How long a live call waits for another run on its invoice to end.
pub const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// This process's claims.
#[derive(Debug, Clone)]
pub struct Claims {
    instance: Arc<str>,
    running: Arc<Mutex<HashSet<(String, String)>>>,
}

impl Claims {
    /// Claims held under `instance` (`INVOICING_INSTANCE`, the pod's name).
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.into(),
            running: Arc::default(),
        }
    }

    /// The instance name claims are held under.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

/// Takes an invoice out of the process's set when its run ends, however.
pub(crate) struct Running<'a> {
    claims: &'a Claims,
    key: (String, String),
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.claims
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl Invoicing {
    /// Runs `work` (a saga run on invoice `id`) holding the invoice's claim.
    /// When another run holds it: with `wait`, waits for it (up to
    /// [`CLAIM_WAIT`]) and then runs `work`, which finds the other run's
    /// result; without, `Busy` at once (the worker moves on).
    pub(crate) async fn claimed<T>(
        &self,
        (account, id): (&str, &str),
        wait: bool,
        work: impl Future<Output = Result<T, InvoicingError>>,
    ) -> Result<T, InvoicingError> {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        let running = loop {
            if let Some(running) = self.try_claim(account, id).await? {
                break running;
            }
            if !wait || tokio::time::Instant::now() >= deadline {
                return Err(InvoicingError::Busy(id.to_owned()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        };
        let result = work.await;
        self.release((account, id), result.is_ok()).await;
        drop(running);
        result
    }

    /// Gives this process's claim on an invoice back and closes its run.
    pub(crate) async fn release(&self, (account, id): (&str, &str), ok: bool) {
        let outcome = if ok {
            RunOutcome::Released
        } else {
            RunOutcome::Error
        };
        let now = to_micros(Clock::system().now());
        let instance = self.claims.instance();
        if let Err(error) = self
            .store
            .release_invoice((account, id), instance, now, outcome)
            .await
        {
            // It expires by itself.
            tracing::warn!(%error, invoice = id, "could not release an invoice's claim");
        }
    }

    /// The terms of a claim taken now by this process.
    pub(crate) fn claim_terms(&self) -> ClaimTerms<'_> {
        let now = Clock::system().now();
        ClaimTerms {
            instance: self.claims.instance(),
            now_us: to_micros(now),
            until_us: to_micros(now + CLAIM_LEASE),
        }
    }

    /// Marks invoice `id` as run by this process, unless a run of this
    /// process has it already; the mark goes when the guard drops.
    pub(crate) fn running(&self, account: &str, id: &str) -> Option<Running<'_>> {
        let key = (account.to_owned(), id.to_owned());
        let inserted = self
            .claims
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        inserted.then_some(Running {
            claims: &self.claims,
            key,
        })
    }

    /// The claim on invoice `id`, if no other run holds it.
    async fn try_claim(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Running<'_>>, InvoicingError> {
        let Some(running) = self.running(account, id) else {
            return Ok(None);
        };
        if self
            .store
            .claim_invoice(account, id, self.claim_terms())
            .await?
        {
            return Ok(Some(running));
        }
        // No such invoice in the account is its NOT_FOUND.
        self.invoice(account, id).await?;
        Ok(None)
    }
}

/// The saga runs that start here: the worker's resume (claimed in its
/// batch) and auto-finalize (claimed first, without waiting), and the live
/// finalize of a draft (claimed by its freeze). Live voids and the other finalizes claim
/// through [`Invoicing::claimed`] in saga.rs.
impl Invoicing {
    /// The worker's resume of an invoice its batch claimed
    /// (`Store::claim_unfinished`): the saga's remaining steps, then the
    /// claim given back. None when a live call of this process is on it
    /// (its claim is this instance's too; that call gives it back), or it
    /// is no longer mid-saga, so nothing is counted twice.
    pub async fn resume_claimed(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Invoice>, InvoicingError> {
        let Some(running) = self.running(account, id) else {
            return Ok(None);
        };
        let result = async {
            let invoice = self.invoice(account, id).await?;
            Ok(match invoice.status {
                Status::Finalizing => Some(self.complete_finalize(account, invoice).await?),
                Status::Voiding => Some(self.complete_void(account, invoice).await?),
                _ => None,
            })
        }
        .await;
        self.release((account, id), result.is_ok()).await;
        drop(running);
        result
    }

    /// The worker's finalize of a draft past its grace: `Busy` at once when
    /// another run holds it; None when it is no longer a draft.
    pub async fn auto_finalize(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Invoice>, InvoicingError> {
        self.claimed((account, id), false, async {
            if self.invoice(account, id).await?.status != Status::Draft {
                return Ok(None);
            }
            self.finalize_claimed(account, id).await.map(Some)
        })
        .await
    }

    /// The live finalize of a draft without a claim of its own: its freeze
    /// takes the claim and its completion gives it back (ops/claims.rs).
    /// None when that does not apply (not a draft, run in this process
    /// already, frozen or held by another run): the caller claims first.
    pub(super) async fn finalize_draft(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Invoice>, InvoicingError> {
        let Some(running) = self.running(account, id) else {
            return Ok(None);
        };
        let mut invoice = self.invoice(account, id).await?;
        if invoice.status != Status::Draft || !self.freeze_draft(account, &mut invoice).await? {
            return Ok(None);
        }
        let result = self.complete_finalize(account, invoice).await;
        if result.is_err() {
            // A completion gives the claim back itself; a failed step does not.
            self.release((account, id), false).await;
        }
        drop(running);
        result.map(Some)
    }
}
