//! A replica's leases on its background work (issue 19): the name it
//! holds them under, how long one lasts if it dies, and the system clock
//! they run on (`billing_db::lease` keeps them).
//!
//! A job lists its due items, [`Leases::take`]s them, works on those it
//! got and [`Leases::give_back`]s them, so several replicas split the work
//! and none does an item another is doing.

use std::sync::Arc;

use billing_db::{Db, StoreError, lease};
use chrono::TimeDelta;

use crate::clock::Clock;
use crate::time::to_micros;

/// How long a lease holds when its holder does not give it back (a crash).
pub const LEASE_TERM: TimeDelta = TimeDelta::seconds(120);

/// One replica's leases in one service's database.
#[derive(Debug, Clone)]
pub struct Leases {
    db: Db,
    holder: Arc<str>,
}

impl Leases {
    /// Leases held under `holder` (the replica's instance name:
    /// [`crate::config::instance_name`]).
    pub fn new(db: Db, holder: &str) -> Self {
        Self {
            db,
            holder: holder.into(),
        }
    }

    /// The name leases are held under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes what it can of `items` of `job`; returns those taken.
    pub async fn take(&self, job: &str, items: &[String]) -> Result<Vec<String>, StoreError> {
        let now = Clock::system().now();
        let until = to_micros(now + LEASE_TERM);
        lease::take(&self.db, job, items, &self.holder, to_micros(now), until).await
    }

    /// Takes one item of `job` if nobody else has it; whether it did.
    pub async fn take_one(&self, job: &str, item: &str) -> Result<bool, StoreError> {
        Ok(!self.take(job, &[item.to_owned()]).await?.is_empty())
    }

    /// Gives `items` of `job` back. A failure is only logged: the leases
    /// run out by themselves.
    pub async fn give_back(&self, job: &str, items: &[String]) {
        if let Err(error) = lease::give_back(&self.db, job, items, &self.holder).await {
            tracing::warn!(%error, job, "could not give leases back; they run out by themselves");
        }
    }

    /// Gives back whatever a dead predecessor of this name held (at start).
    pub async fn give_back_all(&self) -> Result<u64, StoreError> {
        lease::give_back_all(&self.db, &self.holder).await
    }
}

/// An item's lease key from its account and id.
pub fn item_key(account: &str, id: &str) -> String {
    format!("{account}/{id}")
}
