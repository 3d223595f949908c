//! `request_id` idempotency (DESIGN.md section 2, AIP-155).
//!
//! Every service database has the same `idempotency_keys` table (see each
//! service's first migration). A key is scoped to an account; its fingerprint
//! covers the method and the whole request except the key itself, so the same
//! key with any other payload, or on another method, is refused.
//!
//! The lookup and the record happen inside the caller's write transaction, so a
//! replay and the original can never both write.

use sqlx::Row;

use crate::{StoreError, Tx};

/// Keys are kept at least this long (DESIGN.md: 30 days).
pub const RETENTION_DAYS: i64 = 30;

/// The longest `request_id` accepted.
pub const REQUEST_ID_MAX_CHARS: usize = 100;

/// A client's idempotency key with the fingerprint of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client-chosen `request_id`.
    pub request_id: String,
    /// Hex digest of the method and request payload, without the key.
    pub fingerprint: String,
}

/// What an earlier use of the key says about this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// Never seen: do the work and [`record`] it.
    None,
    /// Same key, same payload: return this stored response, write nothing.
    Replay(String),
    /// Same key, different payload or method.
    Reused,
}

/// Looks the key up inside the write transaction.
pub async fn lookup(
    tx: &mut Tx,
    account: &str,
    key: &IdempotencyKey,
) -> Result<Prior, sqlx::Error> {
    let row = sqlx::query(
        "SELECT fingerprint, response FROM idempotency_keys WHERE account = $1 AND request_id = $2",
    )
    .bind(account)
    .bind(&key.request_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Prior::None);
    };
    let fingerprint: String = row.try_get(0)?;
    if fingerprint == key.fingerprint {
        Ok(Prior::Replay(row.try_get(1)?))
    } else {
        Ok(Prior::Reused)
    }
}

/// Stores the response of a first use of the key, in the same transaction as its writes.
///
/// A concurrent first use of the same key makes one of the two commits fail
/// with a unique violation; that caller retries and finds the other's record.
pub async fn record(
    tx: &mut Tx,
    account: &str,
    key: &IdempotencyKey,
    response: &str,
    now_us: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (account, request_id, fingerprint, response, created_us) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account)
    .bind(&key.request_id)
    .bind(&key.fingerprint)
    .bind(response)
    .bind(now_us)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes keys created before `cutoff_us`; returns how many.
pub async fn purge_before(pool: &sqlx::AnyPool, cutoff_us: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM idempotency_keys WHERE created_us < $1")
        .bind(cutoff_us)
        .execute(pool)
        .await?;
    Ok(result.rows_affected())
}

/// The start of an idempotent write: a transaction to do the work in, or the
/// stored response of an earlier identical request.
#[derive(Debug)]
pub enum Begun<T> {
    /// Do the work in this transaction, then [`finish`].
    Fresh(Tx),
    /// Return this; write nothing.
    Replay(T),
}

/// Opens a write transaction and checks the key in it.
pub async fn begin<T: serde::de::DeserializeOwned>(
    db: &crate::Db,
    account: &str,
    key: Option<&IdempotencyKey>,
) -> Result<Begun<T>, StoreError> {
    let mut tx = db.begin_write().await?;
    if let Some(key) = key {
        match lookup(&mut tx, account, key).await? {
            Prior::None => {}
            Prior::Replay(response) => return Ok(Begun::Replay(serde_json::from_str(&response)?)),
            Prior::Reused => return Err(StoreError::KeyReused),
        }
    }
    Ok(Begun::Fresh(tx))
}

/// Records the key with `value` and commits. When a concurrent request with
/// the same key committed first, returns that request's response instead.
pub async fn finish<T: serde::Serialize + serde::de::DeserializeOwned>(
    db: &crate::Db,
    mut tx: Tx,
    account: &str,
    key: Option<&IdempotencyKey>,
    now_us: i64,
    value: T,
) -> Result<T, StoreError> {
    if let Some(key) = key {
        let response = serde_json::to_string(&value)?;
        if let Err(error) = record(&mut tx, account, key, &response, now_us).await {
            if !crate::is_unique_violation(&error) {
                return Err(error.into());
            }
            tx.rollback().await?;
            return match begin::<T>(db, account, Some(key)).await? {
                Begun::Replay(stored) => Ok(stored),
                Begun::Fresh(_) => Err(StoreError::Corrupt("idempotency key vanished".into())),
            };
        }
    }
    tx.commit().await?;
    Ok(value)
}
