//! Integer ids of (account, meter, customer) series, and their cache.
//!
//! Events and buckets are keyed by a series id instead of three text
//! columns (narrower indexes, integer comparisons). An id, once in
//! `meter_series`, never changes and is never reused, so every process may
//! cache it without invalidation; a new series costs two statements the
//! first time a process meets it, and none after.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sqlx::Row;

use super::Store;
use crate::error::MeterError;

/// Cached series at most; past it the cache starts over (a cold series
/// costs one read). 1M entries take at most about 150 MB.
const CACHE_MAX: usize = 1_000_000;

/// Series per statement: 3 parameters each, far below both backends' limits.
const ROWS_MAX: usize = 1_000;

/// Series ids by account, meter and customer.
#[derive(Debug, Default)]
pub(super) struct SeriesCache {
    ids: Mutex<HashMap<String, i64>>,
}

/// An unambiguous cache key: lengths first, so no separator can collide.
fn cache_key(account: &str, meter: &str, customer: &str) -> String {
    format!(
        "{}:{}:{account}{meter}{customer}",
        account.len(),
        meter.len()
    )
}

impl SeriesCache {
    fn get(&self, account: &str, meter: &str, customer: &str) -> Option<i64> {
        self.get_many(account, &[(meter, customer)])[0]
    }

    /// The cached ids of `pairs` (meter, customer), under one lock.
    fn get_many(&self, account: &str, pairs: &[(&str, &str)]) -> Vec<Option<i64>> {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        pairs
            .iter()
            .map(|(meter, customer)| ids.get(&cache_key(account, meter, customer)).copied())
            .collect()
    }

    fn insert(&self, account: &str, meter: &str, customer: &str, id: i64) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= CACHE_MAX {
            ids.clear();
        }
        ids.insert(cache_key(account, meter, customer), id);
    }
}

impl Store {
    /// The ids of `pairs` (meter, customer) of `account`, in the same order,
    /// creating the series that do not exist yet. Creation commits on its
    /// own: a series without events is harmless, and the id is only used
    /// after it is durable.
    pub(super) async fn series_ids(
        &self,
        account: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<i64>, MeterError> {
        let cached = self.series.get_many(account, pairs);
        let missing: Vec<usize> = (0..pairs.len()).filter(|&i| cached[i].is_none()).collect();
        let mut ids: Vec<i64> = cached.into_iter().map(|id| id.unwrap_or(0)).collect();
        if missing.is_empty() {
            return Ok(ids);
        }
        let mut tx = self.db.begin_write().await?;
        for chunk in missing.chunks(ROWS_MAX) {
            // Key order, so concurrent creators wait on each other's rows in
            // the same order and cannot deadlock.
            let mut rows: Vec<(&str, &str)> = chunk.iter().map(|&i| pairs[i]).collect();
            rows.sort_unstable();
            let sql = format!(
                "INSERT INTO meter_series (account, meter_id, customer) VALUES {} ON CONFLICT DO NOTHING",
                billing_db::sql::values_rows(rows.len(), 3, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (meter, customer) in rows {
                query = query.bind(account).bind(meter).bind(customer);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // A new statement sees the series committed by concurrent creators too.
        let mut found: HashMap<(String, String), i64> = HashMap::with_capacity(missing.len());
        for chunk in missing.chunks(ROWS_MAX) {
            let sql = format!(
                "WITH k(m, c) AS (VALUES {}) SELECT s.id, s.meter_id, s.customer FROM k \
                 JOIN meter_series s ON s.account = $1 AND s.meter_id = k.m AND s.customer = k.c",
                billing_db::sql::values_rows(chunk.len(), 2, 2)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
            for &index in chunk {
                query = query.bind(pairs[index].0).bind(pairs[index].1);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                found.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
            }
        }
        for index in missing {
            let (meter, customer) = pairs[index];
            let id = found
                .get(&(meter.to_owned(), customer.to_owned()))
                .copied()
                .ok_or_else(|| {
                    MeterError::Corrupt(format!("series {meter}/{customer} missing after insert"))
                })?;
            self.series.insert(account, meter, customer, id);
            ids[index] = id;
        }
        Ok(ids)
    }

    /// The ids of `meters` for one customer, in order, where the series
    /// exist: the cached ones, and the rest in one statement (a series that
    /// does not exist is looked up again next time, as by `find_series`).
    pub async fn find_series_of(
        &self,
        account: &str,
        customer: &str,
        meters: &[&str],
    ) -> Result<Vec<Option<i64>>, MeterError> {
        let pairs: Vec<(&str, &str)> = meters.iter().map(|m| (*m, customer)).collect();
        let mut ids = self.series.get_many(account, &pairs);
        let mut missing: Vec<&str> = meters
            .iter()
            .zip(&ids)
            .filter(|(_, id)| id.is_none())
            .map(|(m, _)| *m)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(ids);
        }
        let mut found: HashMap<String, i64> = HashMap::with_capacity(missing.len());
        for chunk in missing.chunks(ROWS_MAX) {
            let sql = format!(
                "SELECT id, meter_id FROM meter_series WHERE account = $1 AND customer = $2 \
                 AND meter_id IN ({})",
                billing_db::sql::list(chunk.len(), 3)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account)
                .bind(customer);
            for meter in chunk {
                query = query.bind(*meter);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                found.insert(row.try_get(1)?, row.try_get(0)?);
            }
        }
        for (meter, id) in meters.iter().zip(ids.iter_mut()) {
            if id.is_none()
                && let Some(found) = found.get(*meter)
            {
                self.series.insert(account, meter, customer, *found);
                *id = Some(*found);
            }
        }
        Ok(ids)
    }

    /// The id of one series, if it has ever had an event.
    pub(super) async fn find_series(
        &self,
        account: &str,
        meter: &str,
        customer: &str,
    ) -> Result<Option<i64>, MeterError> {
        if let Some(id) = self.series.get(account, meter, customer) {
            return Ok(Some(id));
        }
        let row = sqlx::query(
            "SELECT id FROM meter_series WHERE account = $1 AND meter_id = $2 AND customer = $3",
        )
        .bind(account)
        .bind(meter)
        .bind(customer)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get(0)?;
        self.series.insert(account, meter, customer, id);
        Ok(Some(id))
    }
}
