//! Subscriptions and the closing of their periods.

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_money::Currency;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::allocations;
use super::events::{push, write_one};
use crate::domain::invoice::{INVOICE_CREATED, Invoice};
use crate::domain::subscription::{
    Interval, SUBSCRIPTION_CANCELED, SUBSCRIPTION_CREATED, SUBSCRIPTION_UPDATED, Subscription,
};
use crate::error::InvoicingError;
use billing_db::events::Outbox;

const COLUMNS: &str = "id, customer, status, currency, billing_interval, anchor_us, start_us, \
    period_start_us, period_end_us, cancel_at_period_end, ended_us, latest_invoice, items, created_us, \
    credit_allocations, controls";
/// How many columns [`COLUMNS`] names (the next one is a caller's).
const COLUMN_COUNT: usize = 16;

fn subscription(row: &AnyRow) -> Result<Subscription, InvoicingError> {
    let status: String = row.try_get(2)?;
    let currency: Option<String> = row.try_get(3)?;
    let interval: String = row.try_get(4)?;
    let cancel: i64 = row.try_get(9)?;
    let ended: Option<i64> = row.try_get(10)?;
    let items: String = row.try_get(12)?;
    let allocations: String = row.try_get(14)?;
    let controls: String = row.try_get(15)?;
    Ok(Subscription {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        active: status == "active",
        currency: currency.as_deref().map(Currency::parse).transpose()?,
        interval: Interval::parse(&interval)
            .ok_or_else(|| InvoicingError::Corrupt(interval.clone()))?,
        anchor: from_micros(row.try_get(5)?),
        start: from_micros(row.try_get(6)?),
        period_start: from_micros(row.try_get(7)?),
        period_end: from_micros(row.try_get(8)?),
        cancel_at_period_end: cancel != 0,
        ended_at: ended.map(from_micros),
        latest_invoice: row.try_get(11)?,
        items: serde_json::from_str(&items)?,
        created: from_micros(row.try_get(13)?),
        credit_allocations: serde_json::from_str(&allocations)?,
        controls: serde_json::from_str(&controls)?,
    })
}

/// Adds `event_type` about subscription `id` as it stands in `tx`.
async fn push_subscription(
    tx: &mut billing_db::Tx,
    outbox: &mut Outbox,
    account: &str,
    (event_type, id): (&str, &str),
) -> Result<(), InvoicingError> {
    let row = billing_db::sql::one_of_account(COLUMNS, "subscriptions", account, id)
        .fetch_one(&mut **tx)
        .await?;
    push(outbox, (event_type, id), &subscription(&row)?)
}

/// How a period close leaves the subscription.
#[derive(Debug, Clone, Copy)]
pub enum Closing {
    /// The next period.
    Advance {
        /// Its start.
        start: DateTime<Utc>,
        /// Its end.
        end: DateTime<Utc>,
    },
    /// Canceled at this time.
    End(DateTime<Utc>),
}

/// A customer's active subscriptions, and what came with them.
#[derive(Debug)]
pub struct ActiveSubscriptions {
    /// Oldest first.
    pub subscriptions: Vec<Subscription>,
    /// The customer's parent, when a row told (`None`: no row).
    pub parent: Option<Option<String>>,
    /// Whether the customer has a draft, when a row told.
    pub drafts: Option<bool>,
}

impl Store {
    /// Inserts a subscription.
    pub async fn create_subscription(
        &self,
        account: &str,
        sub: Subscription,
        key: Option<&IdempotencyKey>,
    ) -> Result<Subscription, InvoicingError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO subscriptions (account, id, customer, status, currency, billing_interval, anchor_us, start_us, \
             period_start_us, period_end_us, cancel_at_period_end, ended_us, latest_invoice, items, created_us, \
             credit_allocations, controls, usage_thresholds) \
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9, 0, NULL, NULL, $10, $11, $12, $13, $14)",
        )
        .bind(account)
        .bind(&sub.id)
        .bind(&sub.customer)
        .bind(sub.currency.as_ref().map(|c| c.code().to_owned()))
        .bind(sub.interval.as_str())
        .bind(to_micros(sub.anchor))
        .bind(to_micros(sub.start))
        .bind(to_micros(sub.period_start))
        .bind(to_micros(sub.period_end))
        .bind(serde_json::to_string(&sub.items)?)
        .bind(to_micros(sub.created))
        .bind(serde_json::to_string(&sub.credit_allocations)?)
        .bind(serde_json::to_string(&sub.controls)?)
        .bind(i64::try_from(sub.controls.usage_thresholds.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let first = (sub.period_start, sub.period_end);
        allocations::start_period(&mut tx, account, &sub, first, true).await?;
        let now_us = to_micros(sub.created);
        let event = (SUBSCRIPTION_CREATED, sub.id.as_str());
        write_one(&mut tx, self.db.backend(), account, event, &sub, now_us).await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, sub).await?)
    }

    /// One subscription.
    pub async fn subscription(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Subscription>, InvoicingError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "subscriptions", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(subscription).transpose()
    }

    /// A page of subscriptions, newest first.
    pub async fn list_subscriptions(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<Subscription>, String), InvoicingError> {
        let rows = Conditions::new("account", account)
            .eq("customer", customer)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM subscriptions"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let subs = rows
            .iter()
            .map(subscription)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(subs, |s| &s.id))
    }

    /// The customer's active subscriptions, oldest first: at most `limit`,
    /// with what a real-time balance needs to know besides, read in the
    /// same statement.
    pub async fn active_subscriptions_of(
        &self,
        account: &str,
        customer: &str,
        limit: i64,
    ) -> Result<ActiveSubscriptions, InvoicingError> {
        // The customer's parent (a credit pool's first level) and whether
        // it has a draft ride along on every row, so the usual balance
        // (subscriptions, no draft, no parent) is this one statement. The
        // draft probe is ordered by id so that the planner takes
        // `invoices_customer_status` (account, customer, status, id).
        let sql = format!(
            "SELECT {COLUMNS}, (SELECT c.parent FROM customers c WHERE c.account = $1 AND c.id = $2), \
             CAST(CASE WHEN (SELECT i.id FROM invoices i WHERE i.account = $1 AND i.customer = $2 \
             AND i.status = 'draft' ORDER BY i.id LIMIT 1) IS NULL THEN 0 ELSE 1 END AS BIGINT) \
             FROM subscriptions WHERE account = $1 AND customer = $2 \
             AND status = 'active' ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        let (parent, drafts) = match rows.first() {
            Some(row) => (
                Some(row.try_get::<Option<String>, _>(COLUMN_COUNT)?),
                Some(row.try_get::<i64, _>(COLUMN_COUNT + 1)? != 0),
            ),
            None => (None, None),
        };
        let subscriptions = rows.iter().map(subscription).collect::<Result<_, _>>()?;
        Ok(ActiveSubscriptions {
            subscriptions,
            parent,
            drafts,
        })
    }

    /// Active subscriptions with usage thresholds (any account), in
    /// (account, id) order after `after`: the worker's round.
    pub async fn watched_subscriptions(
        &self,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<(String, Subscription)>, InvoicingError> {
        let (account, id) = after.unwrap_or_default();
        let sql = format!(
            "SELECT {COLUMNS}, account FROM subscriptions WHERE status = 'active' AND usage_thresholds > 0 \
             AND (account, id) > ($1, $2) ORDER BY account, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(COLUMN_COUNT)?, subscription(row)?)))
            .collect()
    }

    /// Active subscriptions (any account) whose period ended by `now`.
    pub async fn due_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, InvoicingError> {
        let rows = sqlx::query(
            "SELECT account, id FROM subscriptions WHERE status = 'active' AND period_end_us <= $1 \
             ORDER BY period_end_us LIMIT $2",
        )
        .bind(to_micros(now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Sets `cancel_at_period_end` on an active subscription (with its
    /// `subscription.updated` event when it changed).
    pub async fn cancel_at_period_end(
        &self,
        account: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE subscriptions SET cancel_at_period_end = 1 WHERE account = $1 AND id = $2 \
             AND status = 'active' AND cancel_at_period_end = 0",
        )
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            let mut outbox = Outbox::new();
            push_subscription(&mut tx, &mut outbox, account, (SUBSCRIPTION_UPDATED, id)).await?;
            outbox
                .write(&mut tx, self.db.backend(), account, to_micros(now))
                .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Closes the subscription's current period (it must still start at
    /// `period_start`): stores the draft, if any, and advances or ends the
    /// subscription, in one transaction. False when someone else closed it.
    pub async fn close_period(
        &self,
        account: &str,
        id: &str,
        period_start: DateTime<Utc>,
        draft: Option<&Invoice>,
        closing: Closing,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        // The whole row, locked: the period check below and the allocation
        // rows need it.
        let sql = format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| InvoicingError::not_found("subscription", id))?;
        let sub = subscription(&row)?;
        if sub.period_start != period_start || !sub.active {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut outbox = Outbox::new();
        if let Some(draft) = draft {
            super::invoices::insert(&mut tx, account, draft).await?;
            push(&mut outbox, (INVOICE_CREATED, draft.id.as_str()), draft)?;
        }
        let (status, start, end, ended, event) = match closing {
            Closing::Advance { start, end } => ("active", start, end, None, SUBSCRIPTION_UPDATED),
            Closing::End(at) => (
                "canceled",
                period_start,
                at,
                Some(to_micros(at)),
                SUBSCRIPTION_CANCELED,
            ),
        };
        let canceled = match closing {
            Closing::End(at) => Some(at),
            Closing::Advance { .. } => None,
        };
        allocations::close_period(
            &mut tx,
            account,
            &sub,
            draft.map(|d| d.id.as_str()),
            canceled,
        )
        .await?;
        if let Closing::Advance { start, end } = closing {
            allocations::start_period(&mut tx, account, &sub, (start, end), false).await?;
        }
        sqlx::query(
            "UPDATE subscriptions SET status = $1, period_start_us = $2, period_end_us = $3, ended_us = $4, \
             latest_invoice = COALESCE($5, latest_invoice) WHERE account = $6 AND id = $7",
        )
        .bind(status)
        .bind(to_micros(start))
        .bind(to_micros(end))
        .bind(ended)
        .bind(draft.map(|d| d.id.clone()))
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // The change happens at the clock's now: the draft's creation, or,
        // for a cancel without a draft, the end it was given.
        let at = draft.map_or(end, |d| d.created);
        push_subscription(&mut tx, &mut outbox, account, (event, id)).await?;
        outbox
            .write(&mut tx, self.db.backend(), account, to_micros(at))
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
