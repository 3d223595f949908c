//! Usage reads: full hourly buckets plus the raw events of partial edge hours.

use std::collections::HashMap;

use billing_db::Backend;
use billing_money::Decimal;
use sqlx::Row;

use super::ingest::bucket_row;
use super::{Store, decimal};
use crate::domain::usage::{Aggregate, RangePlan};
use crate::error::MeterError;

/// What a usage query needs from the database.
#[derive(Debug, Clone, Default)]
pub struct UsageData {
    /// Full buckets by start.
    pub buckets: Vec<(i64, Aggregate)>,
    /// Events in the partial edges: (timestamp, identifier, value).
    pub edge_events: Vec<(i64, String, Decimal)>,
    /// The series' `late_version`, read with its buckets ([`Store::usage_many`]
    /// only, when the range had any).
    pub late_version: Option<i64>,
}

impl Store {
    /// Reads the buckets and edge events of a planned range. `window_us` is
    /// the grouping width (buckets of one window are returned pre-merged
    /// where the backend can do it exactly); `last` says whether the LAST
    /// value is needed.
    pub async fn usage(
        &self,
        account: &str,
        meter: &str,
        customer: &str,
        plan: &RangePlan,
        window_us: i64,
        last: bool,
    ) -> Result<UsageData, MeterError> {
        let mut data = UsageData::default();
        let Some(series) = self.find_series(account, meter, customer).await? else {
            // No event ever reached this series.
            return Ok(data);
        };
        let (first, end) = plan.buckets;
        if first < end {
            data.buckets = match self.db.backend() {
                Backend::Postgres => {
                    self.windows_postgres(series, (first, end), window_us, last)
                        .await?
                }
                Backend::Sqlite => self.buckets_sqlite(series, (first, end)).await?,
            };
        }
        let [(a_start, a_end), (b_start, b_end)] = plan.edges;
        if a_start < a_end || b_start < b_end {
            let rows = sqlx::query(
                "SELECT timestamp_us, identifier, CAST(value AS TEXT) FROM meter_events \
                 WHERE series_id = $1 AND cancelled_us IS NULL \
                 AND ((timestamp_us >= $2 AND timestamp_us < $3) OR (timestamp_us >= $4 AND timestamp_us < $5))",
            )
            .bind(series)
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

    /// The `late_version` of each series (see the migration 0005).
    pub async fn late_versions(&self, series: &[i64]) -> Result<HashMap<i64, i64>, MeterError> {
        if series.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, late_version FROM meter_series WHERE id IN ({})",
            billing_db::sql::list(series.len(), 1)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in series {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// The buckets and edge events of several series over one planned
    /// range, in one statement each; buckets pre-merged per series on
    /// PostgreSQL, each series with its `late_version` (read in the same
    /// statement, so a caller learns it without a round trip of its own).
    /// `last` says whether the LAST value is needed.
    pub async fn usage_many(
        &self,
        series: &[i64],
        plan: &RangePlan,
        last: bool,
    ) -> Result<HashMap<i64, UsageData>, MeterError> {
        let mut out: HashMap<i64, UsageData> = HashMap::new();
        if series.is_empty() {
            return Ok(out);
        }
        let ids = billing_db::sql::list(series.len(), 3);
        let (first, end) = plan.buckets;
        if first < end {
            let columns = match self.db.backend() {
                Backend::Postgres => {
                    let last_columns = if last {
                        "(ARRAY_AGG(last_ts_us ORDER BY last_ts_us DESC, last_identifier DESC))[1], \
                         (ARRAY_AGG(last_identifier ORDER BY last_ts_us DESC, last_identifier DESC))[1], \
                         CAST((ARRAY_AGG(last_value ORDER BY last_ts_us DESC, last_identifier DESC))[1] AS TEXT)"
                    } else {
                        "MAX(last_ts_us), '', '0'"
                    };
                    format!(
                        "series_id, MIN(bucket_us), CAST(SUM(event_count) AS BIGINT), CAST(SUM(value_sum) AS TEXT), \
                         CAST(MAX(value_max) AS TEXT), {last_columns}, MAX(m.late_version) FROM usage_buckets \
                         JOIN meter_series m ON m.id = series_id \
                         WHERE bucket_us >= $1 AND bucket_us < $2 AND series_id IN ({ids}) GROUP BY series_id"
                    )
                }
                Backend::Sqlite => format!(
                    "series_id, bucket_us, event_count, value_sum, value_max, last_ts_us, last_identifier, \
                     last_value, m.late_version FROM usage_buckets JOIN meter_series m ON m.id = series_id \
                     WHERE bucket_us >= $1 AND bucket_us < $2 AND series_id IN ({ids})"
                ),
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {columns}")))
                .bind(first)
                .bind(end);
            for id in series {
                query = query.bind(*id);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                let id: i64 = row.try_get(0)?;
                let bucket = (row.try_get(1)?, bucket_row(&row, 2)?);
                let data = out.entry(id).or_default();
                data.buckets.push(bucket);
                data.late_version = Some(row.try_get(8)?);
            }
        }
        let [(a_start, a_end), (b_start, b_end)] = plan.edges;
        if a_start < a_end || b_start < b_end {
            let ids = billing_db::sql::list(series.len(), 5);
            let sql = format!(
                "SELECT series_id, timestamp_us, identifier, CAST(value AS TEXT) FROM meter_events \
                 WHERE series_id IN ({ids}) AND cancelled_us IS NULL \
                 AND ((timestamp_us >= $1 AND timestamp_us < $2) OR (timestamp_us >= $3 AND timestamp_us < $4))"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(a_start)
                .bind(a_end)
                .bind(b_start)
                .bind(b_end);
            for id in series {
                query = query.bind(*id);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                let id: i64 = row.try_get(0)?;
                out.entry(id).or_default().edge_events.push((
                    row.try_get(1)?,
                    row.try_get(2)?,
                    decimal(&row.try_get::<String, _>(3)?)?,
                ));
            }
        }
        Ok(out)
    }

    /// PostgreSQL: one row per window, summed exactly in NUMERIC; each row is
    /// keyed by its earliest bucket, which lies in the window.
    async fn windows_postgres(
        &self,
        series: i64,
        (first, end): (i64, i64),
        window_us: i64,
        last: bool,
    ) -> Result<Vec<(i64, Aggregate)>, MeterError> {
        let last_columns = if last {
            "(ARRAY_AGG(last_ts_us ORDER BY last_ts_us DESC, last_identifier DESC))[1], \
             (ARRAY_AGG(last_identifier ORDER BY last_ts_us DESC, last_identifier DESC))[1], \
             CAST((ARRAY_AGG(last_value ORDER BY last_ts_us DESC, last_identifier DESC))[1] AS TEXT)"
        } else {
            "MAX(last_ts_us), '', '0'"
        };
        let sql = format!(
            "SELECT MIN(bucket_us), CAST(SUM(event_count) AS BIGINT), CAST(SUM(value_sum) AS TEXT), \
             CAST(MAX(value_max) AS TEXT), {last_columns} FROM usage_buckets \
             WHERE series_id = $1 AND bucket_us >= $2 AND bucket_us < $3 \
             GROUP BY bucket_us / $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(series)
            .bind(first)
            .bind(end)
            .bind(window_us)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, bucket_row(row, 1)?)))
            .collect()
    }

    /// SQLite: the bucket rows (decimal TEXT), merged exactly in Rust.
    async fn buckets_sqlite(
        &self,
        series: i64,
        (first, end): (i64, i64),
    ) -> Result<Vec<(i64, Aggregate)>, MeterError> {
        let rows = sqlx::query(
            "SELECT bucket_us, event_count, value_sum, value_max, last_ts_us, last_identifier, last_value \
             FROM usage_buckets WHERE series_id = $1 AND bucket_us >= $2 AND bucket_us < $3 \
             ORDER BY bucket_us",
        )
        .bind(series)
        .bind(first)
        .bind(end)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, bucket_row(row, 1)?)))
            .collect()
    }
}
