//! The saga's writes on an invoice: freeze (step 1), complete (step 3),
//! the other status changes, and a failed step's record (ops/saga.rs).

use billing_server::time::to_micros;
use chrono::{DateTime, Utc};

use super::Store;
use super::claims::{ClaimTerms, RunOutcome, close_run, open_run};
use super::events::push_invoice;
use super::invoices::CLEAR_STEP_ERROR;
use crate::domain::invoice::{INVOICE_FINALIZED, Invoice, Status, StepError};
use crate::error::InvoicingError;
use billing_db::events::Outbox;

impl Store {
    /// Saga step 1: `draft → finalizing` with these (re-priced) lines frozen,
    /// under the run's claim, taken in the same statement when the caller
    /// does not hold it yet (ops/claims.rs: the live finalize of a draft
    /// writes no claim of its own). False when the invoice was no longer a
    /// draft, or another run holds it.
    pub async fn freeze(
        &self,
        account: &str,
        invoice: &Invoice,
        now: DateTime<Utc>,
        claim: ClaimTerms<'_>,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "UPDATE invoices SET status = 'finalizing', auto_finalize_at_us = NULL, updated_us = $1, \
             claimed_by = $4, claimed_until_us = $5{CLEAR_STEP_ERROR} \
             WHERE account = $2 AND id = $3 AND status = 'draft' \
             AND (claimed_until_us IS NULL OR claimed_until_us <= $6 OR claimed_by = $4)"
        );
        let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(now))
            .bind(account)
            .bind(&invoice.id)
            .bind(claim.instance)
            .bind(claim.until_us)
            .bind(claim.now_us)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        open_run(&mut tx, (account, &invoice.id), claim).await?;
        if !invoice.lines.is_empty() {
            let sql = update_lines_sql(
                invoice.lines.len(),
                &[
                    ("usage", "TEXT"),
                    ("quantity", "TEXT"),
                    ("unit_amount_decimal", "TEXT"),
                    ("amount", "BIGINT"),
                    ("conversion_currency", "TEXT"),
                    ("conversion_unit_amount", "TEXT"),
                ],
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account)
                .bind(&invoice.id);
            for line in &invoice.lines {
                let rate = line.conversion.map(|c| c.rate);
                query = query
                    .bind(&line.id)
                    .bind(line.usage.to_string())
                    .bind(line.quantity.to_string())
                    .bind(line.unit_amount.map(|u| u.to_string()))
                    .bind(line.amount)
                    .bind(rate.map(|r| r.currency.code().to_owned()))
                    .bind(rate.map(|r| r.unit_amount.to_string()));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Saga step 3: stores the credits of `invoice`'s lines and moves it from
    /// `finalizing` to `open` or `paid`, with the `invoice.finalized` event;
    /// the claim is given back and `instance`'s run closed in the same
    /// transaction (`real_now_us`: system clock). False when another caller
    /// completed it first.
    pub async fn complete_finalize(
        &self,
        account: &str,
        invoice: &Invoice,
        now: DateTime<Utc>,
        (instance, real_now_us): (&str, i64),
    ) -> Result<bool, InvoicingError> {
        let status = invoice.finalized_status()?;
        let now_us = to_micros(now);
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "UPDATE invoices SET status = $1, finalized_us = $2, paid_us = $3, updated_us = $2, \
             claimed_by = NULL, claimed_until_us = NULL{CLEAR_STEP_ERROR} \
             WHERE account = $4 AND id = $5 AND status = 'finalizing'"
        );
        let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.as_str())
            .bind(now_us)
            .bind((status == Status::Paid).then_some(now_us))
            .bind(account)
            .bind(&invoice.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let credited: Vec<_> = invoice
            .lines
            .iter()
            .filter(|l| l.credits_applied > 0 || l.converted_due().is_some())
            .collect();
        if !credited.is_empty() {
            let sql = update_lines_sql(
                credited.len(),
                &[
                    ("credits_applied", "BIGINT"),
                    ("converted_amount", "BIGINT"),
                ],
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account)
                .bind(&invoice.id);
            for line in &credited {
                query = query
                    .bind(&line.id)
                    .bind(line.credits_applied)
                    .bind(line.converted_due().map(|(_, due)| due));
            }
            query.execute(&mut *tx).await?;
        }
        let rows: Vec<_> = invoice
            .lines
            .iter()
            .flat_map(|l| l.applications.iter().map(move |a| (&l.id, a)))
            .collect();
        if !rows.is_empty() {
            let sql = format!(
                "INSERT INTO invoice_credit_applications (account, invoice, position, line, credit_grant, amount, \
                 credit_balance_transaction) VALUES {}",
                billing_db::sql::values_rows(rows.len(), 7, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (position, (line, application)) in rows.iter().enumerate() {
                query = query
                    .bind(account)
                    .bind(&invoice.id)
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(*line)
                    .bind(&application.credit_grant)
                    .bind(application.amount)
                    .bind(&application.credit_balance_transaction);
            }
            query.execute(&mut *tx).await?;
        }
        let mut outbox = Outbox::new();
        push_invoice(
            &mut tx,
            &mut outbox,
            account,
            (INVOICE_FINALIZED, &invoice.id),
        )
        .await?;
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        close_run(
            &mut tx,
            (account, &invoice.id),
            instance,
            real_now_us,
            RunOutcome::Completed,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves an invoice `from → to` (with the event), stamping `column`.
    /// False when it was not in `from`.
    pub async fn transition(
        &self,
        account: &str,
        id: &str,
        from: Status,
        to: Status,
        event: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, InvoicingError> {
        let stamp = match to {
            Status::Paid => ", paid_us = $1",
            Status::Void => ", voided_us = $1",
            _ => "",
        };
        let sql = format!(
            "UPDATE invoices SET status = $2, updated_us = $1{stamp}{CLEAR_STEP_ERROR} \
             WHERE account = $3 AND id = $4 AND status = $5"
        );
        let now_us = to_micros(now);
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_us)
            .bind(to.as_str())
            .bind(account)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let backend = self.db.backend();
        commit_transition(tx, backend, changed, (account, id), event, now_us).await
    }

    /// Records a failed attempt at completing `status` (`finalizing` or
    /// `voiding`); nothing when the invoice has moved on meanwhile.
    pub async fn record_step_error(
        &self,
        account: &str,
        id: &str,
        status: Status,
        error: &StepError,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE invoices SET step_error_code = $1, step_error_message = $2, step_failed_us = $3, \
             step_attempts = $4, step_retry_at_us = $5 WHERE account = $6 AND id = $7 AND status = $8",
        )
        .bind(&error.code)
        .bind(&error.message)
        .bind(to_micros(error.failed_at))
        .bind(error.attempts)
        .bind(error.next_attempt_at.map(to_micros))
        .bind(account)
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a saga the peer refused: `from` (`finalizing` or `voiding`) goes
    /// back to `to` (`draft` or `open`) with the refusal recorded and no
    /// automatic retry (a draft also loses its auto-finalize time), and the
    /// `event` is written with the change. False when the invoice has moved
    /// on meanwhile (another caller completed it).
    pub async fn return_refused(
        &self,
        account: &str,
        id: &str,
        (from, to): (Status, Status),
        error: &StepError,
        event: &str,
    ) -> Result<bool, InvoicingError> {
        let now_us = to_micros(error.failed_at);
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE invoices SET status = $1, updated_us = $2, auto_finalize_at_us = NULL, \
             step_error_code = $3, step_error_message = $4, step_failed_us = $2, \
             step_attempts = $5, step_retry_at_us = NULL \
             WHERE account = $6 AND id = $7 AND status = $8",
        )
        .bind(to.as_str())
        .bind(now_us)
        .bind(&error.code)
        .bind(&error.message)
        .bind(error.attempts)
        .bind(account)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let backend = self.db.backend();
        commit_transition(tx, backend, changed, (account, id), Some(event), now_us).await
    }
}

/// Ends a conditional status change: nothing changed (the invoice had
/// moved on) rolls back and is false; else its event, if any, is written in
/// the same transaction and it commits.
async fn commit_transition(
    mut tx: billing_db::Tx,
    backend: billing_db::Backend,
    changed: u64,
    (account, id): (&str, &str),
    event: Option<&str>,
    now_us: i64,
) -> Result<bool, InvoicingError> {
    if changed == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(event) = event {
        let mut outbox = Outbox::new();
        push_invoice(&mut tx, &mut outbox, account, (event, id)).await?;
        outbox.write(&mut tx, backend, account, now_us).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// One UPDATE of several lines of an invoice: `$1` account, `$2` invoice,
/// then per line its id followed by one value per column. Each value is cast
/// to its column's type, so the statement's parameter types are fixed by its
/// text (the plan test prepares it without sqlx's bound types).
fn update_lines_sql(lines: usize, columns: &[(&str, &str)]) -> String {
    let stride = columns.len() + 1;
    let id = |line: usize| 3 + line * stride;
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(c, (column, sql_type))| {
            let whens: String = (0..lines)
                .map(|l| {
                    format!(
                        " WHEN ${} THEN CAST(${} AS {sql_type})",
                        id(l),
                        id(l) + 1 + c
                    )
                })
                .collect();
            format!("{column} = CASE id{whens} END")
        })
        .collect();
    let ids: Vec<String> = (0..lines).map(|l| format!("${}", id(l))).collect();
    format!(
        "UPDATE invoice_lines SET {} WHERE account = $1 AND invoice = $2 AND id IN ({})",
        sets.join(", "),
        ids.join(", ")
    )
}
