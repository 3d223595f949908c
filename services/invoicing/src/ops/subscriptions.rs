//! Subscriptions: create, cancel, and closing ended periods into drafts.

use billing_db::idempotency::IdempotencyKey;
use billing_money::Asset;
use billing_money::FieldViolation;
use billing_server::ids::new_id;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use chrono::{DateTime, TimeDelta, Utc};

use super::Invoicing;
use super::allocations::AllocationInput;
use crate::domain::invoice::{BillingReason, Invoice, Line, Status};
use crate::domain::price::Price;
use crate::domain::subscription::{
    BACKDATE_MAX_DAYS, Interval, Item, Subscription, period_end_after,
};
use crate::error::InvoicingError;
use crate::store::Closing;

/// Most periods one call closes (a subscription backdated 400 days has 14).
const CLOSE_MAX: usize = 500;

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// `cus_…`
    pub customer: String,
    /// Distinct `price_…` ids, in line order.
    pub prices: Vec<String>,
    /// Month or year.
    pub interval: Interval,
    /// Default: the start.
    pub anchor: Option<DateTime<Utc>>,
    /// Default: now.
    pub start: Option<DateTime<Utc>>,
    /// Recurring credit allocations, their pricing units not yet resolved.
    pub credit_allocations: Vec<AllocationInput>,
    /// Overage policy and usage thresholds, not yet checked against the prices.
    pub controls: super::ControlsInput,
}

impl Invoicing {
    /// Creates a subscription; ended periods (backdated start) are closed at once.
    pub async fn create_subscription(
        &self,
        account: &str,
        new: NewSubscription,
        key: Option<&IdempotencyKey>,
    ) -> Result<Subscription, InvoicingError> {
        let now = self.clock.now();
        let customer = self.customer(account, &new.customer).await?;
        let start = new.start.unwrap_or(now);
        let anchor = new.anchor.unwrap_or(start);
        let mut violations = Vec::new();
        if start < now - TimeDelta::days(BACKDATE_MAX_DAYS) {
            violations.push(FieldViolation::new(
                "start_date",
                format!("may be at most {BACKDATE_MAX_DAYS} days in the past"),
            ));
        }
        let first_end = period_end_after(anchor, new.interval, start);
        let one_interval = period_end_after(start, new.interval, start);
        match (first_end, one_interval) {
            (Some(_), Some(limit)) if anchor >= start && anchor <= limit => {}
            _ => violations.push(FieldViolation::new(
                "billing_cycle_anchor",
                "must be between start_date and one billing interval after it",
            )),
        }
        let ids: Vec<&str> = new.prices.iter().map(String::as_str).collect();
        let prices = self.store.prices(account, &ids).await?;
        let mut currency = None;
        for (i, id) in new.prices.iter().enumerate() {
            let field = format!("items[{i}].price");
            let Some(price) = prices.iter().find(|p| &p.id == id) else {
                return Err(InvoicingError::not_found("price", id));
            };
            if !price.active {
                return Err(InvoicingError::conflict(
                    "PRICE_INACTIVE",
                    format!("price {id} is inactive"),
                ));
            }
            if let Asset::Currency(c) = &price.asset {
                match &currency {
                    None => currency = Some(*c),
                    Some(first) if first != c => violations.push(FieldViolation::new(
                        field,
                        format!(
                            "price {id} is in {c}, but the subscription's prices are in {first}"
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        let credit_allocations = self
            .resolve_allocations(
                account,
                new.credit_allocations,
                &new.prices,
                &mut violations,
            )
            .await?;
        let subscribed: Vec<_> = prices
            .iter()
            .filter(|p| new.prices.contains(&p.id))
            .cloned()
            .collect();
        let controls = self
            .resolve_controls(account, new.controls, &subscribed, &mut violations)
            .await?;
        if !violations.is_empty() {
            return Err(InvoicingError::fields(violations));
        }
        let period_end = first_end
            .ok_or_else(|| InvoicingError::invalid("billing_cycle_anchor", "is out of range"))?;
        let sub = Subscription {
            id: new_id("sub"),
            customer: customer.id,
            active: true,
            currency,
            items: new
                .prices
                .into_iter()
                .map(|price| Item {
                    id: new_id("si"),
                    price,
                })
                .collect(),
            interval: new.interval,
            anchor,
            start,
            period_start: start,
            period_end,
            cancel_at_period_end: false,
            ended_at: None,
            latest_invoice: None,
            created: now,
            credit_allocations,
            controls,
        };
        let sub = self.store.create_subscription(account, sub, key).await?;
        self.close_periods(account, &sub.id).await?;
        self.subscription(account, &sub.id).await
    }

    /// One subscription.
    pub async fn subscription(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Subscription, InvoicingError> {
        self.store
            .subscription(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("subscription", id))
    }

    /// A page of subscriptions.
    pub async fn list_subscriptions(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<Subscription>, String), InvoicingError> {
        self.store.list_subscriptions(account, customer, page).await
    }

    /// Closes every ended period of the subscription into a draft invoice,
    /// advancing it (or ending it when it was set to cancel at period end).
    /// Safe to run concurrently: each close is conditional on the period.
    pub async fn close_periods(&self, account: &str, id: &str) -> Result<(), InvoicingError> {
        self.close_ended_periods(account, id).await?;
        // Grants for the periods that began, rollovers of those that ended.
        self.try_allocations_of(account, id).await;
        Ok(())
    }

    async fn close_ended_periods(&self, account: &str, id: &str) -> Result<(), InvoicingError> {
        for _ in 0..CLOSE_MAX {
            let now = self.clock.now();
            let sub = self.subscription(account, id).await?;
            if !sub.active || sub.period_end > now {
                return Ok(());
            }
            let draft = self
                .draft(
                    account,
                    &sub,
                    sub.period_end,
                    BillingReason::SubscriptionCycle,
                    now,
                )
                .await?;
            let closing = match sub.next_period() {
                Some((start, end)) => Closing::Advance { start, end },
                None => Closing::End(sub.period_end),
            };
            self.store
                .close_period(account, id, sub.period_start, Some(&draft), closing)
                .await?;
        }
        Ok(())
    }

    /// Cancels now (with a final draft for the partial period) or at the end
    /// of the current period. Canceling a canceled subscription returns it.
    pub async fn cancel_subscription(
        &self,
        account: &str,
        id: &str,
        at_period_end: bool,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Subscription, Option<Invoice>), InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        self.close_periods(account, id).await?;
        let sub = self.subscription(account, id).await?;
        if sub.active {
            if at_period_end {
                let now = self.clock.now();
                self.store.cancel_at_period_end(account, id, now).await?;
            } else {
                let now = self.clock.now();
                let draft = if now > sub.period_start {
                    Some(
                        self.draft(account, &sub, now, BillingReason::SubscriptionCancel, now)
                            .await?,
                    )
                } else {
                    None
                };
                self.store
                    .close_period(
                        account,
                        id,
                        sub.period_start,
                        draft.as_ref(),
                        Closing::End(now),
                    )
                    .await?;
            }
        }
        self.try_allocations_of(account, id).await;
        let sub = self.subscription(account, id).await?;
        let invoice = match (&sub.latest_invoice, sub.active) {
            (Some(invoice), false) => self.store.invoice(account, invoice).await?,
            _ => None,
        };
        self.remember(account, key, (sub, invoice)).await
    }

    /// A draft for `[sub.period_start, end)`, priced from the usage so far.
    async fn draft(
        &self,
        account: &str,
        sub: &Subscription,
        end: DateTime<Utc>,
        reason: BillingReason,
        now: DateTime<Utc>,
    ) -> Result<Invoice, InvoicingError> {
        let ids: Vec<&str> = sub.items.iter().map(|i| i.price.as_str()).collect();
        let prices = self.store.prices(account, &ids).await?;
        let mut lines = Vec::with_capacity(sub.items.len());
        for item in &sub.items {
            let price = prices
                .iter()
                .find(|p| p.id == item.price)
                .ok_or_else(|| InvoicingError::Corrupt(format!("price {} vanished", item.price)))?;
            lines.push(empty_line(price));
        }
        let mut draft = Invoice {
            id: new_id("in"),
            customer: sub.customer.clone(),
            subscription: sub.id.clone(),
            status: Status::Draft,
            reason,
            period_start: sub.period_start,
            period_end: end,
            lines,
            auto_finalize_at: Some(now + self.grace),
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            created: now,
            step_error: None,
        };
        self.price_lines(account, &mut draft, &prices).await?;
        Ok(draft)
    }
}

/// A line of `price` before usage is known.
pub(super) fn empty_line(price: &Price) -> Line {
    Line {
        id: new_id("il"),
        price: price.id.clone(),
        meter: price.meter.clone(),
        description: price.nickname.clone(),
        asset: price.asset.clone(),
        usage: Default::default(),
        quantity: Default::default(),
        unit_amount: None,
        amount: 0,
        credits_applied: 0,
        applications: Vec::new(),
        conversion: None,
    }
}
