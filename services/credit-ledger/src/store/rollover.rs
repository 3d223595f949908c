//! RolloverCreditGrants: the old grants' remainder expired and the carried
//! amount granted, in one transaction (DESIGN.md section 11).

use billing_db::events::Outbox;
use billing_db::idempotency::IdempotencyKey;
use billing_server::status::Refuse;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};

use super::grants::{insert_grant, save_grant};
use super::{Begun, Store, transactions};
use crate::domain::grant::Grant;
use crate::domain::rollover;
use crate::error::LedgerError;

/// Most grants one rollover takes.
pub const ROLLOVER_GRANTS_MAX: usize = 20;

/// The grants after a rollover, and the new grant (none when nothing was left).
pub type RolledOver = (Vec<Grant>, Option<Grant>);

impl Store {
    /// Expires what is left of the grants `ids` (one customer's, in one
    /// asset: `carried`'s) and inserts `carried` with that remainder, at most
    /// `carried.amount`. Replays with the same key return the first outcome.
    pub async fn rollover(
        &self,
        account: &str,
        ids: &[String],
        carried: Grant,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<RolledOver, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let mut sorted = ids.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut grants = self.lock_grants(&mut tx, account, &sorted).await?;
        if let Some(missing) = sorted
            .iter()
            .find(|id| !grants.iter().any(|g| &g.id == *id))
        {
            return Err(LedgerError::not_found("credit grant", missing));
        }
        if grants
            .iter()
            .any(|g| g.customer != carried.customer || g.asset != carried.asset)
        {
            return Err(LedgerError::invalid(
                "credit_grants",
                "must all be grants of the carried grant's customer, in its asset",
            ));
        }
        let before = grants.clone();
        let outcome = rollover::expire_remainders(
            &mut grants,
            carried.amount,
            now,
            &mut transactions::new_id,
        )?;
        transactions::append(&mut tx, account, &outcome.expiries).await?;
        let mut outbox = Outbox::new();
        for (grant, old) in grants.iter().zip(&before) {
            if grant != old {
                save_grant(&mut tx, &mut outbox, account, grant).await?;
            }
        }
        let carried = if outcome.carried > 0 {
            let mut carried = carried;
            carried.amount = outcome.carried;
            carried.available = outcome.carried;
            insert_grant(&mut tx, &mut outbox, account, &carried).await?;
            Some(carried)
        } else {
            None
        };
        if let Some(first) = grants.first() {
            let owner = (account, first.customer.as_str());
            self.evaluate_alerts(&mut tx, &mut outbox, owner, &[&first.asset], now)
                .await?;
        }
        let now_us = to_micros(now);
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        self.finish(tx, account, key, now_us, (grants, carried))
            .await
    }
}
