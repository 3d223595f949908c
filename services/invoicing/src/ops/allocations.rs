//! Recurring allocations at work (DESIGN.md section 11; docs/lifecycle.md).
//!
//! Each allocation period row (written with the period's start, see
//! `store::allocations`) moves through up to three ledger calls, each keyed
//! by what it does so that a crash, a retry or a second replica repeats the
//! call and gets the first one's result:
//! 1. the period's grant, `alloc:{subscription}:{allocation}:{period start µs}`;
//! 2. once the period is over and its invoice has taken its credits, the
//!    rollover of what is left into the next period,
//!    `rollover:{subscription}:{allocation}:{period start µs}`;
//! 3. or, when the subscription was canceled in the period (`on_cancel:
//!    expire`), the period's grants expire at the cancellation.

use std::collections::{BTreeMap, HashMap};

use billing_money::{Asset, Currency, FieldViolation, parse_value};
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};

use super::Invoicing;
use crate::domain::allocation::{Allocation, Expiry, OnCancel};
use crate::domain::subscription::Subscription;
use crate::error::InvoicingError;
use crate::store::AllocationPeriod;
use crate::upstream::{GrantKind, GrantSource, GrantSpec};

/// An amount as the request gave it, its pricing unit not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountInput {
    /// Minor units of a currency (positive).
    Money(Currency, i64),
    /// A pricing unit id and a decimal string.
    Unit(String, String),
    /// Already resolved (an auto top-up's purchase).
    Resolved(Asset, i64),
}

/// One `credit_allocations[]` entry after field checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationInput {
    /// Per period.
    pub amount: AmountInput,
    /// Rollover cap.
    pub rollover_max: Option<AmountInput>,
    /// Prices the credits may pay for.
    pub prices: Vec<String>,
    /// 0 to 100.
    pub priority: u32,
    /// Expiry rule.
    pub expiry: Expiry,
    /// Prorate a short first period.
    pub prorate_first_period: bool,
    /// On cancel.
    pub on_cancel: OnCancel,
}

/// What one pass over a row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Something changed.
    Moved,
    /// Waiting for the period or its invoice.
    Waiting,
}

impl Invoicing {
    /// Resolves the allocations' pricing units and checks what needs the
    /// subscription (its prices) or another service (unit scales); field
    /// problems go to `out`.
    pub(super) async fn resolve_allocations(
        &self,
        account: &str,
        inputs: Vec<AllocationInput>,
        prices: &[String],
        out: &mut Vec<FieldViolation>,
    ) -> Result<Vec<Allocation>, InvoicingError> {
        let mut scales = HashMap::new();
        let mut allocations = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let field = |name: &str| format!("credit_allocations[{i}].{name}");
            let amount = self
                .resolve_amount(account, &input.amount, &field("amount"), &mut scales, out)
                .await?;
            let rollover_max = match &input.rollover_max {
                Some(max) => {
                    let field = field("rollover_max_amount");
                    let max = self
                        .resolve_amount(account, max, &field, &mut scales, out)
                        .await?;
                    if let (Some((asset, _)), Some((max_asset, _))) = (&amount, &max)
                        && asset != max_asset
                    {
                        out.push(FieldViolation::new(field, "must be in the amount's asset"));
                    }
                    max.map(|(_, value)| value)
                }
                None => None,
            };
            for (p, price) in input.prices.iter().enumerate() {
                if !prices.contains(price) {
                    out.push(FieldViolation::new(
                        field(&format!("prices[{p}]")),
                        "must be one of the subscription's prices",
                    ));
                }
            }
            if let Some((asset, amount)) = amount {
                allocations.push(Allocation {
                    asset,
                    amount,
                    prices: input.prices,
                    priority: input.priority,
                    expiry: input.expiry,
                    rollover_max,
                    prorate_first_period: input.prorate_first_period,
                    on_cancel: input.on_cancel,
                });
            }
        }
        Ok(allocations)
    }

    pub(super) async fn resolve_amount(
        &self,
        account: &str,
        input: &AmountInput,
        field: &str,
        scales: &mut HashMap<String, u32>,
        out: &mut Vec<FieldViolation>,
    ) -> Result<Option<(Asset, i64)>, InvoicingError> {
        let (id, value) = match input {
            AmountInput::Money(currency, value) => {
                return Ok(Some((Asset::Currency(*currency), *value)));
            }
            AmountInput::Unit(id, value) => (id, value),
            AmountInput::Resolved(asset, value) => return Ok(Some((asset.clone(), *value))),
        };
        let scale = match scales.get(id) {
            Some(scale) => *scale,
            None => {
                let scale = self.upstream.pricing_unit_scale(account, id).await?;
                scales.insert(id.clone(), scale);
                scale
            }
        };
        let field = format!("{field}.custom_pricing_unit.value");
        match parse_value(value, scale) {
            Ok(units) if units > 0 => Ok(Some((Asset::pricing_unit(id.clone(), scale)?, units))),
            _ => {
                out.push(FieldViolation::new(
                    field,
                    format!("must be a positive decimal with at most {scale} decimal places"),
                ));
                Ok(None)
            }
        }
    }

    /// Works off every open allocation period of one subscription (called
    /// after the subscription starts, closes a period or is canceled, so
    /// that grants exist when the call returns; the worker retries failures).
    pub async fn run_allocations_of(
        &self,
        account: &str,
        subscription: &str,
    ) -> Result<(), InvoicingError> {
        let rows = self
            .store
            .open_allocation_periods_of(account, subscription)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let sub = self.subscription(account, subscription).await?;
        for row in rows {
            self.advance_allocation(&sub, &row).await?;
        }
        Ok(())
    }

    /// Runs [`Invoicing::run_allocations_of`] and logs a failure (the
    /// worker retries it).
    pub(super) async fn try_allocations_of(&self, account: &str, subscription: &str) {
        if let Err(error) = self.run_allocations_of(account, subscription).await {
            tracing::warn!(%error, subscription, "allocation step failed; the worker retries it");
        }
    }

    /// Moves one row as far as it can go now.
    pub async fn advance_allocation(
        &self,
        sub: &Subscription,
        row: &AllocationPeriod,
    ) -> Result<Progress, InvoicingError> {
        let allocation = usize::try_from(row.allocation)
            .ok()
            .and_then(|i| sub.credit_allocations.get(i))
            .ok_or_else(|| InvoicingError::Corrupt(format!("allocation {}", row.allocation)))?;
        let account = row.account.as_str();
        let mut moved = false;
        let grant = match &row.credit_grant {
            Some(grant) => grant.clone(),
            None => {
                let spec = self.period_grant(sub, allocation, row)?;
                let request_id = format!(
                    "alloc:{}:{}:{}",
                    sub.id,
                    row.allocation,
                    to_micros(row.period_start)
                );
                let grant = self
                    .upstream
                    .create_grant(account, &request_id, &spec)
                    .await?;
                // The ledger has the grant; invoicing has not recorded it.
                super::failpoint("after_allocation_grant");
                self.store
                    .record_allocation_grant(row.key(), &grant)
                    .await?;
                moved = true;
                grant
            }
        };
        if !row.closed || !row.carried_in {
            return Ok(progress(moved));
        }
        if let Some(canceled) = row.canceled {
            if allocation.on_cancel == OnCancel::Expire {
                // Usable by the final invoice (its period ends at `canceled`),
                // by nothing after it.
                let at = shifted(canceled)?;
                for grant in std::iter::once(&grant).chain(row.carried_grant.as_ref()) {
                    self.upstream.expire_grant_by(account, grant, at).await?;
                }
            }
            self.store.finish_allocation_period(row.key()).await?;
            return Ok(Progress::Moved);
        }
        let Some(cap) = allocation.rollover_max else {
            self.store.finish_allocation_period(row.key()).await?;
            return Ok(Progress::Moved);
        };
        if !row.invoice_settled {
            // The period's invoice has not applied its credits yet.
            return Ok(progress(moved));
        }
        let next_start = row.period_end;
        let next_end =
            crate::domain::subscription::period_end_after(sub.anchor, sub.interval, next_start)
                .ok_or_else(|| InvoicingError::Corrupt("period past year 9999".into()))?;
        let mut spec = self.grant_spec(sub, allocation, row.allocation, (next_start, next_end))?;
        spec.amount = cap;
        spec.source.kind = GrantKind::Rollover;
        spec.name = format!("Rollover of allocation {} of {}", row.allocation, sub.id);
        spec.metadata.insert("source".into(), "rollover".into());
        let mut grants = vec![grant];
        grants.extend(row.carried_grant.clone());
        let request_id = format!(
            "rollover:{}:{}:{}",
            sub.id,
            row.allocation,
            to_micros(row.period_start)
        );
        let carried = self
            .upstream
            .rollover_grants(account, &request_id, grants, &spec)
            .await?;
        super::failpoint("after_rollover");
        self.store
            .record_rollover(row.key(), next_start, carried.as_deref())
            .await?;
        Ok(Progress::Moved)
    }

    /// The grant of `row`'s period (prorated when it is a short first one).
    fn period_grant(
        &self,
        sub: &Subscription,
        allocation: &Allocation,
        row: &AllocationPeriod,
    ) -> Result<GrantSpec, InvoicingError> {
        let mut spec = self.grant_spec(
            sub,
            allocation,
            row.allocation,
            (row.period_start, row.period_end),
        )?;
        let full_start = sub
            .interval_start(row.period_end)
            .ok_or_else(|| InvoicingError::Corrupt("period before year 1".into()))?;
        spec.amount = allocation
            .period_amount(row.first, row.period_start, row.period_end, full_start)
            .ok_or_else(|| InvoicingError::Corrupt("prorated amount out of range".into()))?;
        Ok(spec)
    }

    fn grant_spec(
        &self,
        sub: &Subscription,
        allocation: &Allocation,
        index: u32,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<GrantSpec, InvoicingError> {
        let window = allocation
            .window(start, end)
            .ok_or_else(|| InvoicingError::Corrupt("allocation window out of range".into()))?;
        let metadata = BTreeMap::from([
            ("source".to_owned(), "allocation".to_owned()),
            ("subscription".to_owned(), sub.id.clone()),
            ("period_start".to_owned(), start.to_rfc3339()),
        ]);
        Ok(GrantSpec {
            customer: sub.customer.clone(),
            name: format!("Allocation {index} of {}", sub.id),
            asset: allocation.asset.clone(),
            amount: allocation.amount,
            prices: allocation.prices.clone(),
            priority: allocation.priority,
            effective_at: window.effective_at,
            expires_at: window.expires_at,
            metadata,
            source: GrantSource {
                kind: GrantKind::Allocation,
                subscription: sub.id.clone(),
                allocation: index,
                period_start: Some(start),
                credit_purchase: String::new(),
                invoice: String::new(),
            },
            paid: false,
            cost_basis: None,
            pending_payment: false,
        })
    }
}

fn progress(moved: bool) -> Progress {
    if moved {
        Progress::Moved
    } else {
        Progress::Waiting
    }
}

/// `at + 1 µs`: see `domain::allocation` for why grants are shifted.
fn shifted(at: DateTime<Utc>) -> Result<DateTime<Utc>, InvoicingError> {
    at.checked_add_signed(chrono::TimeDelta::microseconds(1))
        .ok_or_else(|| InvoicingError::Corrupt("time out of range".into()))
}
