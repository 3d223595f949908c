//! Credit grants: create, read, list, and the locked read-modify-write used
//! by update, void, expire and the expiry sweeper.

use billing_db::Tx;
use billing_db::batch::{Batch, Value};
use billing_db::events::{NewEvent, Outbox};
use billing_db::idempotency::IdempotencyKey;
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Begun, Store, rows, transactions};
use crate::domain::grant::Grant;
use crate::domain::transaction::{BalanceTransaction, NewId, TransactionKind};
use crate::error::LedgerError;

/// A change to one locked grant: returns the transactions to append, whose
/// ids it takes from the generator it is handed.
pub type GrantUpdate<'a> =
    dyn FnOnce(&mut Grant, NewId<'_>) -> Result<Vec<BalanceTransaction>, LedgerError> + Send + 'a;

impl Store {
    /// Inserts a grant and its `credits_granted` credit.
    pub async fn create_grant(
        &self,
        account: &str,
        grant: Grant,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        // The customer's balance in this asset must stay a 64-bit number:
        // a grant that would push the sum of its grants past i64 is refused
        // (the balance summary never shows a saturated or wrapped number).
        // Locking the customer's grants of the asset serialises concurrent
        // grants on PostgreSQL; SQLite's single writer already does.
        let sql = format!(
            "SELECT available FROM credit_grants WHERE account = $1 AND customer = $2 AND asset = $3{}",
            self.db.for_update()
        );
        let balances: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(&grant.customer)
            .bind(grant.asset.key())
            .fetch_all(&mut *tx)
            .await?;
        let fits = balances
            .iter()
            .try_fold(grant.amount, |sum, available| sum.checked_add(*available))
            .is_some();
        if !fits {
            return Err(LedgerError::invalid(
                "amount",
                "would take the customer's balance in this asset past 9223372036854775807 smallest units",
            ));
        }
        let mut outbox = Outbox::new();
        insert_grant(&mut tx, &mut outbox, account, &grant).await?;
        let now_us = to_micros(grant.created);
        let owner = (account, grant.customer.as_str());
        self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&grant.asset], grant.created)
            .await?;
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        self.finish(tx, account, key, now_us, grant).await
    }

    /// One grant of the account.
    pub async fn grant(&self, account: &str, id: &str) -> Result<Option<Grant>, LedgerError> {
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1 AND id = $2",
            rows::GRANT_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(rows::grant).transpose()
    }

    /// Every grant of a customer (balance summaries, previews). Cost grows
    /// with the customer's grants, never with their history.
    pub async fn customer_grants(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<Vec<Grant>, LedgerError> {
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1 AND customer = $2 ORDER BY id",
            rows::GRANT_COLUMNS
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .fetch_all(self.db.pool())
            .await?;
        found.iter().map(rows::grant).collect()
    }

    /// A customer's grants, and per asset its holds active at `now`, in one
    /// statement (the real-time balance's read: holds exist only in assets
    /// the customer has grants in, since a hold needs free credits).
    pub async fn grants_with_held(
        &self,
        account: &str,
        customer: &str,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Grant>, Vec<(billing_money::Asset, i64)>), LedgerError> {
        let sql = format!(
            "SELECT {}, (SELECT CAST(SUM(h.amount) AS BIGINT) FROM credit_holds h \
             WHERE h.account = g.account AND h.customer = g.customer AND h.asset = g.asset \
             AND h.released_us IS NULL AND h.expires_at_us > $3) FROM credit_grants g \
             WHERE g.account = $1 AND g.customer = $2 ORDER BY g.id",
            rows::GRANT_COLUMNS
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .bind(to_micros(now))
            .fetch_all(self.db.pool())
            .await?;
        let mut grants = Vec::with_capacity(found.len());
        let mut held: Vec<(billing_money::Asset, i64)> = Vec::new();
        for row in &found {
            let grant = rows::grant(row)?;
            let sum: Option<i64> = row.try_get(rows::GRANT_COLUMN_COUNT)?;
            if let Some(sum) = sum.filter(|s| *s != 0)
                && !held.iter().any(|(asset, _)| *asset == grant.asset)
            {
                held.push((grant.asset.clone(), sum));
            }
            grants.push(grant);
        }
        held.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok((grants, held))
    }

    /// The grants `ancestors` share with their descendants that still hold
    /// credits (a credit pool), in id order.
    pub async fn shared_grants(
        &self,
        account: &str,
        ancestors: &[String],
    ) -> Result<Vec<Grant>, LedgerError> {
        if ancestors.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1 AND customer IN ({}) \
             AND shared_with_descendants = 1 AND available > 0 ORDER BY id",
            rows::GRANT_COLUMNS,
            billing_db::sql::list(ancestors.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for ancestor in ancestors {
            query = query.bind(ancestor.as_str());
        }
        let found = query.fetch_all(self.db.pool()).await?;
        found.iter().map(rows::grant).collect()
    }

    /// A page of grants, newest first, optionally of one customer.
    pub async fn list_grants(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<Grant>, String), LedgerError> {
        let found = Conditions::new("account", account)
            .eq("customer", customer)
            .newest_first(
                &format!("SELECT {} FROM credit_grants", rows::GRANT_COLUMNS),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let grants = found
            .iter()
            .map(rows::grant)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(grants, |g| &g.id))
    }

    /// Locks one grant, lets `change` modify it, appends the transactions it
    /// returns and saves the grant, all in one transaction.
    pub async fn change_grant(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
        change: Box<GrantUpdate<'_>>,
    ) -> Result<Grant, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let mut grant = self
            .lock_grants(&mut tx, account, &[id.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| LedgerError::not_found("credit grant", id))?;
        let appended = change(&mut grant, &mut transactions::new_id)?;
        transactions::append(&mut tx, account, &appended).await?;
        let mut outbox = Outbox::new();
        save_grant(&mut tx, &mut outbox, account, &grant).await?;
        let owner = (account, grant.customer.as_str());
        self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&grant.asset], now)
            .await?;
        outbox
            .write(&mut tx, self.db.backend(), account, to_micros(now))
            .await?;
        self.finish(tx, account, key, to_micros(now), grant).await
    }

    /// Locks the given grants in id order (deadlock-free across writers of
    /// one customer's grants; see `lock_eligible` for pools).
    pub(crate) async fn lock_grants(
        &self,
        tx: &mut Tx,
        account: &str,
        ids: &[String],
    ) -> Result<Vec<Grant>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1 AND id IN ({}) ORDER BY id{}",
            rows::GRANT_COLUMNS,
            billing_db::sql::list(ids.len(), 2),
            self.db.for_update()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for id in ids {
            query = query.bind(id);
        }
        let found = query.fetch_all(&mut **tx).await?;
        found.iter().map(rows::grant).collect()
    }

    /// Grants past `expires_at + grace` with credit left, across accounts, at most `limit`.
    pub async fn grants_due_for_expiry(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, LedgerError> {
        let found: Vec<(String, String)> = sqlx::query_as(
            "SELECT account, id FROM credit_grants WHERE available > 0 AND expires_at_us IS NOT NULL \
             AND expires_at_us <= $1 AND voided_at_us IS NULL ORDER BY expires_at_us LIMIT $2",
        )
        .bind(to_micros(cutoff))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(found)
    }
}

/// A grant was created.
pub const CREDIT_BALANCE_CREATED: &str = "credit_balance.created";
/// A grant changed (its available balance, expiry, name, or it was voided).
pub const CREDIT_BALANCE_UPDATED: &str = "credit_balance.updated";

/// Adds the event of `grant`'s new state to the change's outbox (`data`:
/// the grant as stored, turned into a `CreditGrant` by the feed).
pub(crate) fn grant_event(
    outbox: &mut Outbox,
    event_type: &str,
    grant: &Grant,
) -> Result<(), LedgerError> {
    // The outbox benchmark's switch: the same code without the grant
    // events, to measure the outbox's cost in one process. Never compiled
    // into a build that ships.
    #[cfg(feature = "bench-no-events")]
    if crate::bench::grant_events_skipped() {
        return Ok(());
    }
    let event = NewEvent {
        event_type,
        subject: &grant.id,
        data: serde_json::to_string(grant)?,
    };
    outbox.push(billing_server::ids::new_id("evt"), event);
    Ok(())
}

/// Inserts a new grant with its `credits_granted` credit, and adds its
/// `credit_balance.created` event to the outbox.
pub(crate) async fn insert_grant(
    tx: &mut Tx,
    outbox: &mut Outbox,
    account: &str,
    grant: &Grant,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO credit_grants (account, id, customer, name, asset, asset_scale, amount, available, \
         scope, category, priority, effective_at_us, expires_at_us, voided_at_us, metadata, created_us, \
         updated_us, source, cost_basis, pending_payment, shared_with_descendants) VALUES ($1, $2, $3, $4, \
         $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(account)
    .bind(&grant.id)
    .bind(&grant.customer)
    .bind(&grant.name)
    .bind(grant.asset.key())
    .bind(i64::from(grant.asset.scale()))
    .bind(grant.amount)
    .bind(grant.available)
    .bind(serde_json::to_string(&grant.scope)?)
    .bind(grant.category.as_str())
    .bind(i64::from(grant.priority))
    .bind(to_micros(grant.effective_at))
    .bind(grant.expires_at.map(to_micros))
    .bind(serde_json::to_string(&grant.metadata)?)
    .bind(to_micros(grant.created))
    .bind(to_micros(grant.updated))
    .bind(grant.source.as_ref().map(serde_json::to_string).transpose()?)
    .bind(grant.cost_basis.as_ref().map(serde_json::to_string).transpose()?)
    .bind(i64::from(grant.pending_payment))
    .bind(i64::from(grant.shared))
    .execute(&mut **tx)
    .await?;
    let credit = grant.transaction(
        transactions::new_id(),
        TransactionKind::CreditsGranted,
        grant.amount,
        grant.effective_at,
        grant.created,
    );
    transactions::append(tx, account, &[credit]).await?;
    grant_event(outbox, CREDIT_BALANCE_CREATED, grant)
}

/// Writes a grant's mutable columns back, and adds its
/// `credit_balance.updated` event to the outbox.
pub(crate) async fn save_grant(
    tx: &mut Tx,
    outbox: &mut Outbox,
    account: &str,
    grant: &Grant,
) -> Result<(), LedgerError> {
    let mut batch = Batch::new();
    save_grant_to(&mut batch, outbox, account, grant)?;
    batch.run_each(tx).await?;
    Ok(())
}

/// Adds the UPDATE of [`save_grant`] to `batch` (and the event to the outbox).
pub(crate) fn save_grant_to(
    batch: &mut Batch,
    outbox: &mut Outbox,
    account: &str,
    grant: &Grant,
) -> Result<(), LedgerError> {
    batch.push(
        "UPDATE credit_grants SET name = $1, available = $2, applied_total = $3, reinstated_total = $4, \
         expired_total = $5, voided_total = $6, expires_at_us = $7, voided_at_us = $8, metadata = $9, \
         updated_us = $10, pending_payment = $13 WHERE account = $11 AND id = $12"
            .to_owned(),
        vec![
            Value::Text(grant.name.clone()),
            Value::Int(grant.available),
            Value::Int(grant.totals.applied),
            Value::Int(grant.totals.reinstated),
            Value::Int(grant.totals.expired),
            Value::Int(grant.totals.voided),
            Value::OptInt(grant.expires_at.map(to_micros)),
            Value::OptInt(grant.voided_at.map(to_micros)),
            Value::Text(serde_json::to_string(&grant.metadata)?),
            Value::Int(to_micros(grant.updated)),
            Value::from(account),
            Value::Text(grant.id.clone()),
            Value::Int(i64::from(grant.pending_payment)),
        ],
    );
    grant_event(outbox, CREDIT_BALANCE_UPDATED, grant)
}
