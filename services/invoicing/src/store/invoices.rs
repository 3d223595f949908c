//! Invoices, their lines and credit applications (the saga's writes:
//! saga.rs).

use billing_db::sql::Conditions;
use std::collections::HashMap;

use billing_money::{Asset, Conversion, Currency};
use billing_server::page::PageRequest;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, decimal};
use crate::domain::invoice::{
    BillingReason, CreditApplication, Invoice, Line, LineConversion, Status, StepError,
};
use crate::error::InvoicingError;

const COLUMNS: &str = "id, customer, subscription, status, billing_reason, period_start_us, period_end_us, \
    auto_finalize_at_us, finalized_us, paid_us, voided_us, created_us, step_error_code, step_error_message, \
    step_failed_us, step_attempts, step_retry_at_us";
/// Appended to every status change: a failed attempt belongs to the step
/// it failed in, and that step is over.
pub(super) const CLEAR_STEP_ERROR: &str = ", step_error_code = NULL, step_error_message = NULL, step_failed_us = NULL, \
    step_attempts = 0, step_retry_at_us = NULL";
const LINE_COLUMNS: &str = "invoice, id, price, meter, description, asset, asset_scale, usage, quantity, \
    unit_amount_decimal, amount, credits_applied, conversion_currency, conversion_unit_amount, converted_amount";
const LINE_COUNT: usize = 14;

/// Which invoices to list.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    /// Only this customer's.
    pub customer: Option<String>,
    /// Only this subscription's.
    pub subscription: Option<String>,
    /// Only in this status.
    pub status: Option<Status>,
}

/// An invoice a background worker should move on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// Its account.
    pub account: String,
    /// `in_…`
    pub invoice: String,
    /// Its status when found.
    pub status: Status,
}

fn header(row: &AnyRow) -> Result<Invoice, InvoicingError> {
    let status: String = row.try_get(3)?;
    let reason: String = row.try_get(4)?;
    let optional = |i: usize| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(i)?.map(from_micros))
    };
    Ok(Invoice {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        subscription: row.try_get(2)?,
        status: Status::parse(&status).ok_or_else(|| InvoicingError::Corrupt(status.clone()))?,
        reason: BillingReason::parse(&reason)
            .ok_or_else(|| InvoicingError::Corrupt(reason.clone()))?,
        period_start: from_micros(row.try_get(5)?),
        period_end: from_micros(row.try_get(6)?),
        lines: Vec::new(),
        auto_finalize_at: optional(7)?,
        finalized_at: optional(8)?,
        paid_at: optional(9)?,
        voided_at: optional(10)?,
        created: from_micros(row.try_get(11)?),
        step_error: step_error(row, 12)?,
    })
}

/// The step error columns from `first`, when an attempt failed.
fn step_error(row: &AnyRow, first: usize) -> Result<Option<StepError>, InvoicingError> {
    let Some(code) = row.try_get::<Option<String>, _>(first)? else {
        return Ok(None);
    };
    let required = |i: usize| -> Result<i64, InvoicingError> {
        row.try_get::<Option<i64>, _>(i)?
            .ok_or_else(|| InvoicingError::Corrupt(format!("step error without column {i}")))
    };
    Ok(Some(StepError {
        code,
        message: row
            .try_get::<Option<String>, _>(first + 1)?
            .unwrap_or_default(),
        failed_at: from_micros(required(first + 2)?),
        attempts: row.try_get(first + 3)?,
        next_attempt_at: row.try_get::<Option<i64>, _>(first + 4)?.map(from_micros),
    }))
}

fn line(row: &AnyRow) -> Result<(String, Line), InvoicingError> {
    let asset: String = row.try_get(5)?;
    let scale: i64 = row.try_get(6)?;
    let scale =
        u32::try_from(scale).map_err(|_| InvoicingError::Corrupt(format!("scale {scale}")))?;
    let usage: String = row.try_get(7)?;
    let quantity: String = row.try_get(8)?;
    let unit: Option<String> = row.try_get(9)?;
    let conversion = match (
        row.try_get::<Option<String>, _>(12)?,
        row.try_get::<Option<String>, _>(13)?,
    ) {
        (Some(currency), Some(rate)) => Some(LineConversion {
            rate: Conversion {
                currency: Currency::parse(&currency)?,
                unit_amount: decimal(&rate)?,
            },
            amount_due: row.try_get(14)?,
        }),
        _ => None,
    };
    Ok((
        row.try_get(0)?,
        Line {
            id: row.try_get(1)?,
            price: row.try_get(2)?,
            meter: row.try_get(3)?,
            description: row.try_get(4)?,
            asset: Asset::from_key(&asset, scale)?,
            usage: decimal(&usage)?,
            quantity: decimal(&quantity)?,
            unit_amount: unit.as_deref().map(decimal).transpose()?,
            amount: row.try_get(10)?,
            credits_applied: row.try_get(11)?,
            applications: Vec::new(),
            conversion,
        },
    ))
}

/// Inserts an invoice with its lines (one statement per table).
pub(super) async fn insert(
    tx: &mut billing_db::Tx,
    account: &str,
    invoice: &Invoice,
) -> Result<(), InvoicingError> {
    sqlx::query(
        "INSERT INTO invoices (account, id, customer, subscription, status, billing_reason, period_start_us, \
         period_end_us, auto_finalize_at_us, finalized_us, paid_us, voided_us, created_us, updated_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, NULL, $10, $10)",
    )
    .bind(account)
    .bind(&invoice.id)
    .bind(&invoice.customer)
    .bind(&invoice.subscription)
    .bind(invoice.status.as_str())
    .bind(invoice.reason.as_str())
    .bind(to_micros(invoice.period_start))
    .bind(to_micros(invoice.period_end))
    .bind(invoice.auto_finalize_at.map(to_micros))
    .bind(to_micros(invoice.created))
    .bind(invoice.finalized_at.map(to_micros))
    .bind(invoice.paid_at.map(to_micros))
    .execute(&mut **tx)
    .await?;
    if invoice.lines.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO invoice_lines (account, invoice, position, id, price, meter, description, asset, asset_scale, \
         usage, quantity, unit_amount_decimal, amount, credits_applied) VALUES {}",
        billing_db::sql::values_rows(invoice.lines.len(), LINE_COUNT, 1)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (position, line) in invoice.lines.iter().enumerate() {
        query = query
            .bind(account)
            .bind(&invoice.id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&line.id)
            .bind(&line.price)
            .bind(&line.meter)
            .bind(&line.description)
            .bind(line.asset.key())
            .bind(i64::from(line.asset.scale()))
            .bind(line.usage.to_string())
            .bind(line.quantity.to_string())
            .bind(line.unit_amount.map(|u| u.to_string()))
            .bind(line.amount)
            .bind(line.credits_applied);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Loads the lines and applications of `invoices` (two queries).
async fn fill(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    invoices: &mut [Invoice],
) -> Result<(), InvoicingError> {
    if invoices.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = invoices.iter().map(|i| i.id.clone()).collect();
    let list = billing_db::sql::list(ids.len(), 2);
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM invoice_lines WHERE account = $1 AND invoice IN ({list}) ORDER BY invoice, position"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let mut lines: HashMap<String, Vec<Line>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let (invoice, line) = line(&row)?;
        lines.entry(invoice).or_default().push(line);
    }
    let sql = format!(
        "SELECT invoice, line, credit_grant, amount, credit_balance_transaction FROM invoice_credit_applications \
         WHERE account = $1 AND invoice IN ({list}) ORDER BY invoice, position"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let mut applications: HashMap<(String, String), Vec<CreditApplication>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        applications
            .entry((row.try_get(0)?, row.try_get(1)?))
            .or_default()
            .push(CreditApplication {
                credit_grant: row.try_get(2)?,
                amount: row.try_get(3)?,
                credit_balance_transaction: row.try_get(4)?,
            });
    }
    for invoice in invoices.iter_mut() {
        invoice.lines = lines.remove(&invoice.id).unwrap_or_default();
        for line in &mut invoice.lines {
            line.applications = applications
                .remove(&(invoice.id.clone(), line.id.clone()))
                .unwrap_or_default();
        }
    }
    Ok(())
}

/// One invoice with its lines and applications, read on `tx` (so it shows
/// the transaction's own changes).
pub(super) async fn load(
    tx: &mut billing_db::Tx,
    account: &str,
    id: &str,
) -> Result<Option<Invoice>, InvoicingError> {
    let row = billing_db::sql::one_of_account(COLUMNS, "invoices", account, id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut invoices = vec![header(&row)?];
    fill(tx, account, &mut invoices).await?;
    Ok(invoices.pop())
}

impl Store {
    /// One invoice with its lines and applications.
    pub async fn invoice(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Invoice>, InvoicingError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "invoices", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut invoices = vec![header(&row)?];
        self.fill(account, &mut invoices).await?;
        Ok(invoices.pop())
    }

    /// A page of invoices, newest first.
    pub async fn list_invoices(
        &self,
        account: &str,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<(Vec<Invoice>, String), InvoicingError> {
        let rows = Conditions::new("account", account)
            .eq("customer", filter.customer.as_deref())
            .eq("subscription", filter.subscription.as_deref())
            .eq("status", filter.status.map(Status::as_str))
            .newest_first(
                &format!("SELECT {COLUMNS} FROM invoices"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let invoices = rows.iter().map(header).collect::<Result<Vec<_>, _>>()?;
        let (mut invoices, token) = page.finish(invoices, |i| &i.id);
        self.fill(account, &mut invoices).await?;
        Ok((invoices, token))
    }

    /// Loads the lines and applications of `invoices`.
    async fn fill(&self, account: &str, invoices: &mut [Invoice]) -> Result<(), InvoicingError> {
        if invoices.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.pool().acquire().await?;
        fill(&mut conn, account, invoices).await
    }

    /// Drafts (any account) due for automatic finalization.
    pub async fn due_drafts(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WorkItem>, InvoicingError> {
        let rows = sqlx::query(
            "SELECT account, id, status FROM invoices WHERE status = 'draft' AND auto_finalize_at_us <= $1 \
             ORDER BY auto_finalize_at_us LIMIT $2",
        )
        .bind(to_micros(now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(work_item).collect()
    }
}

pub(super) fn work_item(row: &AnyRow) -> Result<WorkItem, InvoicingError> {
    let status: String = row.try_get(2)?;
    Ok(WorkItem {
        account: row.try_get(0)?,
        invoice: row.try_get(1)?,
        status: Status::parse(&status).ok_or_else(|| InvoicingError::Corrupt(status.clone()))?,
    })
}
