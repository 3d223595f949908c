//! CancelEvent: mark the event cancelled and rebuild its one bucket.
//!
//! The bucket row is locked before the bucket's events are read, so a batch
//! adding to the same bucket concurrently either committed before (and is
//! read) or waits for us (and adds its delta to the rebuilt bucket).

use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, decimal};
use crate::domain::usage::{Aggregate, BUCKET_US, bucket_of};
use crate::error::MeterError;

impl Store {
    /// Cancels one accepted event; returns when it was cancelled.
    pub async fn cancel(
        &self,
        account: &str,
        identifier: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, MeterError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "SELECT series_id, timestamp_us, cancelled_us FROM meter_events \
             WHERE account = $1 AND identifier = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(identifier)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| MeterError::not_found("event", identifier))?;
        let (series, timestamp_us): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if let Some(cancelled_us) = row.try_get::<Option<i64>, _>(2)? {
            return Err(MeterError::conflict(
                "EVENT_ALREADY_CANCELLED",
                format!("the event was cancelled at {}", from_micros(cancelled_us)),
            ));
        }
        sqlx::query(
            "UPDATE meter_events SET cancelled_us = $1 WHERE account = $2 AND identifier = $3",
        )
        .bind(to_micros(now))
        .bind(account)
        .bind(identifier)
        .execute(&mut *tx)
        .await?;

        let bucket = bucket_of(timestamp_us);
        let lock = format!(
            "SELECT event_count FROM usage_buckets WHERE series_id = $1 AND bucket_us = $2{}",
            self.db.for_update()
        );
        sqlx::query(sqlx::AssertSqlSafe(lock))
            .bind(series)
            .bind(bucket)
            .fetch_optional(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT timestamp_us, identifier, CAST(value AS TEXT) FROM meter_events WHERE series_id = $1 \
             AND timestamp_us >= $2 AND timestamp_us < $3 AND cancelled_us IS NULL",
        )
        .bind(series)
        .bind(bucket)
        .bind(bucket + BUCKET_US)
        .fetch_all(&mut *tx)
        .await?;
        let mut rebuilt = Aggregate::empty();
        for row in &rows {
            let event = Aggregate::of(
                row.try_get(0)?,
                &row.try_get::<String, _>(1)?,
                decimal(&row.try_get::<String, _>(2)?)?,
            );
            rebuilt
                .merge(&event)
                .map_err(|e| MeterError::Corrupt(e.to_string()))?;
        }
        if rebuilt.count == 0 {
            sqlx::query("DELETE FROM usage_buckets WHERE series_id = $1 AND bucket_us = $2")
                .bind(series)
                .bind(bucket)
                .execute(&mut *tx)
                .await?;
        } else {
            let sql = format!(
                "UPDATE usage_buckets SET event_count = $1, value_sum = {}, value_max = {}, last_ts_us = $4, \
                 last_identifier = $5, last_value = {} WHERE series_id = $7 AND bucket_us = $8",
                self.decimal_param(2),
                self.decimal_param(3),
                self.decimal_param(6)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(rebuilt.count)
                .bind(rebuilt.sum.to_string())
                .bind(rebuilt.max.to_string())
                .bind(rebuilt.last.0)
                .bind(rebuilt.last.1.clone())
                .bind(rebuilt.last.2.to_string())
                .bind(series)
                .bind(bucket)
                .execute(&mut *tx)
                .await?;
        }
        // Whatever the hour, a reader's cached total may include it.
        super::ingest::bump_late(&mut tx, &[series]).await?;
        tx.commit().await?;
        Ok(now)
    }
}
