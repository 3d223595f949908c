//! Allocation periods: one row per subscription, allocation and period,
//! written in the transaction that starts or closes the period, and worked
//! off by the allocation step (ops::allocations) until `done`.

use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::domain::subscription::Subscription;
use crate::error::InvoicingError;

/// One allocation period with something left to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationPeriod {
    /// The account.
    pub account: String,
    /// `sub_…`
    pub subscription: String,
    /// Position in the subscription's allocations.
    pub allocation: u32,
    /// `[period_start, period_end)`.
    pub period_start: DateTime<Utc>,
    /// End of the period (exclusive).
    pub period_end: DateTime<Utc>,
    /// The subscription's first period.
    pub first: bool,
    /// The period's grant, once made.
    pub credit_grant: Option<String>,
    /// The grant the previous period's remainder went into.
    pub carried_grant: Option<String>,
    /// The previous period's rollover into this one is settled.
    pub carried_in: bool,
    /// The period is over (its invoice, if any, is set).
    pub closed: bool,
    /// Its invoice has left draft and finalizing: credits have applied.
    pub invoice_settled: bool,
    /// When the subscription was canceled within or at the end of it.
    pub canceled: Option<DateTime<Utc>>,
}

/// The key of one row.
#[derive(Debug, Clone, Copy)]
pub struct PeriodKey<'a> {
    /// The account.
    pub account: &'a str,
    /// `sub_…`
    pub subscription: &'a str,
    /// Position in the subscription's allocations.
    pub allocation: u32,
    /// Start of the period.
    pub period_start: DateTime<Utc>,
}

impl AllocationPeriod {
    /// This row's key.
    pub fn key(&self) -> PeriodKey<'_> {
        PeriodKey {
            account: &self.account,
            subscription: &self.subscription,
            allocation: self.allocation,
            period_start: self.period_start,
        }
    }
}

/// Inserts the rows of a new period `[start, end)`, one per allocation
/// (none for a subscription without allocations). Its rollover in is
/// settled at once when there is none to wait for.
pub(super) async fn start_period(
    tx: &mut billing_db::Tx,
    account: &str,
    sub: &Subscription,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    first: bool,
) -> Result<(), InvoicingError> {
    for (i, allocation) in sub.credit_allocations.iter().enumerate() {
        let waits_for_rollover = !first && allocation.rollover_max.is_some();
        sqlx::query(
            "INSERT INTO allocation_periods (account, subscription, allocation, period_start_us, period_end_us, \
             first_period, carried_in) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account, subscription, allocation, period_start_us) DO NOTHING",
        )
        .bind(account)
        .bind(&sub.id)
        .bind(i64::try_from(i).map_err(|_| InvoicingError::Corrupt("allocation index".into()))?)
        .bind(to_micros(start))
        .bind(to_micros(end))
        .bind(i64::from(first))
        .bind(i64::from(!waits_for_rollover))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Marks the current period's rows closed, with the period's invoice and,
/// when the subscription ends, the time it was canceled.
pub(super) async fn close_period(
    tx: &mut billing_db::Tx,
    account: &str,
    sub: &Subscription,
    invoice: Option<&str>,
    canceled: Option<DateTime<Utc>>,
) -> Result<(), InvoicingError> {
    if sub.credit_allocations.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE allocation_periods SET closed = 1, invoice = $1, canceled_us = $2 \
         WHERE account = $3 AND subscription = $4 AND period_start_us = $5",
    )
    .bind(invoice)
    .bind(canceled.map(to_micros))
    .bind(account)
    .bind(&sub.id)
    .bind(to_micros(sub.period_start))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const COLUMNS: &str = "a.account, a.subscription, a.allocation, a.period_start_us, a.period_end_us, \
    a.first_period, a.credit_grant, a.carried_grant, a.carried_in, a.closed, a.invoice, i.status, \
    a.canceled_us";

fn period(row: &AnyRow) -> Result<AllocationPeriod, InvoicingError> {
    let allocation: i64 = row.try_get(2)?;
    let invoice: Option<String> = row.try_get(10)?;
    let status: Option<String> = row.try_get(11)?;
    let closed = row.try_get::<i64, _>(9)? != 0;
    Ok(AllocationPeriod {
        account: row.try_get(0)?,
        subscription: row.try_get(1)?,
        allocation: u32::try_from(allocation)
            .map_err(|_| InvoicingError::Corrupt(format!("allocation {allocation}")))?,
        period_start: from_micros(row.try_get(3)?),
        period_end: from_micros(row.try_get(4)?),
        first: row.try_get::<i64, _>(5)? != 0,
        credit_grant: row.try_get(6)?,
        carried_grant: row.try_get(7)?,
        carried_in: row.try_get::<i64, _>(8)? != 0,
        closed,
        invoice_settled: closed
            && (invoice.is_none()
                || status
                    .as_deref()
                    .is_some_and(|s| !matches!(s, "draft" | "finalizing"))),
        canceled: row.try_get::<Option<i64>, _>(12)?.map(from_micros),
    })
}

impl Store {
    /// Rows that can move now (any account): without their grant, or over
    /// with their rollover in settled and their invoice past finalizing;
    /// oldest period first within each subscription and allocation. Rows
    /// waiting for their period to end are not read at all.
    pub async fn open_allocation_periods(
        &self,
        limit: i64,
    ) -> Result<Vec<AllocationPeriod>, InvoicingError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM allocation_periods a LEFT JOIN invoices i \
             ON i.account = a.account AND i.id = a.invoice WHERE a.done = 0 \
             AND (a.credit_grant IS NULL OR (a.closed = 1 AND a.carried_in = 1 AND (a.canceled_us IS NOT NULL \
             OR i.status IS NULL OR i.status NOT IN ('draft', 'finalizing')))) \
             ORDER BY a.account, a.subscription, a.allocation, a.period_start_us LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(period).collect()
    }

    /// The open rows of one subscription.
    pub async fn open_allocation_periods_of(
        &self,
        account: &str,
        subscription: &str,
    ) -> Result<Vec<AllocationPeriod>, InvoicingError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM allocation_periods a LEFT JOIN invoices i \
             ON i.account = a.account AND i.id = a.invoice WHERE a.done = 0 AND a.account = $1 \
             AND a.subscription = $2 ORDER BY a.allocation, a.period_start_us"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(subscription)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(period).collect()
    }

    /// Records the period's grant (the first writer's id stands; a replica
    /// that made the same keyed call got the same grant back).
    pub async fn record_allocation_grant(
        &self,
        key: PeriodKey<'_>,
        grant: &str,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE allocation_periods SET credit_grant = COALESCE(credit_grant, $1) \
             WHERE account = $2 AND subscription = $3 AND allocation = $4 AND period_start_us = $5",
        )
        .bind(grant)
        .bind(key.account)
        .bind(key.subscription)
        .bind(i64::from(key.allocation))
        .bind(to_micros(key.period_start))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records where the rollover out of `from` went: the next period's row
    /// gets the carried grant (or none) and is settled; `from` is done.
    pub async fn record_rollover(
        &self,
        from: PeriodKey<'_>,
        next_start: DateTime<Utc>,
        carried: Option<&str>,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE allocation_periods SET carried_grant = COALESCE(carried_grant, $1), carried_in = 1 \
             WHERE account = $2 AND subscription = $3 AND allocation = $4 AND period_start_us = $5",
        )
        .bind(carried)
        .bind(from.account)
        .bind(from.subscription)
        .bind(i64::from(from.allocation))
        .bind(to_micros(next_start))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE allocation_periods SET done = 1 \
             WHERE account = $1 AND subscription = $2 AND allocation = $3 AND period_start_us = $4",
        )
        .bind(from.account)
        .bind(from.subscription)
        .bind(i64::from(from.allocation))
        .bind(to_micros(from.period_start))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Nothing more will happen to this row.
    pub async fn finish_allocation_period(&self, key: PeriodKey<'_>) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE allocation_periods SET done = 1 \
             WHERE account = $1 AND subscription = $2 AND allocation = $3 AND period_start_us = $4",
        )
        .bind(key.account)
        .bind(key.subscription)
        .bind(i64::from(key.allocation))
        .bind(to_micros(key.period_start))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
