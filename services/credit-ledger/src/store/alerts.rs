//! Balance alerts: the configured alerts, and the evaluation every change
//! that moves a balance runs in its own transaction (DESIGN.md §10).
//!
//! **Exactly once per crossing.** `customer_balances` holds, per customer
//! and asset, the available balance as last evaluated. An evaluation locks
//! that row (an upsert, which waits for any other transaction holding it),
//! recomputes the balance from the grants as the transaction sees them (its
//! own changes and everything committed), stores it, and fires the events
//! of the move from the stored value to the new one. Evaluations of one
//! customer and asset are therefore serialized and each sees the value the
//! previous one stored: no crossing is skipped or seen twice, whatever the
//! concurrency. Every writer locks grants before balance rows (and balance
//! rows in asset order), so the extra lock adds no deadlock.
//!
//! The balance the alerts watch is the available balance less the active
//! credit holds (a hold reserves credits as surely as a debit takes them).
//! Changes caused by time alone (a grant becoming effective or passing
//! `expires_at`, a hold timing out) are found through `next_change_us`, the
//! next such time, which the sweeper watches.

use billing_db::Tx;
use billing_db::events::{NewEvent, Outbox};
use billing_db::idempotency::IdempotencyKey;
use billing_db::sql::Conditions;
use billing_money::Asset;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Begun, Store, rows};
use crate::domain::alert::{ALERTS_PER_ASSET_MAX, AlertEvent, BalanceAlert, crossings};
use crate::error::LedgerError;

/// Locks a customer's balance row of one asset, creating it on first use
/// (`$1` account, `$2` customer, `$3` asset key, `$4` its scale): the lock
/// every change that moves the balance takes, holds included.
const LOCK_BALANCE: &str = "INSERT INTO customer_balances (account, customer, asset, asset_scale, \
    available, evaluated_us, next_change_us) VALUES ($1, $2, $3, $4, NULL, NULL, NULL) \
    ON CONFLICT (account, customer, asset) DO UPDATE SET asset_scale = excluded.asset_scale";

/// Takes [`LOCK_BALANCE`] alone (before a check made under it).
pub(super) async fn lock_balance(
    tx: &mut Tx,
    (account, customer): (&str, &str),
    asset: &Asset,
) -> Result<(), LedgerError> {
    sqlx::query(LOCK_BALANCE)
        .bind(account)
        .bind(customer)
        .bind(asset.key())
        .bind(i64::from(asset.scale()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const ALERT_COLUMNS: &str = "id, customer, asset, asset_scale, threshold, title, created_us";

fn alert(row: &AnyRow) -> Result<BalanceAlert, LedgerError> {
    let customer: String = row.try_get(1)?;
    Ok(BalanceAlert {
        id: row.try_get(0)?,
        customer: Some(customer).filter(|c| !c.is_empty()),
        asset: rows::asset(&row.try_get::<String, _>(2)?, row.try_get(3)?)?,
        threshold: row.try_get(4)?,
        title: row.try_get(5)?,
        created: from_micros(row.try_get(6)?),
    })
}

/// A customer's balance of one asset as last evaluated, with the alerts
/// that watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertStatus {
    /// The asset.
    pub asset: Asset,
    /// The available balance and the time of the last evaluation.
    pub evaluated: Option<(i64, DateTime<Utc>)>,
    /// The configured alerts of the customer (or of every customer).
    pub alerts: Vec<BalanceAlert>,
}

/// A balance the sweeper should re-evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueBalance {
    /// Its account.
    pub account: String,
    /// Its customer.
    pub customer: String,
    /// Its asset.
    pub asset: Asset,
}

impl Store {
    /// Re-evaluates `customer`'s balances of `assets` in `tx` after a change,
    /// adding the alert events of each crossing to `outbox`.
    pub(crate) async fn evaluate_alerts(
        &self,
        tx: &mut Tx,
        outbox: &mut Outbox,
        (account, customer): (&str, &str),
        assets: &[&Asset],
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let mut assets = assets.to_vec();
        assets.sort_by_key(|a| a.key());
        assets.dedup();
        for asset in assets {
            self.evaluate_one(tx, outbox, (account, customer), asset, now)
                .await?;
        }
        Ok(())
    }

    async fn evaluate_one(
        &self,
        tx: &mut Tx,
        outbox: &mut Outbox,
        (account, customer): (&str, &str),
        asset: &Asset,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let key = asset.key();
        // Locks the row (creating it on first use) and reads the balance the
        // previous evaluation stored, and whether any configured alert
        // watches it (most balances have none: their crossings need no
        // third statement).
        let sql = format!(
            "{LOCK_BALANCE} RETURNING available, (SELECT COUNT(*) FROM balance_alerts \
             WHERE account = $1 AND asset = $3 AND customer IN ($2, ''))"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .bind(&key)
            .bind(i64::from(asset.scale()))
            .fetch_one(&mut **tx)
            .await?;
        let before: Option<i64> = row.try_get(0)?;
        let watched: i64 = row.try_get(1)?;
        // The balance now (usable grants less active holds), and when time
        // alone changes it next: the first future effective_at of a grant,
        // expires_at of an effective one, or the end of an active hold.
        let after: i64 = sqlx::query_scalar(
            "UPDATE customer_balances SET (available, next_change_us) = (\
             SELECT g.available - h.held, CASE WHEN g.next_us IS NULL THEN h.next_us \
             WHEN h.next_us IS NULL OR g.next_us < h.next_us THEN g.next_us ELSE h.next_us END FROM \
             (SELECT CAST(COALESCE(SUM(CASE WHEN effective_at_us <= $4 AND \
             (expires_at_us IS NULL OR expires_at_us > $4) THEN available ELSE 0 END), 0) AS BIGINT) AS available, \
             MIN(CASE WHEN effective_at_us > $4 THEN effective_at_us \
             WHEN expires_at_us > $4 THEN expires_at_us END) AS next_us \
             FROM credit_grants WHERE account = $1 AND customer = $2 AND asset = $3 AND available > 0 \
             AND voided_at_us IS NULL AND pending_payment = 0) AS g, \
             (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS held, MIN(expires_at_us) AS next_us \
             FROM credit_holds WHERE account = $1 AND customer = $2 AND asset = $3 \
             AND released_us IS NULL AND expires_at_us > $4) AS h), evaluated_us = $4 \
             WHERE account = $1 AND customer = $2 AND asset = $3 RETURNING available",
        )
        .bind(account)
        .bind(customer)
        .bind(&key)
        .bind(to_micros(now))
        .fetch_one(&mut **tx)
        .await?;
        self.fire(
            tx,
            outbox,
            (account, customer),
            asset,
            (before, after, watched),
        )
        .await
    }

    /// Adds the events of the move `before → after` of a balance watched by
    /// `watched` configured alerts.
    async fn fire(
        &self,
        tx: &mut Tx,
        outbox: &mut Outbox,
        (account, customer): (&str, &str),
        asset: &Asset,
        (before, after, watched): (Option<i64>, i64, i64),
    ) -> Result<(), LedgerError> {
        if before.is_none_or(|b| b == after) {
            return Ok(());
        }
        let alerts = if watched == 0 {
            Vec::new()
        } else {
            self.alerts_of(tx, (account, customer), &asset.key())
                .await?
        };
        for (event_type, crossed) in crossings(before, after, &alerts) {
            let data = AlertEvent {
                customer: customer.to_owned(),
                asset: asset.clone(),
                available: after,
                alert: crossed.cloned(),
            };
            let event = NewEvent {
                event_type,
                subject: customer,
                data: serde_json::to_string(&data)?,
            };
            outbox.push(billing_server::ids::new_id("evt"), event);
        }
        Ok(())
    }

    /// Like [`Store::evaluate_alerts`] after a change that took `debits`
    /// (per asset, from grants available now) from the balance and changed
    /// nothing else: ApplyCredits. When the stored balance is current (no
    /// change by time alone is due), the new balance is the stored one less
    /// the debit, in one statement that locks and updates the row; else
    /// the full evaluation.
    ///
    /// Returns the assets whose stored balance could not take the debit:
    /// the caller evaluates them with [`Store::evaluate_alerts`] once the
    /// change's grant updates are written (the full evaluation reads them).
    pub(crate) async fn debit_alerts<'a>(
        &self,
        tx: &mut Tx,
        outbox: &mut Outbox,
        (account, customer): (&str, &str),
        debits: &[(&'a Asset, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<&'a Asset>, LedgerError> {
        let mut stale = Vec::new();
        let mut debits = debits.to_vec();
        debits.sort_by_key(|(asset, _)| asset.key());
        for (asset, debit) in debits {
            let row = sqlx::query(
                "UPDATE customer_balances SET available = available - $4, evaluated_us = $5 \
                 WHERE account = $1 AND customer = $2 AND asset = $3 AND available >= $4 \
                 AND (next_change_us IS NULL OR next_change_us > $5) \
                 RETURNING available, (SELECT COUNT(*) FROM balance_alerts WHERE account = $1 \
                 AND asset = $3 AND customer IN ($2, ''))",
            )
            .bind(account)
            .bind(customer)
            .bind(asset.key())
            .bind(debit)
            .bind(to_micros(now))
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else {
                // No row yet, a time-driven change due, or a stored value
                // that does not cover the debit: evaluate from the grants.
                stale.push(asset);
                continue;
            };
            let after: i64 = row.try_get(0)?;
            let watched: i64 = row.try_get(1)?;
            let before = after
                .checked_add(debit)
                .ok_or_else(|| LedgerError::Corrupt("balance past 64 bits".into()))?;
            self.fire(
                tx,
                outbox,
                (account, customer),
                asset,
                (Some(before), after, watched),
            )
            .await?;
        }
        Ok(stale)
    }

    /// The alerts watching `customer`'s balance of the asset `key`.
    async fn alerts_of(
        &self,
        tx: &mut Tx,
        (account, customer): (&str, &str),
        key: &str,
    ) -> Result<Vec<BalanceAlert>, LedgerError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM balance_alerts WHERE account = $1 AND asset = $2 \
             AND customer IN ($3, '') ORDER BY id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(key)
            .bind(customer)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(alert)
            .collect()
    }

    /// Balances (any account) whose time-driven change is due by `now`.
    pub async fn balances_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueBalance>, LedgerError> {
        let found = sqlx::query(
            "SELECT account, customer, asset, asset_scale FROM customer_balances \
             WHERE next_change_us IS NOT NULL AND next_change_us <= $1 ORDER BY next_change_us LIMIT $2",
        )
        .bind(to_micros(now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        found
            .iter()
            .map(|row| {
                Ok(DueBalance {
                    account: row.try_get(0)?,
                    customer: row.try_get(1)?,
                    asset: rows::asset(&row.try_get::<String, _>(2)?, row.try_get(3)?)?,
                })
            })
            .collect()
    }

    /// Re-evaluates one balance in its own transaction (the sweeper).
    pub async fn reevaluate(
        &self,
        due: &DueBalance,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let mut tx = self.db.begin_write().await?;
        let mut outbox = Outbox::new();
        let owner = (due.account.as_str(), due.customer.as_str());
        self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&due.asset], now)
            .await?;
        outbox
            .write(&mut tx, self.db.backend(), &due.account, to_micros(now))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts an alert; at most [`ALERTS_PER_ASSET_MAX`] per customer (or
    /// every customer) and asset.
    pub async fn create_alert(
        &self,
        account: &str,
        alert: BalanceAlert,
        key: Option<&IdempotencyKey>,
    ) -> Result<BalanceAlert, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let customer = alert.customer.as_deref().unwrap_or_default();
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM balance_alerts WHERE account = $1 AND asset = $2 AND customer = $3",
        )
        .bind(account)
        .bind(alert.asset.key())
        .bind(customer)
        .fetch_one(&mut *tx)
        .await?;
        if count >= ALERTS_PER_ASSET_MAX {
            return Err(LedgerError::invalid(
                "threshold",
                format!(
                    "at most {ALERTS_PER_ASSET_MAX} alerts per customer (or for every customer) and asset"
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO balance_alerts (account, id, customer, asset, asset_scale, threshold, title, created_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(account)
        .bind(&alert.id)
        .bind(customer)
        .bind(alert.asset.key())
        .bind(i64::from(alert.asset.scale()))
        .bind(alert.threshold)
        .bind(&alert.title)
        .bind(to_micros(alert.created))
        .execute(&mut *tx)
        .await?;
        let now_us = to_micros(alert.created);
        self.finish(tx, account, key, now_us, alert).await
    }

    /// One alert of the account.
    pub async fn alert(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<BalanceAlert>, LedgerError> {
        let row = billing_db::sql::one_of_account(ALERT_COLUMNS, "balance_alerts", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(alert).transpose()
    }

    /// A page of alerts, newest first, optionally only one customer's.
    pub async fn list_alerts(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<BalanceAlert>, String), LedgerError> {
        let found = Conditions::new("account", account)
            .eq("customer", customer)
            .newest_first(
                &format!("SELECT {ALERT_COLUMNS} FROM balance_alerts"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let alerts = found.iter().map(alert).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(alerts, |a| &a.id))
    }

    /// Deletes an alert; returns it as it was.
    pub async fn delete_alert(&self, account: &str, id: &str) -> Result<BalanceAlert, LedgerError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "DELETE FROM balance_alerts WHERE account = $1 AND id = $2 RETURNING {ALERT_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let deleted = row
            .as_ref()
            .map(alert)
            .transpose()?
            .ok_or_else(|| LedgerError::not_found("balance alert", id))?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Each asset's balance of the customer as last evaluated, with the
    /// alerts that watch it, ordered by asset.
    pub async fn alert_status(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<Vec<AlertStatus>, LedgerError> {
        let evaluated = sqlx::query(
            "SELECT asset, asset_scale, available, evaluated_us FROM customer_balances \
             WHERE account = $1 AND customer = $2 ORDER BY asset",
        )
        .bind(account)
        .bind(customer)
        .fetch_all(self.db.pool())
        .await?;
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM balance_alerts WHERE account = $1 AND customer IN ($2, '') ORDER BY id"
        );
        let alerts = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(alert)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<AlertStatus> = Vec::new();
        for row in &evaluated {
            let available: Option<i64> = row.try_get(2)?;
            let at: Option<i64> = row.try_get(3)?;
            out.push(AlertStatus {
                asset: rows::asset(&row.try_get::<String, _>(0)?, row.try_get(1)?)?,
                evaluated: available.zip(at.map(from_micros)),
                alerts: Vec::new(),
            });
        }
        for alert in alerts {
            match out.iter_mut().find(|s| s.asset == alert.asset) {
                Some(status) => status.alerts.push(alert),
                None => out.push(AlertStatus {
                    asset: alert.asset.clone(),
                    evaluated: None,
                    alerts: vec![alert],
                }),
            }
        }
        out.sort_by_key(|s| s.asset.key());
        Ok(out)
    }
}
