//! Usage reads: full hourly buckets plus the raw events of partial edge hours.

use billing_money::Decimal;
use sqlx::Row;

use super::ingest::bucket_row;
use super::{Store, decimal};
use crate::domain::MeterError;
use crate::domain::usage::{Aggregate, RangePlan};

/// What a usage query needs from the database.
#[derive(Debug, Clone, Default)]
pub struct UsageData {
    /// Full buckets by start.
    pub buckets: Vec<(i64, Aggregate)>,
    /// Events in the partial edges: (timestamp, identifier, value).
    pub edge_events: Vec<(i64, String, Decimal)>,
}

impl Store {
    /// Reads the buckets and edge events of a planned range.
    pub async fn usage(
        &self,
        account: &str,
        meter: &str,
        customer: &str,
        plan: &RangePlan,
    ) -> Result<UsageData, MeterError> {
        let mut data = UsageData::default();
        let (first, last) = plan.buckets;
        if first < last {
            let rows = sqlx::query(
                "SELECT bucket_us, event_count, CAST(value_sum AS TEXT), CAST(value_max AS TEXT), last_ts_us, \
                 last_identifier, CAST(last_value AS TEXT) FROM usage_buckets \
                 WHERE account = $1 AND meter_id = $2 AND customer = $3 AND bucket_us >= $4 AND bucket_us < $5 \
                 ORDER BY bucket_us",
            )
            .bind(account)
            .bind(meter)
            .bind(customer)
            .bind(first)
            .bind(last)
            .fetch_all(self.db.pool())
            .await?;
            for row in &rows {
                data.buckets.push((row.try_get(0)?, bucket_row(row, 1)?));
            }
        }
        let [(a_start, a_end), (b_start, b_end)] = plan.edges;
        if a_start < a_end || b_start < b_end {
            let rows = sqlx::query(
                "SELECT timestamp_us, identifier, CAST(value AS TEXT) FROM meter_events \
                 WHERE account = $1 AND meter_id = $2 AND customer = $3 AND cancelled_us IS NULL \
                 AND ((timestamp_us >= $4 AND timestamp_us < $5) OR (timestamp_us >= $6 AND timestamp_us < $7))",
            )
            .bind(account)
            .bind(meter)
            .bind(customer)
            .bind(a_start)
            .bind(a_end)
            .bind(b_start)
            .bind(b_end)
            .fetch_all(self.db.pool())
            .await?;
            for row in &rows {
                data.edge_events.push((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    decimal(&row.try_get::<String, _>(2)?)?,
                ));
            }
        }
        Ok(data)
    }
}
