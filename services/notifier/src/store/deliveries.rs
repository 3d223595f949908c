//! Deliveries: created with the events, claimed by the delivery worker
//! with a lease, listed, retried (recording attempts: `attempts`).

use billing_db::Backend;
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::endpoints::{Secrets, secrets};
use crate::error::NotifierError;

/// A delivery as `ListWebhookDeliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `whdel_…`
    pub id: String,
    /// The endpoint.
    pub endpoint: String,
    /// The event.
    pub event: String,
    /// Its type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// HTTP status of the last attempt (0: no answer).
    pub last_http_status: i64,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it is tried next.
    pub next_attempt: Option<DateTime<Utc>>,
    /// Creation.
    pub created: DateTime<Utc>,
    /// When a 2xx answer came.
    pub delivered: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, endpoint, event, event_type, status, attempts, last_http_status, last_error, \
    next_attempt_us, created_us, delivered_us";

fn delivery(row: &AnyRow) -> Result<Delivery, NotifierError> {
    Ok(Delivery {
        id: row.try_get(0)?,
        endpoint: row.try_get(1)?,
        event: row.try_get(2)?,
        event_type: row.try_get(3)?,
        status: row.try_get(4)?,
        attempts: row.try_get(5)?,
        last_http_status: row.try_get(6)?,
        last_error: row.try_get(7)?,
        next_attempt: row.try_get::<Option<i64>, _>(8)?.map(from_micros),
        created: from_micros(row.try_get(9)?),
        delivered: row.try_get::<Option<i64>, _>(10)?.map(from_micros),
    })
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this endpoint's.
    pub endpoint: Option<String>,
    /// Only this event's.
    pub event: Option<String>,
    /// Only in this status.
    pub status: Option<&'static str>,
}

/// A delivery the worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its account.
    pub account: String,
    /// `whdel_…`
    pub id: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// What a claimed delivery is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The endpoint's id.
    pub endpoint: String,
    /// Its URL.
    pub url: String,
    /// The secrets that sign.
    pub secrets: Secrets,
    /// Why the endpoint is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// Whether the endpoint has a failure record to clear on success.
    pub failing: bool,
    /// The event id (`webhook-id`).
    pub event: String,
    /// The body.
    pub body: String,
}

/// Inserts pending deliveries due now, one per (endpoint, event), skipping
/// those that exist; returns how many were created.
pub(super) async fn insert_many(
    tx: &mut billing_db::Tx,
    account: &str,
    pairs: &[(&str, &super::Received)],
    now_us: i64,
) -> Result<usize, NotifierError> {
    if pairs.is_empty() {
        return Ok(0);
    }
    // `$1` the account, `$2` the time, then five values per delivery.
    let rows: Vec<String> = (0..pairs.len())
        .map(|i| {
            let n = 3 + i * 4;
            format!(
                "($1, ${}, ${}, ${}, ${}, 'pending', 0, 0, '', $2, $2, $2, NULL)",
                n,
                n + 1,
                n + 2,
                n + 3
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO webhook_deliveries (account, id, endpoint, event, event_type, status, attempts, \
         last_http_status, last_error, next_attempt_us, created_us, updated_us, delivered_us) \
         VALUES {} ON CONFLICT (account, endpoint, event) DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account)
        .bind(now_us);
    for (endpoint, event) in pairs {
        query = query
            .bind(billing_server::ids::new_id("whdel"))
            .bind(*endpoint)
            .bind(&event.id)
            .bind(&event.event_type);
    }
    let inserted = query.execute(&mut **tx).await?.rows_affected();
    Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
}

/// Inserts a pending delivery due now; returns its id, or `None` when the
/// endpoint already has one for the event.
pub(super) async fn insert(
    tx: &mut billing_db::Tx,
    account: &str,
    endpoint: &str,
    (event, event_type): (&str, &str),
    now_us: i64,
) -> Result<Option<String>, NotifierError> {
    let id = billing_server::ids::new_id("whdel");
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (account, id, endpoint, event, event_type, status, attempts, \
         last_http_status, last_error, next_attempt_us, created_us, updated_us, delivered_us) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, '', $6, $6, $6, NULL) \
         ON CONFLICT (account, endpoint, event) DO NOTHING",
    )
    .bind(account)
    .bind(&id)
    .bind(endpoint)
    .bind(event)
    .bind(event_type)
    .bind(now_us)
    .execute(&mut **tx)
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

impl Store {
    /// Claims up to `limit` due deliveries for `lease`: their next attempt
    /// moves to the lease's end, so another worker (or this one after a
    /// crash) takes them only when the lease runs out. On PostgreSQL rows
    /// another worker is claiming are skipped; SQLite has one writer.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: i64,
    ) -> Result<Vec<Claimed>, NotifierError> {
        let skip_locked = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET next_attempt_us = $1 WHERE status = 'pending' AND (account, id) IN \
             (SELECT account, id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_us <= $2 \
             ORDER BY next_attempt_us LIMIT $3{skip_locked}) RETURNING account, id, attempts"
        );
        // Idle most of the time: look before taking the writer.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_us <= $1 LIMIT 1",
        )
        .bind(to_micros(now))
        .fetch_optional(self.db.pool())
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(now + lease))
            .bind(to_micros(now))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    account: row.try_get(0)?,
                    id: row.try_get(1)?,
                    attempts: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// What each claimed delivery is sent with (`None` where its endpoint
    /// is gone), in the order given: one query per account of the batch,
    /// not one per delivery.
    pub async fn targets(
        &self,
        claimed: &[Claimed],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<Target>>, NotifierError> {
        let mut found: std::collections::HashMap<(String, String), Target> =
            std::collections::HashMap::new();
        let mut accounts: Vec<&str> = claimed.iter().map(|c| c.account.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        for account in accounts {
            let ids: Vec<&str> = claimed
                .iter()
                .filter(|c| c.account == account)
                .map(|c| c.id.as_str())
                .collect();
            let sql = format!(
                "SELECT d.id, e.id, e.url, e.secret, e.old_secret, e.old_secret_expires_us, e.disabled_reason, \
                 d.event, i.body, e.failing_since_us \
                 FROM webhook_deliveries d \
                 JOIN webhook_endpoints e ON e.account = d.account AND e.id = d.endpoint \
                 JOIN inbox i ON i.account = d.account AND i.id = d.event \
                 WHERE d.account = $1 AND d.id IN ({})",
                billing_db::sql::list(ids.len(), 2)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
            for id in ids {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                let target = Target {
                    endpoint: row.try_get(1)?,
                    url: row.try_get(2)?,
                    secrets: secrets(&row, 3, now)?,
                    disabled_reason: row.try_get(6)?,
                    failing: row.try_get::<Option<i64>, _>(9)?.is_some(),
                    event: row.try_get(7)?,
                    body: row.try_get(8)?,
                };
                found.insert((account.to_owned(), row.try_get(0)?), target);
            }
        }
        Ok(claimed
            .iter()
            .map(|c| found.remove(&(c.account.clone(), c.id.clone())))
            .collect())
    }

    /// A page of deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        account: &str,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<(Vec<Delivery>, String), NotifierError> {
        let rows = Conditions::new("account", account)
            .eq("endpoint", filter.endpoint.as_deref())
            .eq("event", filter.event.as_deref())
            .eq("status", filter.status)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM webhook_deliveries"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let found = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(found, |d| &d.id))
    }

    /// One delivery.
    pub async fn delivery(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Delivery>, NotifierError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "webhook_deliveries", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(delivery).transpose()
    }

    /// Makes a delivery pending again with its next attempt now.
    pub async fn retry(
        &self,
        account: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Delivery, NotifierError> {
        let now_us = to_micros(now);
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_us = $1, updated_us = $1 \
             WHERE account = $2 AND id = $3 RETURNING {COLUMNS}"
        );
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_us)
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let found = row
            .as_ref()
            .map(delivery)
            .transpose()?
            .ok_or_else(|| NotifierError::not_found("webhook delivery", id))?;
        tx.commit().await?;
        Ok(found)
    }

    /// Stores a test event and its one delivery to `endpoint`, due now.
    pub async fn test_delivery(
        &self,
        account: &str,
        endpoint: &str,
        (event, event_type, body): (&str, &str, &str),
        now: DateTime<Utc>,
    ) -> Result<Delivery, NotifierError> {
        let now_us = to_micros(now);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO inbox (account, id, source, event_type, body, created_us, received_us, published_us) \
             VALUES ($1, $2, 'notifier', $3, $4, $5, $5, $5)",
        )
        .bind(account)
        .bind(event)
        .bind(event_type)
        .bind(body)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        let id = insert(&mut tx, account, endpoint, (event, event_type), now_us)
            .await?
            .ok_or_else(|| {
                NotifierError::Corrupt(format!("test event {event} already delivered"))
            })?;
        let row = billing_db::sql::one_of_account(COLUMNS, "webhook_deliveries", account, &id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        delivery(&row)
    }
}
