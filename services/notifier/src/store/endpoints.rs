//! Webhook endpoints and their secrets.

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::domain::endpoint::{Endpoint, OLD_SECRET_GRACE};
use crate::error::NotifierError;

pub(super) const COLUMNS: &str = "id, url, enabled_events, description, metadata, disabled_reason, \
    failing_since_us, created_us, updated_us";

pub(super) fn endpoint(row: &AnyRow) -> Result<Endpoint, NotifierError> {
    let events: String = row.try_get(2)?;
    let metadata: String = row.try_get(4)?;
    Ok(Endpoint {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        enabled_events: serde_json::from_str(&events)?,
        description: row.try_get(3)?,
        metadata: serde_json::from_str(&metadata)?,
        disabled_reason: row.try_get(5)?,
        failing_since: row.try_get::<Option<i64>, _>(6)?.map(from_micros),
        created: from_micros(row.try_get(7)?),
        updated: from_micros(row.try_get(8)?),
    })
}

/// The secrets that sign an endpoint's deliveries now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// The current one.
    pub current: String,
    /// The rotated-out one, while it still signs.
    pub old: Option<String>,
}

/// A change to an endpoint, applied under its lock.
pub type EndpointChanges = Box<dyn FnOnce(&mut Endpoint) + Send>;

impl Store {
    /// Inserts an endpoint with its secret.
    pub async fn create_endpoint(
        &self,
        account: &str,
        endpoint: Endpoint,
        secret: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Endpoint, String), NotifierError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (account, id, url, enabled_events, description, metadata, secret, \
             old_secret, old_secret_expires_us, disabled_reason, failing_since_us, created_us, updated_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, NULL, $8, $8)",
        )
        .bind(account)
        .bind(&endpoint.id)
        .bind(&endpoint.url)
        .bind(serde_json::to_string(&endpoint.enabled_events)?)
        .bind(&endpoint.description)
        .bind(serde_json::to_string(&endpoint.metadata)?)
        .bind(secret)
        .bind(to_micros(endpoint.created))
        .execute(&mut *tx)
        .await?;
        let now_us = to_micros(endpoint.created);
        // The replay of a create returns the secret again: the same caller
        // retrying the same request_id lost the first response.
        let created = (endpoint, secret.to_owned());
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, created).await?)
    }

    /// One endpoint of the account.
    pub async fn endpoint(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Endpoint>, NotifierError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "webhook_endpoints", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    /// A page of endpoints, newest first.
    pub async fn list_endpoints(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Endpoint>, String), NotifierError> {
        let rows = Conditions::new("account", account)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM webhook_endpoints"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let found = rows.iter().map(endpoint).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(found, |e| &e.id))
    }

    /// Locks an endpoint, applies `change`, saves it. Re-enabling clears
    /// its failure record.
    pub async fn update_endpoint(
        &self,
        account: &str,
        id: &str,
        change: EndpointChanges,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Endpoint, NotifierError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut found = row
            .as_ref()
            .map(endpoint)
            .transpose()?
            .ok_or_else(|| NotifierError::not_found("webhook endpoint", id))?;
        let was_enabled = found.enabled();
        change(&mut found);
        if found.enabled() && !was_enabled {
            found.failing_since = None;
        }
        found.updated = now;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, enabled_events = $2, description = $3, metadata = $4, \
             disabled_reason = $5, failing_since_us = $6, updated_us = $7 WHERE account = $8 AND id = $9",
        )
        .bind(&found.url)
        .bind(serde_json::to_string(&found.enabled_events)?)
        .bind(&found.description)
        .bind(serde_json::to_string(&found.metadata)?)
        .bind(found.disabled_reason.as_deref())
        .bind(found.failing_since.map(to_micros))
        .bind(to_micros(now))
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok(idempotency::finish(&self.db, tx, account, key, to_micros(now), found).await?)
    }

    /// Deletes an endpoint. Its pending deliveries fail, unsent, when the
    /// worker next takes them (it finds no endpoint).
    pub async fn delete_endpoint(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Endpoint, NotifierError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "DELETE FROM webhook_endpoints WHERE account = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let deleted = row
            .as_ref()
            .map(endpoint)
            .transpose()?
            .ok_or_else(|| NotifierError::not_found("webhook endpoint", id))?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Replaces the secret; the old one signs beside it for
    /// [`OLD_SECRET_GRACE`].
    pub async fn rotate_secret(
        &self,
        account: &str,
        id: &str,
        secret: &str,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<(Endpoint, String), NotifierError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let sql = format!(
            "UPDATE webhook_endpoints SET old_secret = secret, old_secret_expires_us = $1, secret = $2, \
             updated_us = $3 WHERE account = $4 AND id = $5 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_micros(now + OLD_SECRET_GRACE))
            .bind(secret)
            .bind(to_micros(now))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let rotated = row
            .as_ref()
            .map(endpoint)
            .transpose()?
            .ok_or_else(|| NotifierError::not_found("webhook endpoint", id))?;
        let value = (rotated, secret.to_owned());
        Ok(idempotency::finish(&self.db, tx, account, key, to_micros(now), value).await?)
    }
}

/// The secrets of a row's `secret, old_secret, old_secret_expires_us` at
/// `first`, as they sign at `now`.
pub(super) fn secrets(
    row: &AnyRow,
    first: usize,
    now: DateTime<Utc>,
) -> Result<Secrets, NotifierError> {
    let old: Option<String> = row.try_get(first + 1)?;
    let expires: Option<i64> = row.try_get(first + 2)?;
    Ok(Secrets {
        current: row.try_get(first)?,
        old: old.filter(|_| expires.is_some_and(|e| e > to_micros(now))),
    })
}
