//! Usage thresholds that fired (DESIGN.md §12): one row per subscription,
//! period and threshold, written in the transaction of its event, so each
//! fires once per period whatever crashes, retries or replicas.

use billing_server::time::to_micros;

use super::Store;
use super::events::write_one;
use crate::domain::realtime::{USAGE_EXCEEDED_THRESHOLD, UsageThresholdCrossing};
use crate::error::InvoicingError;

impl Store {
    /// The thresholds (by index) of the subscription that fired in the
    /// period starting at `period_start_us`.
    pub async fn fired_thresholds(
        &self,
        account: &str,
        subscription: &str,
        period_start_us: i64,
    ) -> Result<Vec<usize>, InvoicingError> {
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT threshold FROM usage_threshold_crossings WHERE account = $1 \
             AND subscription = $2 AND period_start_us = $3",
        )
        .bind(account)
        .bind(subscription)
        .bind(period_start_us)
        .fetch_all(self.db.pool())
        .await?;
        found
            .into_iter()
            .map(|i| {
                usize::try_from(i).map_err(|_| InvoicingError::Corrupt(format!("threshold {i}")))
            })
            .collect()
    }

    /// Records a crossing and its event, unless that threshold already
    /// fired in that period; true when this call recorded it.
    pub async fn record_crossing(
        &self,
        account: &str,
        crossing: &UsageThresholdCrossing,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let now_us = to_micros(crossing.created);
        let inserted = sqlx::query(
            "INSERT INTO usage_threshold_crossings (account, subscription, period_start_us, threshold, \
             usage, created_us) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account, subscription, period_start_us, threshold) DO NOTHING",
        )
        .bind(account)
        .bind(&crossing.subscription)
        .bind(to_micros(crossing.period_start))
        .bind(i64::try_from(crossing.threshold_index).unwrap_or(i64::MAX))
        .bind(crossing.usage.to_string())
        .bind(now_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let event = (USAGE_EXCEEDED_THRESHOLD, crossing.subscription.as_str());
        write_one(&mut tx, self.db.backend(), account, event, crossing, now_us).await?;
        tx.commit().await?;
        Ok(true)
    }
}
