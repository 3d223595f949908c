//! Credit holds (DESIGN.md §12). A hold is created and released under the
//! customer's `customer_balances` row lock (the lock every balance change
//! takes for its alerts), so two concurrent holds can never take the same
//! last credit; SQLite's single writer serializes them anyway. A hold past
//! its timeout simply stops matching `expires_at_us > now`.

use billing_db::Tx;
use billing_db::events::Outbox;
use billing_db::idempotency::IdempotencyKey;
use billing_money::Asset;
use billing_server::page::PageRequest;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::alerts::lock_balance;
use super::{Begun, Store, rows};
use crate::domain::hold::{Hold, Room};
use crate::error::LedgerError;

const HOLD_COLUMNS: &str =
    "id, customer, asset, asset_scale, amount, request_id, expires_at_us, released_us, created_us";

fn hold(row: &AnyRow) -> Result<Hold, LedgerError> {
    Ok(Hold {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        asset: rows::asset(&row.try_get::<String, _>(2)?, row.try_get(3)?)?,
        amount: row.try_get(4)?,
        request_id: row.try_get(5)?,
        expires_at: from_micros(row.try_get(6)?),
        released_at: row.try_get::<Option<i64>, _>(7)?.map(from_micros),
        created: from_micros(row.try_get(8)?),
    })
}

impl Store {
    /// Creates `hold` if `available − unbilled − active holds` covers it,
    /// evaluating the customer's alerts with it (idempotent on `key`: a
    /// replay returns the hold the key made, and true).
    pub async fn create_hold(
        &self,
        account: &str,
        hold: Hold,
        unbilled: i64,
        key: &IdempotencyKey,
    ) -> Result<(Hold, bool), LedgerError> {
        let mut tx = match self.begin(account, Some(key)).await? {
            Begun::Replay(stored) => return Ok((stored, true)),
            Begun::Fresh(tx) => tx,
        };
        let owner = (account, hold.customer.as_str());
        lock_balance(&mut tx, owner, &hold.asset).await?;
        let (available, held) = room(&mut tx, owner, &hold.asset, hold.created).await?;
        Room {
            available,
            unbilled,
            held,
        }
        .admit(hold.amount)?;
        let sql = format!(
            "INSERT INTO credit_holds ({HOLD_COLUMNS}, account) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hold.id)
            .bind(&hold.customer)
            .bind(hold.asset.key())
            .bind(i64::from(hold.asset.scale()))
            .bind(hold.amount)
            .bind(&hold.request_id)
            .bind(to_micros(hold.expires_at))
            .bind(to_micros(hold.created))
            .bind(account)
            .execute(&mut *tx)
            .await?;
        let mut outbox = Outbox::new();
        self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&hold.asset], hold.created)
            .await?;
        let now_us = to_micros(hold.created);
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        let hold = self.finish(tx, account, Some(key), now_us, hold).await?;
        Ok((hold, false))
    }

    /// Releases an active hold at `now`; a released or expired one is
    /// returned as it is. `None` when the account has no such hold.
    pub async fn release_hold(
        &self,
        account: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Hold>, LedgerError> {
        let Some(found) = self.hold(account, id).await? else {
            return Ok(None);
        };
        if found.released_at.is_some() || found.expires_at <= now {
            return Ok(Some(found));
        }
        let mut tx = self.db.begin_write().await?;
        let owner = (account, found.customer.as_str());
        lock_balance(&mut tx, owner, &found.asset).await?;
        // Read again under the lock: a concurrent release may have won.
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let current = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let mut released = hold(&current)?;
        if released.released_at.is_some() || released.expires_at <= now {
            return Ok(Some(released));
        }
        sqlx::query("UPDATE credit_holds SET released_us = $3 WHERE account = $1 AND id = $2")
            .bind(account)
            .bind(id)
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await?;
        released.released_at = Some(now);
        let mut outbox = Outbox::new();
        self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&released.asset], now)
            .await?;
        outbox
            .write(&mut tx, self.db.backend(), account, to_micros(now))
            .await?;
        tx.commit().await?;
        Ok(Some(released))
    }

    /// One hold of the account.
    pub async fn hold(&self, account: &str, id: &str) -> Result<Option<Hold>, LedgerError> {
        let row = billing_db::sql::one_of_account(HOLD_COLUMNS, "credit_holds", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(hold).transpose()
    }

    /// A page of a customer's holds, newest first; only those active at
    /// `now` when `active_only`.
    pub async fn list_holds(
        &self,
        account: &str,
        customer: &str,
        active_only: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<(Vec<Hold>, String), LedgerError> {
        let active = if active_only.is_some() {
            " AND released_us IS NULL AND expires_at_us > $5"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE account = $1 AND customer = $2 \
             AND ($3 = '' OR id < $3){active} ORDER BY id DESC LIMIT $4"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .bind(page.before_id.clone().unwrap_or_default())
            .bind(page.fetch_limit());
        if let Some(now) = active_only {
            query = query.bind(to_micros(now));
        }
        let found = query.fetch_all(self.db.pool()).await?;
        let holds = found.iter().map(hold).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(holds, |h| &h.id))
    }

    /// The holds of `customers` that may count at their last alert
    /// evaluation (those ending after the earliest one), for the audit.
    pub(crate) async fn holds_of(
        &self,
        account: &str,
        customers: &[&str],
    ) -> Result<Vec<Hold>, LedgerError> {
        let list = billing_db::sql::list(customers.len(), 2);
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE account = $1 AND customer IN ({list}) \
             AND expires_at_us > (SELECT COALESCE(MIN(evaluated_us), 0) FROM customer_balances \
             WHERE account = $1 AND customer IN ({list}))"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for customer in customers {
            query = query.bind(*customer);
        }
        let found = query.fetch_all(self.db.pool()).await?;
        found.iter().map(hold).collect()
    }

    /// The customer's active holds at `now`, per asset, ordered by asset.
    pub async fn held(
        &self,
        account: &str,
        customer: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Asset, i64)>, LedgerError> {
        let found = sqlx::query(
            "SELECT asset, asset_scale, CAST(SUM(amount) AS BIGINT) FROM credit_holds \
             WHERE account = $1 AND customer = $2 AND released_us IS NULL AND expires_at_us > $3 \
             GROUP BY asset, asset_scale ORDER BY asset",
        )
        .bind(account)
        .bind(customer)
        .bind(to_micros(now))
        .fetch_all(self.db.pool())
        .await?;
        found
            .iter()
            .map(|row| {
                Ok((
                    rows::asset(&row.try_get::<String, _>(0)?, row.try_get(1)?)?,
                    row.try_get(2)?,
                ))
            })
            .collect()
    }
}

/// The customer's credits usable at `now` and active holds at `now`, in
/// `asset`, as the transaction sees them.
async fn room(
    tx: &mut Tx,
    (account, customer): (&str, &str),
    asset: &Asset,
    now: DateTime<Utc>,
) -> Result<(i64, i64), LedgerError> {
    let row = sqlx::query(
        "SELECT (SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM credit_grants \
         WHERE account = $1 AND customer = $2 AND asset = $3 AND available > 0 \
         AND voided_at_us IS NULL AND pending_payment = 0 AND effective_at_us <= $4 \
         AND (expires_at_us IS NULL OR expires_at_us > $4)), \
         (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_holds \
         WHERE account = $1 AND customer = $2 AND asset = $3 AND released_us IS NULL \
         AND expires_at_us > $4)",
    )
    .bind(account)
    .bind(customer)
    .bind(asset.key())
    .bind(to_micros(now))
    .fetch_one(&mut **tx)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
