//! Leases on background work items, so replicas split their background
//! work instead of repeating it (issue 19; docs/operations.md).
//!
//! Every service database that runs background jobs has the same
//! `job_leases` table (see the service's migrations): one row per item a
//! process is working on, `(job, item)` its key, `holder` the process's
//! instance name and `until_us` when the lease runs out if the holder dies.
//! A worker lists its due items as before, [`take`]s them in one write
//! transaction (getting those no other live holder has), works on what it
//! got and [`give_back`]s them in another. The work itself stays keyed and
//! conditional: a lease is what keeps two replicas from doing the same
//! item's work at once, not what makes it happen once.
//!
//! Leases run on the system clock, whatever a service's test clock says:
//! they are about processes, not billing time.

use crate::{Db, StoreError};

/// Takes the leases of `items` of `job` for `holder` until `until_us`:
/// each is taken when nobody holds it, its lease ran out at `now_us`, or
/// `holder` has it already. Returns the items taken, in `items`' order.
///
/// One write transaction for the lot. Also forgets `job`'s leases that ran
/// out (their holders died), so the table holds only work in progress.
pub async fn take(
    db: &Db,
    job: &str,
    items: &[String],
    holder: &str,
    now_us: i64,
    until_us: i64,
) -> Result<Vec<String>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM job_leases WHERE job = $1 AND until_us <= $2")
        .bind(job)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
    // In one order for every taker, so two takers never deadlock.
    let mut order: Vec<&String> = items.iter().collect();
    order.sort_unstable();
    order.dedup();
    let mut taken = Vec::with_capacity(items.len());
    for item in order {
        // The conflict's WHERE sees the committed row: on PostgreSQL a
        // concurrent taker's insert makes this one wait for its commit.
        let affected = sqlx::query(
            "INSERT INTO job_leases (job, item, holder, until_us) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, item) DO UPDATE SET holder = excluded.holder, \
             until_us = excluded.until_us \
             WHERE job_leases.until_us <= $5 OR job_leases.holder = $3",
        )
        .bind(job)
        .bind(item)
        .bind(holder)
        .bind(until_us)
        .bind(now_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if affected == 1 {
            taken.push(item);
        }
    }
    tx.commit().await?;
    Ok(items
        .iter()
        .filter(|item| taken.binary_search(item).is_ok())
        .cloned()
        .collect())
}

/// Gives `holder`'s leases on `items` of `job` back, in one write
/// transaction.
pub async fn give_back(
    db: &Db,
    job: &str,
    items: &[String],
    holder: &str,
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    for item in items {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND item = $2 AND holder = $3")
            .bind(job)
            .bind(item)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Gives back every lease `holder` has: a process starting under that name
/// works on nothing yet, so they are a dead predecessor's. Returns how many.
pub async fn give_back_all(db: &Db, holder: &str) -> Result<u64, StoreError> {
    let mut tx = db.begin_write().await?;
    let released = sqlx::query("DELETE FROM job_leases WHERE holder = $1")
        .bind(holder)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(released)
}
