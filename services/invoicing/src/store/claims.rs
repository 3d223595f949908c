//! Invoice claims and the saga attempt log (ops/claims.rs; migrations 0014
//! and 0016).

use billing_db::Tx;

use super::invoices::work_item;
use super::{Store, WorkItem};
use crate::error::InvoicingError;

/// A run's claim on an invoice: the instance holding it, now and the end
/// of its lease (system clock, microseconds).
#[derive(Debug, Clone, Copy)]
pub struct ClaimTerms<'a> {
    /// The replica's instance name.
    pub instance: &'a str,
    /// When the claim is taken.
    pub now_us: i64,
    /// When it runs out if never given back.
    pub until_us: i64,
}

/// How a saga run ended, in the attempt log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run completed the finalize (in the completion's transaction).
    Completed,
    /// The run ended without a failure and gave the claim back (a void,
    /// or nothing left to do).
    Released,
    /// A step failed; the invoice waits for its retry.
    Error,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Released => "released",
            Self::Error => "error",
        }
    }
}

/// The claim taken in `tx` when the invoice is free, expired, or already
/// `terms.instance`'s, and its run opened in the attempt log; whether it
/// was.
async fn claim_in(
    tx: &mut Tx,
    (account, id): (&str, &str),
    terms: ClaimTerms<'_>,
) -> Result<bool, InvoicingError> {
    let claimed = sqlx::query(
        "UPDATE invoices SET claimed_by = $3, claimed_until_us = $5 \
         WHERE account = $1 AND id = $2 \
         AND (claimed_until_us IS NULL OR claimed_until_us <= $4 OR claimed_by = $3)",
    )
    .bind(account)
    .bind(id)
    .bind(terms.instance)
    .bind(terms.now_us)
    .bind(terms.until_us)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 1 {
        open_run(tx, (account, id), terms).await?;
    }
    Ok(claimed == 1)
}

/// Opens a run of `terms.instance` on the invoice in the attempt log,
/// unless that instance has one open (the freeze of a run that claimed
/// the invoice first), with how many other instances' runs were open then.
/// The caller holds the invoice's row (its claim's UPDATE), so that count
/// is exact: above 0 only when a claim was taken over from a run that
/// never ended (its process died, or overran its lease).
pub(super) async fn open_run(
    tx: &mut Tx,
    (account, id): (&str, &str),
    terms: ClaimTerms<'_>,
) -> Result<(), InvoicingError> {
    sqlx::query(
        "INSERT INTO invoice_saga_runs (account, invoice, id, instance, started_us, others_open) \
         SELECT $1, $2, $3, $4, $5, (SELECT COUNT(*) FROM invoice_saga_runs \
         WHERE account = $1 AND invoice = $2 AND instance <> $4 AND ended_us IS NULL) \
         WHERE NOT EXISTS (SELECT 1 FROM invoice_saga_runs \
         WHERE account = $1 AND invoice = $2 AND instance = $4 AND ended_us IS NULL)",
    )
    .bind(account)
    .bind(id)
    .bind(billing_server::ids::new_id("run"))
    .bind(terms.instance)
    .bind(terms.now_us)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Closes `instance`'s open run on the invoice, if any.
pub(super) async fn close_run(
    tx: &mut Tx,
    (account, id): (&str, &str),
    instance: &str,
    now_us: i64,
    outcome: RunOutcome,
) -> Result<(), InvoicingError> {
    sqlx::query(
        "UPDATE invoice_saga_runs SET ended_us = $4, outcome = $5 \
         WHERE account = $1 AND invoice = $2 AND instance = $3 AND ended_us IS NULL",
    )
    .bind(account)
    .bind(id)
    .bind(instance)
    .bind(now_us)
    .bind(outcome.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Claims invoice `id` for `terms.instance` if it is free, expired, or
    /// already that instance's (a run of this process holds it only once:
    /// ops/claims.rs), and opens the run in the attempt log; whether it did.
    pub async fn claim_invoice(
        &self,
        account: &str,
        id: &str,
        terms: ClaimTerms<'_>,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let claimed = claim_in(&mut tx, (account, id), terms).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Claims up to `limit` invoices left mid-saga (`finalizing`,
    /// `voiding`) whose retry time has come at `now_us` (the service's
    /// clock) and that no live run holds at `terms.now_us`, opening their
    /// runs, in one transaction: the worker's batch. On PostgreSQL rows
    /// another replica is claiming are skipped (`SKIP LOCKED`), so two
    /// replicas get disjoint batches; SQLite's one writer does the same.
    pub async fn claim_unfinished(
        &self,
        now_us: i64,
        limit: i64,
        terms: ClaimTerms<'_>,
    ) -> Result<Vec<WorkItem>, InvoicingError> {
        let skip_locked = match self.db.backend() {
            billing_db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            billing_db::Backend::Sqlite => "",
        };
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "UPDATE invoices SET claimed_by = $4, claimed_until_us = $5 \
             WHERE (account, id) IN (SELECT account, id FROM invoices \
             WHERE status IN ('finalizing', 'voiding') \
             AND (step_retry_at_us IS NULL OR step_retry_at_us <= $1) \
             AND (claimed_until_us IS NULL OR claimed_until_us <= $3) \
             ORDER BY updated_us LIMIT $2{skip_locked}) \
             RETURNING account, id, status"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_us)
            .bind(limit)
            .bind(terms.now_us)
            .bind(terms.instance)
            .bind(terms.until_us)
            .fetch_all(&mut *tx)
            .await?;
        let items = rows.iter().map(work_item).collect::<Result<Vec<_>, _>>()?;
        for item in &items {
            open_run(&mut tx, (&item.account, &item.invoice), terms).await?;
        }
        tx.commit().await?;
        Ok(items)
    }

    /// Gives `instance`'s claim on invoice `id` back and closes its run.
    pub async fn release_invoice(
        &self,
        (account, id): (&str, &str),
        instance: &str,
        now_us: i64,
        outcome: RunOutcome,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE invoices SET claimed_by = NULL, claimed_until_us = NULL \
             WHERE account = $1 AND id = $2 AND claimed_by = $3",
        )
        .bind(account)
        .bind(id)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
        close_run(&mut tx, (account, id), instance, now_us, outcome).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives back every claim held under `instance` and closes its open
    /// runs as abandoned: a process starting under that name runs nothing
    /// yet, so they are a dead predecessor's.
    pub async fn release_instance_claims(
        &self,
        instance: &str,
        now_us: i64,
    ) -> Result<u64, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let released = sqlx::query(
            "UPDATE invoices SET claimed_by = NULL, claimed_until_us = NULL WHERE claimed_by = $1",
        )
        .bind(instance)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE invoice_saga_runs SET ended_us = $2, outcome = 'abandoned' \
             WHERE instance = $1 AND ended_us IS NULL",
        )
        .bind(instance)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(released)
    }
}
