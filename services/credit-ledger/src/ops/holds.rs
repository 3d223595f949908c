//! Credit holds: create, release, read, list (DESIGN.md §12). The check
//! that a hold fits runs in the store, under the customer's balance lock.

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use chrono::TimeDelta;

use super::Ledger;
use crate::domain::hold::Hold;
use crate::domain::validate::AmountInput;
use crate::error::LedgerError;

/// A CreateCreditHold request, checked but with its unit not yet resolved.
#[derive(Debug, Clone)]
pub struct HoldInput {
    /// The customer.
    pub customer: String,
    /// The credits to hold.
    pub amount: AmountInput,
    /// 1 to 86,400 seconds.
    pub timeout_seconds: u32,
    /// What the customer's unbilled usage will consume, in the same asset.
    pub unbilled: Option<AmountInput>,
}

impl Ledger {
    /// Holds credits if they are free (idempotent on `key`, which is
    /// required); true when `key` had already made the hold.
    pub async fn create_hold(
        &self,
        account: &str,
        input: HoldInput,
        key: &IdempotencyKey,
    ) -> Result<(Hold, bool), LedgerError> {
        let scale = match input.amount.pricing_unit() {
            Some(id) => self.unit_scale(account, id).await?,
            None => None,
        };
        let (asset, amount) = input
            .amount
            .resolve("amount", scale)
            .map_err(|v| LedgerError::fields(vec![v]))?;
        let unbilled = match &input.unbilled {
            None => 0,
            Some(unbilled) => {
                let (unbilled_asset, value) = unbilled
                    .resolve("unbilled", scale)
                    .map_err(|v| LedgerError::fields(vec![v]))?;
                if unbilled_asset != asset {
                    return Err(LedgerError::fields(vec![FieldViolation::new(
                        "unbilled",
                        "must be in the asset of amount",
                    )]));
                }
                value
            }
        };
        let now = self.clock.now();
        let hold = Hold {
            id: billing_server::ids::new_id("hold"),
            customer: input.customer,
            asset,
            amount,
            request_id: key.request_id.clone(),
            expires_at: now + TimeDelta::seconds(i64::from(input.timeout_seconds)),
            released_at: None,
            created: now,
        };
        self.store.create_hold(account, hold, unbilled, key).await
    }

    /// Releases a hold now (a released or expired one is returned as it is).
    pub async fn release_hold(&self, account: &str, id: &str) -> Result<Hold, LedgerError> {
        self.store
            .release_hold(account, id, self.clock.now())
            .await?
            .ok_or_else(|| LedgerError::not_found("credit hold", id))
    }

    /// One hold.
    pub async fn hold(&self, account: &str, id: &str) -> Result<Hold, LedgerError> {
        self.store
            .hold(account, id)
            .await?
            .ok_or_else(|| LedgerError::not_found("credit hold", id))
    }

    /// The customer's active holds per asset.
    pub async fn held(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<Vec<(billing_money::Asset, i64)>, LedgerError> {
        self.store.held(account, customer, self.clock.now()).await
    }

    /// A page of a customer's holds.
    pub async fn list_holds(
        &self,
        account: &str,
        customer: &str,
        active_only: bool,
        page: &PageRequest,
    ) -> Result<(Vec<Hold>, String), LedgerError> {
        let now = active_only.then(|| self.clock.now());
        self.store.list_holds(account, customer, now, page).await
    }
}
