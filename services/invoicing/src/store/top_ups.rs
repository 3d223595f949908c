//! Auto top-ups, their decisions' events, and the durable cursor of the
//! ledger feed they follow.

use billing_db::events::Outbox;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use super::events::push;
use crate::domain::top_up::{AUTO_TOP_UP_DISABLED, AutoTopUp, TopUpEvent};
use crate::error::InvoicingError;

/// The ledger's feed, in `feed_cursors`.
pub const LEDGER_FEED: &str = "ledger";

fn top_up(row: &sqlx::any::AnyRow) -> Result<AutoTopUp, InvoicingError> {
    let settings: String = row.try_get(0)?;
    let enabled: i64 = row.try_get(1)?;
    let mut top_up: AutoTopUp = serde_json::from_str(&settings)?;
    top_up.enabled = enabled != 0;
    Ok(top_up)
}

/// Disables the top-up `id` (if enabled) with an `auto_top_up.disabled`
/// event, inside `tx`.
pub(super) async fn disable(
    tx: &mut billing_db::Tx,
    outbox: &mut Outbox,
    account: &str,
    id: &str,
    reason: &str,
    now_us: i64,
) -> Result<Option<AutoTopUp>, InvoicingError> {
    let changed = sqlx::query(
        "UPDATE auto_top_ups SET enabled = 0, updated_us = $1 WHERE account = $2 AND id = $3 AND enabled = 1",
    )
    .bind(now_us)
    .bind(account)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let row =
        sqlx::query("SELECT settings, enabled FROM auto_top_ups WHERE account = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let disabled = top_up(&row)?;
    if changed == 1 {
        let event = TopUpEvent {
            auto_top_up: disabled.clone(),
            credit_purchase: None,
            reason: reason.to_owned(),
            cause: String::new(),
        };
        push(outbox, (AUTO_TOP_UP_DISABLED, id), &event)?;
    }
    Ok(Some(disabled))
}

impl Store {
    /// Sets the customer's top-up for its asset: inserted, or the one there
    /// is replaced (keeping its id) and enabled. Returns it and the alert
    /// it watched before, if another.
    pub async fn set_top_up(
        &self,
        account: &str,
        mut new: AutoTopUp,
    ) -> Result<(AutoTopUp, Option<String>), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "SELECT settings, enabled FROM auto_top_ups WHERE account = $1 AND customer = $2 AND asset = $3{}",
            self.db.for_update()
        );
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(&new.customer)
            .bind(new.asset.key())
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(top_up)
            .transpose()?;
        let now_us = to_micros(new.created);
        let previous_alert = match &existing {
            Some(old) => {
                new.id.clone_from(&old.id);
                new.created = old.created;
                sqlx::query(
                    "UPDATE auto_top_ups SET settings = $1, enabled = 1, updated_us = $2 WHERE account = $3 AND id = $4",
                )
                .bind(serde_json::to_string(&new)?)
                .bind(now_us)
                .bind(account)
                .bind(&new.id)
                .execute(&mut *tx)
                .await?;
                (old.balance_alert != new.balance_alert).then(|| old.balance_alert.clone())
            }
            None => {
                sqlx::query(
                    "INSERT INTO auto_top_ups (account, id, customer, asset, settings, enabled, created_us, updated_us) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
                )
                .bind(account)
                .bind(&new.id)
                .bind(&new.customer)
                .bind(new.asset.key())
                .bind(serde_json::to_string(&new)?)
                .bind(now_us)
                .execute(&mut *tx)
                .await?;
                None
            }
        };
        tx.commit().await?;
        new.enabled = true;
        Ok((new, previous_alert))
    }

    /// The customer's top-up for the asset `asset` (its key).
    pub async fn top_up(
        &self,
        account: &str,
        customer: &str,
        asset: &str,
    ) -> Result<Option<AutoTopUp>, InvoicingError> {
        let row = sqlx::query(
            "SELECT settings, enabled FROM auto_top_ups WHERE account = $1 AND customer = $2 AND asset = $3",
        )
        .bind(account)
        .bind(customer)
        .bind(asset)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(top_up).transpose()
    }

    /// Disables a top-up with its event; None if there is none.
    pub async fn disable_top_up(
        &self,
        account: &str,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AutoTopUp>, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let mut outbox = Outbox::new();
        let now_us = to_micros(now);
        let disabled = disable(&mut tx, &mut outbox, account, id, reason, now_us).await?;
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        tx.commit().await?;
        Ok(disabled)
    }

    /// Accounts with at least one enabled top-up (whose ledger feed the
    /// worker follows).
    pub async fn top_up_accounts(&self) -> Result<Vec<String>, InvoicingError> {
        let accounts: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT account FROM auto_top_ups WHERE enabled = 1 ORDER BY account",
        )
        .fetch_all(self.db.pool())
        .await?;
        Ok(accounts)
    }

    /// The top-up's purchases since `since` that were not voided: how many,
    /// and what they cost.
    pub async fn top_up_window(
        &self,
        account: &str,
        id: &str,
        since: DateTime<Utc>,
    ) -> Result<(u32, i64), InvoicingError> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_purchases \
             WHERE account = $1 AND auto_top_up = $2 AND created_us >= $3 AND status <> 'void'",
        )
        .bind(account)
        .bind(id)
        .bind(to_micros(since))
        .fetch_one(self.db.pool())
        .await?;
        let count: i64 = row.try_get(0)?;
        let spent: i64 = row.try_get(1)?;
        Ok((u32::try_from(count).unwrap_or(u32::MAX), spent))
    }

    /// Where the account's reading of `feed` stands.
    pub async fn feed_cursor(
        &self,
        account: &str,
        feed: &str,
    ) -> Result<Option<String>, InvoicingError> {
        let position: Option<String> = sqlx::query_scalar(
            "SELECT position FROM feed_cursors WHERE account = $1 AND feed = $2",
        )
        .bind(account)
        .bind(feed)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(position)
    }

    /// Moves the account's cursor of `feed` to `position`, with a decision's
    /// event when given, in one transaction: a decision is recorded exactly
    /// when its event is passed.
    pub async fn advance_feed(
        &self,
        account: &str,
        feed: &str,
        position: &str,
        decision: Option<(&str, &TopUpEvent)>,
        now: DateTime<Utc>,
    ) -> Result<(), InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO feed_cursors (account, feed, position) VALUES ($1, $2, $3) \
             ON CONFLICT (account, feed) DO UPDATE SET position = excluded.position",
        )
        .bind(account)
        .bind(feed)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        if let Some((event_type, event)) = decision {
            let mut outbox = Outbox::new();
            push(
                &mut outbox,
                (event_type, event.auto_top_up.id.as_str()),
                event,
            )?;
            outbox
                .write(&mut tx, self.db.backend(), account, to_micros(now))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
