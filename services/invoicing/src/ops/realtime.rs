//! Real-time balances and access checks (DESIGN.md §12; the usage
//! threshold worker is `thresholds.rs`).
//!
//! A balance is computed at read time, never cached: the customer's open
//! periods and drafts are priced from meter-ingest's usage up to now (as
//! the invoices will price them, rounded once per line), one ApplyCredits
//! preview says which credits that usage would consume if it were invoiced
//! now, and the ledger's summary gives the credits and the active holds.
//! The ledger summary runs while the usage is priced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use billing_money::{Asset, FieldViolation};
use billing_server::status::Refuse;
use chrono::{DateTime, Utc};

use super::{AmountInput, Invoicing};
use crate::domain::invoice::{BillingReason, Invoice, Status};
use crate::domain::price::Price;
use crate::domain::realtime::{
    self, AccessReason, AssetBalance, Controls, Overage, UnbilledLine, UsageThreshold,
};
use crate::domain::subscription::{Subscription, period_end_after};
use crate::error::InvoicingError;
use crate::store::InvoiceFilter;
use crate::upstream::{HoldMade, HoldRequest};

/// Most active subscriptions of one customer a balance covers.
const SUBSCRIPTIONS_MAX: i64 = 100;
/// Most drafts of one customer a balance covers.
const DRAFTS_MAX: u32 = 100;
/// Most lines of one ApplyCredits call (the ledger's limit).
const LINES_MAX: usize = 1_000;

/// A subscription's overage policy, its limit's unit not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverageInput {
    /// Allow.
    Allow,
    /// Block at 0.
    Block,
    /// Allow up to a limit.
    AllowUpTo(AmountInput),
}

/// CreateSubscription's real-time controls after field checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlsInput {
    /// The policy.
    pub overage: OverageInput,
    /// The thresholds (meters not yet checked against the prices).
    pub usage_thresholds: Vec<UsageThreshold>,
}

impl Default for ControlsInput {
    fn default() -> Self {
        Self {
            overage: OverageInput::Allow,
            usage_thresholds: Vec::new(),
        }
    }
}

/// What CheckAccess is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// A meter (`mtr_…`).
    Meter(String),
    /// A price (`price_…`).
    Price(String),
}

/// CheckAccess after field checks.
#[derive(Debug, Clone)]
pub struct AccessInput {
    /// The customer.
    pub customer: String,
    /// The meter or price.
    pub target: AccessTarget,
    /// Credits to hold, unit not yet resolved.
    pub reserve: Option<AmountInput>,
    /// 1 to 86,400.
    pub hold_timeout_seconds: u32,
    /// Required with `reserve`.
    pub request_id: Option<String>,
}

/// CheckAccess's answer.
#[derive(Debug, Clone)]
pub struct AccessOutcome {
    /// Why (allowed when Ok).
    pub reason: AccessReason,
    /// The balance of the price's asset (with the hold, if one was made).
    pub balance: Option<AssetBalance>,
    /// The hold made.
    pub hold: Option<HoldMade>,
    /// The subscription whose policy decided.
    pub subscription: Option<String>,
}

/// GetCustomerBalance's answer.
#[derive(Debug, Clone)]
pub struct CustomerBalance {
    /// The customer.
    pub customer: String,
    /// The time usage was priced up to.
    pub as_of: DateTime<Utc>,
    /// One per asset.
    pub balances: Vec<AssetBalance>,
}

/// Most cached prices; past it the cache starts over.
const PRICES_CACHED_MAX: usize = 100_000;

/// Prices by account and id (see `Invoicing::prices`).
#[derive(Debug, Clone, Default)]
pub(super) struct PriceCache(Arc<Mutex<HashMap<String, Price>>>);

fn price_key(account: &str, id: &str) -> String {
    format!("{}:{account}{id}", account.len())
}

/// The customer's usage not yet invoiced: active subscriptions, the prices
/// they bill, and the invoices to price (drafts and open periods).
struct Open {
    /// The customer's parent when a subscription row told (`None`: unknown).
    parent: Option<Option<String>>,
    subscriptions: Vec<Subscription>,
    prices: Vec<Price>,
    invoices: Vec<Invoice>,
}

impl Invoicing {
    /// Resolves CreateSubscription's controls against its prices: a limit
    /// in one of their assets, thresholds on one of their meters.
    pub(super) async fn resolve_controls(
        &self,
        account: &str,
        input: ControlsInput,
        prices: &[Price],
        out: &mut Vec<FieldViolation>,
    ) -> Result<Controls, InvoicingError> {
        let overage = match input.overage {
            OverageInput::Allow => Overage::Allow,
            OverageInput::Block => Overage::Block,
            OverageInput::AllowUpTo(limit) => {
                let mut scales = HashMap::new();
                match self
                    .resolve_amount(account, &limit, "overage.limit", &mut scales, out)
                    .await?
                {
                    Some((asset, limit)) if prices.iter().any(|p| p.asset == asset) => {
                        Overage::AllowUpTo { asset, limit }
                    }
                    Some(_) => {
                        out.push(FieldViolation::new(
                            "overage.limit",
                            "must be in the asset of one of the subscription's prices",
                        ));
                        Overage::Allow
                    }
                    None => Overage::Allow,
                }
            }
        };
        for (i, threshold) in input.usage_thresholds.iter().enumerate() {
            if !prices.iter().any(|p| p.meter == threshold.meter) {
                out.push(FieldViolation::new(
                    format!("usage_thresholds[{i}].meter"),
                    "must be the meter of one of the subscription's prices",
                ));
            }
        }
        Ok(Controls {
            overage,
            usage_thresholds: input.usage_thresholds,
        })
    }

    /// The customer's balance now, per asset.
    pub async fn customer_balance(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<CustomerBalance, InvoicingError> {
        let now = self.clock.now();
        let open = self.open_usage(account, customer, now).await?;
        let customer = customer.to_owned();
        let balances = self
            .balances(
                account,
                (&customer, open.parent),
                (&open.prices, open.invoices),
            )
            .await?;
        Ok(CustomerBalance {
            customer,
            as_of: now,
            balances,
        })
    }

    /// Whether the customer may use the meter or price now; with a
    /// reservation, also the ledger hold for it.
    pub async fn check_access(
        &self,
        account: &str,
        input: AccessInput,
    ) -> Result<AccessOutcome, InvoicingError> {
        let now = self.clock.now();
        let customer = input.customer.clone();
        let open = self.open_usage(account, &customer, now).await?;
        let Some((subscription, price)) = governing(&open, &input.target) else {
            return Ok(AccessOutcome {
                reason: AccessReason::NotSubscribed,
                balance: None,
                hold: None,
                subscription: None,
            });
        };
        let (policy, subscription, asset) = (
            subscription.controls.overage.clone(),
            subscription.id.clone(),
            price.asset.clone(),
        );
        let reserve = match &input.reserve {
            None => None,
            Some(reserve) => Some(self.reserve_amount(account, reserve, &asset).await?),
        };
        let balances = self
            .balances(
                account,
                (&customer, open.parent),
                (&open.prices, open.invoices),
            )
            .await?;
        let mut balance = balances
            .into_iter()
            .find(|b| b.asset == asset)
            .unwrap_or_else(|| AssetBalance::zero(asset.clone()));
        let mut hold = None;
        if let Some(amount) = reserve {
            let request_id = input
                .request_id
                .clone()
                .ok_or_else(|| InvoicingError::invalid("request_id", "is required with reserve"))?;
            hold = self
                .upstream
                .create_hold(
                    account,
                    HoldRequest {
                        request_id: format!("access:{request_id}"),
                        customer: &customer,
                        amount: (&asset, amount),
                        unbilled: balance.unbilled_credits,
                        timeout_seconds: input.hold_timeout_seconds,
                    },
                )
                .await?;
            // A retried check's hold was made by the first attempt, before
            // this one read the balance: it is counted there already.
            if hold.as_ref().is_some_and(|h| !h.replayed) {
                super::failpoint("after_access_hold");
                balance.credits_reserved = balance
                    .credits_reserved
                    .checked_add(amount)
                    .ok_or(crate::domain::invoice::TotalOverflow("credits reserved"))?;
            }
        }
        let reason = realtime::decide(
            &policy,
            &balance,
            reserve.map(|amount| (amount, hold.is_some())),
        )?;
        Ok(AccessOutcome {
            reason,
            balance: Some(balance),
            hold,
            subscription: Some(subscription),
        })
    }

    /// A reservation in `asset` (the price's), positive.
    async fn reserve_amount(
        &self,
        account: &str,
        reserve: &AmountInput,
        asset: &Asset,
    ) -> Result<i64, InvoicingError> {
        let mut out = Vec::new();
        // The price's unit is known: no ledger call to learn its scale.
        let mut scales = HashMap::new();
        if let Asset::PricingUnit { id, scale } = asset {
            scales.insert(id.clone(), *scale);
        }
        let resolved = self
            .resolve_amount(account, reserve, "reserve", &mut scales, &mut out)
            .await?;
        match resolved {
            Some((reserved, amount)) if reserved == *asset => Ok(amount),
            Some(_) => Err(InvoicingError::invalid(
                "reserve",
                format!("must be in the price's asset ({})", asset.key()),
            )),
            None => Err(InvoicingError::fields(out)),
        }
    }

    /// The customer's active subscriptions, their prices, and the invoices
    /// whose usage is not billed yet, unpriced: each draft, each current
    /// period, and the period after one that ended but is not closed yet.
    async fn open_usage(
        &self,
        account: &str,
        customer: &str,
        now: DateTime<Utc>,
    ) -> Result<Open, InvoicingError> {
        // One statement in the usual case: the subscriptions say whether a
        // draft exists; only a customer with a draft, or without any
        // subscription, costs the draft list.
        let active = self
            .store
            .active_subscriptions_of(account, customer, SUBSCRIPTIONS_MAX + 1)
            .await?;
        let (drafts, more_drafts) = if active.drafts == Some(false) {
            (Vec::new(), String::new())
        } else {
            let page = billing_server::page::PageRequest::parse(
                i32::try_from(DRAFTS_MAX).unwrap_or(100),
                "",
            )
            .map_err(|_| InvoicingError::Corrupt("draft page".into()))?;
            let filter = InvoiceFilter {
                customer: Some(customer.to_owned()),
                subscription: None,
                status: Some(Status::Draft),
            };
            self.store.list_invoices(account, &filter, &page).await?
        };
        let (subscriptions, parent) = (active.subscriptions, active.parent);
        // A balance that left some out would be wrong, not partial: refuse.
        if i64::try_from(subscriptions.len()).unwrap_or(i64::MAX) > SUBSCRIPTIONS_MAX
            || !more_drafts.is_empty()
        {
            return Err(InvoicingError::conflict(
                "TOO_MANY_UNBILLED_LINES",
                format!(
                    "customer {customer} has more than {SUBSCRIPTIONS_MAX} active subscriptions \
                     or {DRAFTS_MAX} drafts; a real-time balance covers at most that many"
                ),
            ));
        }
        let mut ids: Vec<&str> = subscriptions
            .iter()
            .flat_map(|s| s.items.iter().map(|i| i.price.as_str()))
            .chain(
                drafts
                    .iter()
                    .flat_map(|d| d.lines.iter().map(|l| l.price.as_str())),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        // A customer with a subscription or a draft exists in the account;
        // only one without either costs the lookup (NOT_FOUND if unknown).
        if subscriptions.is_empty() && drafts.is_empty() {
            self.customer(account, customer).await?;
        }
        let prices = self.cached_prices(account, &ids).await?;
        let mut invoices = drafts;
        for sub in &subscriptions {
            invoices.push(period_invoice(
                sub,
                &prices,
                (sub.period_start, sub.period_end),
                now,
            )?);
            if sub.period_end <= now
                && !sub.cancel_at_period_end
                && let Some(next_end) = period_end_after(sub.anchor, sub.interval, sub.period_end)
            {
                let mut next = period_invoice(sub, &prices, (sub.period_end, next_end), now)?;
                for line in &mut next.lines {
                    line.id = format!("{}_next", line.id);
                }
                invoices.push(next);
            }
        }
        Ok(Open {
            parent,
            subscriptions,
            prices,
            invoices,
        })
    }

    /// The prices `ids`, from the cache when there.
    async fn cached_prices(
        &self,
        account: &str,
        ids: &[&str],
    ) -> Result<Vec<Price>, InvoicingError> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.prices.0.lock().unwrap_or_else(PoisonError::into_inner);
            for id in ids {
                match cache.get(&price_key(account, id)) {
                    Some(price) => found.push(price.clone()),
                    None => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = self.store.prices(account, &missing).await?;
        let mut cache = self.prices.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= PRICES_CACHED_MAX {
            cache.clear();
        }
        for price in loaded {
            cache.insert(price_key(account, &price.id), price.clone());
            found.push(price);
        }
        Ok(found)
    }

    /// Prices `invoices` from the usage up to now (one usage read) and
    /// asks the ledger, in one call, for the credits and holds and for what
    /// those lines would take if they were invoiced now.
    async fn balances(
        &self,
        account: &str,
        (customer, parent): (&str, Option<Option<String>>),
        (prices, mut invoices): (&[Price], Vec<Invoice>),
    ) -> Result<Vec<AssetBalance>, InvoicingError> {
        self.price_invoices(account, &mut invoices, prices).await?;
        let lines: Vec<crate::domain::invoice::Line> = invoices
            .iter()
            .flat_map(|i| i.chargeable_lines().cloned())
            .collect();
        if lines.len() > LINES_MAX {
            return Err(InvoicingError::conflict(
                "TOO_MANY_UNBILLED_LINES",
                format!(
                    "customer {customer} has {} unbilled lines; a real-time balance covers at most {LINES_MAX}",
                    lines.len()
                ),
            ));
        }
        let pool = self.pool(account, customer, parent).await?;
        let summary = self
            .upstream
            .credits(account, (customer, &pool), &lines)
            .await?;
        let per_line: HashMap<&str, i64> = summary
            .lines
            .iter()
            .map(|(id, credits)| (id.as_str(), *credits))
            .collect();
        let unbilled: Vec<UnbilledLine> = lines
            .iter()
            .map(|line| UnbilledLine {
                asset: line.asset.clone(),
                amount: line.amount,
                credits: per_line.get(line.id.as_str()).copied().unwrap_or_default(),
                // The ledger sends the rates of the units it read for the lines.
                conversion: match &line.asset {
                    Asset::PricingUnit { id, .. } => summary
                        .rates
                        .iter()
                        .find(|(unit, _)| unit == id)
                        .and_then(|(_, rate)| *rate),
                    Asset::Currency(_) => None,
                },
            })
            .collect();
        Ok(realtime::balances(&summary.credits, &unbilled)?)
    }

    /// The customer's ancestors, nearest first; `parent` is its parent when
    /// already read (most customers have none: no statement then).
    async fn pool(
        &self,
        account: &str,
        customer: &str,
        parent: Option<Option<String>>,
    ) -> Result<Vec<String>, InvoicingError> {
        match parent {
            Some(None) => Ok(Vec::new()),
            Some(Some(parent)) => {
                let mut pool = vec![parent.clone()];
                pool.extend(self.store.ancestors(account, &parent).await?);
                pool.truncate(crate::domain::customer::HIERARCHY_DEPTH_MAX - 1);
                Ok(pool)
            }
            None => self.store.ancestors(account, customer).await,
        }
    }
}

/// The subscription and price that govern a use of `target`: the first
/// (oldest) active subscription billing it.
fn governing<'a>(open: &'a Open, target: &AccessTarget) -> Option<(&'a Subscription, &'a Price)> {
    open.subscriptions.iter().find_map(|sub| {
        sub.items.iter().find_map(|item| {
            let price = open.prices.iter().find(|p| p.id == item.price)?;
            let matches = match target {
                AccessTarget::Meter(meter) => &price.meter == meter,
                AccessTarget::Price(id) => &price.id == id,
            };
            matches.then_some((sub, price))
        })
    })
}

/// An unpriced invoice of one period of `sub` (line ids are the items').
fn period_invoice(
    sub: &Subscription,
    prices: &[Price],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
) -> Result<Invoice, InvoicingError> {
    let mut invoice = unbilled_invoice(&sub.customer, now);
    invoice.subscription = sub.id.clone();
    invoice.period_start = start;
    invoice.period_end = end;
    for item in &sub.items {
        let price = prices
            .iter()
            .find(|p| p.id == item.price)
            .ok_or_else(|| InvoicingError::Corrupt(format!("price {} vanished", item.price)))?;
        let mut line = super::subscriptions::empty_line(price);
        line.id = item.id.clone();
        invoice.lines.push(line);
    }
    Ok(invoice)
}

/// An empty, never stored invoice of `customer` ending `now`.
fn unbilled_invoice(customer: &str, now: DateTime<Utc>) -> Invoice {
    Invoice {
        id: String::new(),
        customer: customer.to_owned(),
        subscription: String::new(),
        status: Status::Draft,
        reason: BillingReason::SubscriptionCycle,
        period_start: now,
        period_end: now,
        lines: Vec::new(),
        auto_finalize_at: None,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
        created: now,
        step_error: None,
    }
}
