//! Auto top-ups (DESIGN.md section 11; docs/lifecycle.md).
//!
//! SetAutoTopUp registers a ledger balance alert at the threshold. The
//! worker follows the ledger's feed per account from a durable cursor
//! (`feed_cursors`) and decides on each `customer.credit_balance_dropped`
//! of that alert: buy (a credit purchase whose request id is the event id,
//! so a redelivered or re-read event never buys twice), skip (unpaid
//! top-ups already cover it) or stop at a limit. A decision that buys
//! nothing is written with the cursor's advance, in one transaction.

use billing_db::idempotency::IdempotencyKey;
use billing_money::{Currency, Decimal, FieldViolation};
use billing_server::ids::new_id;
use billing_server::status::Refuse;
use chrono::TimeDelta;

use super::allocations::AmountInput;
use super::purchases::NewPurchase;
use super::{Invoicing, failpoint};
use crate::domain::top_up::{
    AUTO_TOP_UP_LIMIT_REACHED, AUTO_TOP_UP_SKIPPED, AutoTopUp, Decision, Size, TopUpEvent, decide,
    window,
};
use crate::error::InvoicingError;
use crate::store::LEDGER_FEED;
use crate::upstream::DroppedEvent;

/// SetAutoTopUp after field checks.
#[derive(Debug, Clone)]
pub struct TopUpInput {
    /// `cus_…`
    pub customer: String,
    /// Buy below this.
    pub threshold: AmountInput,
    /// A fixed amount (false) or a target balance (true), in the
    /// threshold's asset.
    pub size: (bool, AmountInput),
    /// The purchases' currency.
    pub currency: Currency,
    /// Minor units per whole credit.
    pub unit_amount: Decimal,
    /// 0: never.
    pub expires_after_days: u32,
    /// Bought credits wait for payment.
    pub require_payment: bool,
    /// 0: no limit.
    pub max_purchases: u32,
    /// In the currency's minor units.
    pub max_spend: Option<i64>,
}

impl Invoicing {
    /// Sets (or replaces) the customer's top-up for the threshold's asset.
    pub async fn set_top_up(
        &self,
        account: &str,
        input: TopUpInput,
        key: Option<&IdempotencyKey>,
    ) -> Result<AutoTopUp, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let customer = self.customer(account, &input.customer).await?;
        let mut out = Vec::new();
        let mut scales = Default::default();
        let threshold = self
            .resolve_amount(
                account,
                &input.threshold,
                "threshold",
                &mut scales,
                &mut out,
            )
            .await?;
        let (recharge, size) = &input.size;
        let field = if *recharge { "recharge_to" } else { "amount" };
        let size = self
            .resolve_amount(account, size, field, &mut scales, &mut out)
            .await?;
        let (Some((asset, threshold)), Some((size_asset, size))) = (threshold, size) else {
            return Err(InvoicingError::fields(out));
        };
        if size_asset != asset {
            out.push(FieldViolation::new(
                field,
                "must be in the threshold's asset",
            ));
        }
        if *recharge && size <= threshold {
            out.push(FieldViolation::new(
                "recharge_to",
                "must be above the threshold",
            ));
        }
        if !out.is_empty() {
            return Err(InvoicingError::fields(out));
        }
        let id = new_id("atu");
        let alert_request = match key {
            Some(key) => format!("auto-top-up-alert:{}", key.request_id),
            None => format!("auto-top-up-alert:{id}"),
        };
        let balance_alert = self
            .upstream
            .create_alert(account, &alert_request, &customer.id, (&asset, threshold))
            .await?;
        let top_up = AutoTopUp {
            id,
            customer: customer.id,
            asset,
            threshold,
            size: if *recharge {
                Size::RechargeTo { balance: size }
            } else {
                Size::Fixed { credits: size }
            },
            currency: input.currency,
            unit_amount: input.unit_amount,
            expires_after_days: input.expires_after_days,
            require_payment: input.require_payment,
            max_purchases: input.max_purchases,
            max_spend: input.max_spend,
            enabled: true,
            balance_alert,
            created: self.clock.now(),
        };
        let (saved, previous) = self.store.set_top_up(account, top_up).await?;
        if let Some(previous) = previous
            && let Err(error) = self.upstream.delete_alert(account, &previous).await
        {
            // Its events no longer match the top-up: they are ignored.
            tracing::warn!(%error, alert = %previous, "could not delete the replaced top-up's alert");
        }
        self.remember(account, key, saved).await
    }

    /// The customer's top-up for `asset` (a currency code or `pu_…`).
    pub async fn top_up(
        &self,
        account: &str,
        customer: &str,
        asset: &str,
    ) -> Result<AutoTopUp, InvoicingError> {
        self.store
            .top_up(account, customer, asset)
            .await?
            .ok_or_else(|| InvoicingError::not_found("auto top-up", &format!("{customer}/{asset}")))
    }

    /// Disables the customer's top-up for `asset`.
    pub async fn disable_top_up(
        &self,
        account: &str,
        customer: &str,
        asset: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<AutoTopUp, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let top_up = self.top_up(account, customer, asset).await?;
        let now = self.clock.now();
        let disabled = self
            .store
            .disable_top_up(account, &top_up.id, "disabled by DisableAutoTopUp", now)
            .await?
            .unwrap_or(top_up);
        if let Err(error) = self
            .upstream
            .delete_alert(account, &disabled.balance_alert)
            .await
        {
            tracing::warn!(%error, "could not delete a disabled top-up's alert");
        }
        self.remember(account, key, disabled).await
    }

    /// Reads `accounts`' new `customer.credit_balance_dropped` events (the
    /// worker's, those with an enabled top-up it leased) and decides on each; returns how many were handled and how many
    /// accounts failed. An account whose feed or decision fails is logged
    /// and retried next time, from its cursor; the other accounts go on.
    pub async fn run_top_ups(&self, accounts: &[String]) -> (usize, usize) {
        let (mut handled, mut failed) = (0, 0);
        for account in accounts {
            match self.top_ups_of(account).await {
                Ok(count) => handled += count,
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%error, account, "auto top-ups failed; retried next tick");
                }
            }
        }
        (handled, failed)
    }

    async fn top_ups_of(&self, account: &str) -> Result<usize, InvoicingError> {
        let cursor = self.store.feed_cursor(account, LEDGER_FEED).await?;
        let events = self.upstream.dropped_events(account, cursor).await?;
        for event in &events {
            self.on_balance_dropped(account, event).await?;
        }
        Ok(events.len())
    }

    /// Decides on one `customer.credit_balance_dropped` event and moves the
    /// account's cursor past it. Handling the same event again buys
    /// nothing more: the purchase's request id is the event id.
    pub async fn on_balance_dropped(
        &self,
        account: &str,
        event: &DroppedEvent,
    ) -> Result<(), InvoicingError> {
        let now = self.clock.now();
        let top_up = self
            .store
            .top_up(account, &event.customer, &event.asset)
            .await?
            .filter(|t| t.enabled && t.balance_alert == event.alert);
        let Some(top_up) = top_up else {
            // Another alert, or a top-up disabled or replaced since.
            return self
                .store
                .advance_feed(account, LEDGER_FEED, &event.cursor, None, now)
                .await;
        };
        let balance = self
            .upstream
            .balance(account, &top_up.customer, &top_up.asset)
            .await?;
        let spent = self
            .store
            .top_up_window(account, &top_up.id, now - window())
            .await?;
        let decision = decide(&top_up, balance.available, balance.pending, spent)
            .ok_or_else(|| InvoicingError::Corrupt("top-up amounts past 64 bits".into()))?;
        let mut data = TopUpEvent {
            auto_top_up: top_up.clone(),
            credit_purchase: None,
            reason: String::new(),
            cause: event.id.clone(),
        };
        let decided = match decision {
            Decision::Buy { credits, .. } => {
                let new = NewPurchase {
                    customer: top_up.customer.clone(),
                    credits: AmountInput::Resolved(top_up.asset.clone(), credits),
                    currency: top_up.currency,
                    unit_amount: top_up.unit_amount,
                    expires_at: (top_up.expires_after_days > 0)
                        .then(|| now + TimeDelta::days(i64::from(top_up.expires_after_days))),
                    priority: 50,
                    prices: Vec::new(),
                    require_payment: top_up.require_payment,
                };
                let key = IdempotencyKey {
                    request_id: event.id.clone(),
                    fingerprint: format!("auto_top_up:{}", top_up.id),
                };
                self.create_purchase_for(account, new, Some(&key), Some(&data))
                    .await?;
                // Bought; the cursor has not moved past the event.
                failpoint("after_top_up_purchase");
                None
            }
            Decision::Covered => {
                data.reason =
                    "the balance with unpaid top-ups is not below the threshold".to_owned();
                Some((AUTO_TOP_UP_SKIPPED, &data))
            }
            Decision::LimitReached(why) => {
                data.reason = why;
                Some((AUTO_TOP_UP_LIMIT_REACHED, &data))
            }
        };
        self.store
            .advance_feed(account, LEDGER_FEED, &event.cursor, decided, now)
            .await
    }
}
