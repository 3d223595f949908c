//! Which series' customers invoicing knows, and the once-a-day report of
//! usage it does not (`meter.usage_unattributed`).

use billing_db::events::{NewEvent, Outbox};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Store;
use crate::error::MeterError;

/// The event type.
pub const USAGE_UNATTRIBUTED: &str = "meter.usage_unattributed";
/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// A series whose customer invoicing has not been found to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unattributed {
    /// Series id.
    pub id: i64,
    /// Its account.
    pub account: String,
    /// Its meter.
    pub meter: String,
    /// Its customer.
    pub customer: String,
    /// The last day reported, if any.
    pub reported_day: Option<i64>,
}

/// The stored data of `meter.usage_unattributed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattributedUsage {
    /// The meter.
    pub meter: String,
    /// The customer id the usage named.
    pub customer: String,
    /// The day reported (days since the epoch, UTC).
    pub day: i64,
    /// The start of the latest hour with usage, microseconds.
    pub last_usage_hour_us: i64,
}

impl Store {
    /// Up to `limit` series not known to be attributed, after series `after`.
    pub async fn unattributed(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Unattributed>, MeterError> {
        let rows = sqlx::query(
            "SELECT id, account, meter_id, customer, reported_day FROM meter_series \
             WHERE attributed_us IS NULL AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unattributed {
                    id: row.try_get(0)?,
                    account: row.try_get(1)?,
                    meter: row.try_get(2)?,
                    customer: row.try_get(3)?,
                    reported_day: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The start of the series' latest hour with usage, if any.
    pub async fn last_usage_hour(&self, series: i64) -> Result<Option<i64>, MeterError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(bucket_us) FROM usage_buckets WHERE series_id = $1")
                .bind(series)
                .fetch_one(self.db.pool())
                .await?,
        )
    }

    /// Records that invoicing knows the series' customer.
    pub async fn mark_attributed(&self, series: i64, now_us: i64) -> Result<(), MeterError> {
        sqlx::query("UPDATE meter_series SET attributed_us = $1 WHERE id = $2")
            .bind(now_us)
            .bind(series)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Writes `meter.usage_unattributed` for the series and `usage.day`,
    /// unless that day (or a later one) was reported already: the day is
    /// recorded in the event's transaction, so it is reported once.
    pub async fn report_unattributed(
        &self,
        series: &Unattributed,
        usage: &UnattributedUsage,
        now_us: i64,
    ) -> Result<bool, MeterError> {
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE meter_series SET reported_day = $1 WHERE id = $2 \
             AND (reported_day IS NULL OR reported_day < $1)",
        )
        .bind(usage.day)
        .bind(series.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut outbox = Outbox::new();
        outbox.push(
            billing_server::ids::new_id("evt"),
            NewEvent {
                event_type: USAGE_UNATTRIBUTED,
                subject: &series.customer,
                data: serde_json::to_string(usage)?,
            },
        );
        outbox
            .write(&mut tx, self.db.backend(), &series.account, now_us)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
