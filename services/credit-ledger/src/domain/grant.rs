//! Credit grants: what they are, their derived state, their order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use billing_money::{Asset, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Priority when the request leaves it unset (Stripe's default).
pub const DEFAULT_PRIORITY: u32 = 50;
/// The largest priority.
pub const MAX_PRIORITY: u32 = 100;

/// What a grant may pay for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every metered price.
    Metered,
    /// Only these price ids.
    Prices(Vec<String>),
}

impl Scope {
    /// Whether a line with `price` (always a metered price here) is covered.
    pub fn covers(&self, price: &str) -> bool {
        match self {
            Self::Metered => true,
            Self::Prices(prices) => prices.iter().any(|p| p == price),
        }
    }
}

/// Paid or promotional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Bought.
    Paid,
    /// Given away; used before paid credits when priority and expiry tie.
    Promotional,
}

impl Category {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Promotional => "promotional",
        }
    }

    /// From the storage form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "paid" => Some(Self::Paid),
            "promotional" => Some(Self::Promotional),
            _ => None,
        }
    }
}

/// What created a grant, when not a client (DESIGN.md section 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Allocation, rollover or purchase.
    pub kind: SourceKind,
    /// The subscription (`sub_…`) of an allocation or rollover.
    #[serde(default)]
    pub subscription: String,
    /// The allocation's position on the subscription.
    #[serde(default)]
    pub allocation: u32,
    /// The start of the period the credits are for (allocation, rollover).
    #[serde(default)]
    pub period_start: Option<DateTime<Utc>>,
    /// The purchase (`cpur_…`).
    #[serde(default)]
    pub credit_purchase: String,
    /// The purchase's invoice.
    #[serde(default)]
    pub invoice: String,
}

/// What each credit of a bought grant cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostBasis {
    /// The currency.
    pub currency: billing_money::Currency,
    /// Minor units of the currency per whole credit.
    pub unit_amount: billing_money::Decimal,
}

/// The kinds of [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A recurring allocation's grant for one period.
    Allocation,
    /// An allocation's remainder carried into the next period.
    Rollover,
    /// A credit purchase.
    Purchase,
}

/// Derived state (never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    /// Before effective_at.
    Pending,
    /// Usable with credit left.
    Granted,
    /// Usable but empty.
    Depleted,
    /// Past expires_at.
    Expired,
    /// Voided.
    Voided,
    /// Bought; its invoice is not paid yet.
    PendingPayment,
}

/// Totals of each kind of movement, kept on the grant row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTotals {
    /// Σ credits_applied.
    pub applied: i64,
    /// Σ credits_application_invoice_voided.
    pub reinstated: i64,
    /// Σ credits_expired.
    pub expired: i64,
    /// Σ credits_voided.
    pub voided: i64,
}

/// A credit grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `credgr_…`
    pub id: String,
    /// The customer.
    pub customer: String,
    /// At most 100 characters.
    pub name: String,
    /// What the amounts are in.
    pub asset: Asset,
    /// Granted, in smallest units.
    pub amount: i64,
    /// Left to apply.
    pub available: i64,
    /// Movements so far.
    pub totals: GrantTotals,
    /// What it pays for.
    pub scope: Scope,
    /// Paid or promotional.
    pub category: Category,
    /// 0 to 100, lower first.
    pub priority: u32,
    /// Usable from.
    pub effective_at: DateTime<Utc>,
    /// Usable until (exclusive).
    pub expires_at: Option<DateTime<Utc>>,
    /// When voided.
    pub voided_at: Option<DateTime<Utc>>,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last changed.
    pub updated: DateTime<Utc>,
    /// What created it; `None` for a client's CreateCreditGrant.
    pub source: Option<Source>,
    /// What the credits cost, when bought.
    #[serde(default)]
    pub cost_basis: Option<CostBasis>,
    /// Bought, invoice not paid yet: in the ledger balance only.
    #[serde(default)]
    pub pending_payment: bool,
    /// Also pays the customer's descendants' invoices (a credit pool).
    #[serde(default)]
    pub shared: bool,
}

impl Grant {
    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> GrantState {
        if self.voided_at.is_some() {
            GrantState::Voided
        } else if self.pending_payment {
            GrantState::PendingPayment
        } else if self.expires_at.is_some_and(|at| at <= now) {
            GrantState::Expired
        } else if self.effective_at > now {
            GrantState::Pending
        } else if self.available == 0 {
            GrantState::Depleted
        } else {
            GrantState::Granted
        }
    }

    /// Whether the grant counts in the available balance at `now`.
    pub fn is_available_at(&self, now: DateTime<Utc>) -> bool {
        self.voided_at.is_none()
            && !self.pending_payment
            && self.effective_at <= now
            && self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether it may pay a line of `asset` and `price` on an invoice whose
    /// service period ends at `period_end` (Stripe's rule:
    /// `effective_at <= period_end < expires_at`).
    pub fn is_eligible(&self, asset: &Asset, price: &str, period_end: DateTime<Utc>) -> bool {
        self.voided_at.is_none()
            && !self.pending_payment
            && self.available > 0
            && &self.asset == asset
            && self.effective_at <= period_end
            && self.expires_at.is_none_or(|at| period_end < at)
            && self.scope.covers(price)
    }

    /// The grant's remaining amount as money.
    pub fn available_money(&self) -> Money {
        Money::new(self.asset.clone(), self.available)
    }
}

/// The application order, made total (DESIGN.md section 4):
/// priority ascending; expires_at ascending with no expiry last; promotional
/// before paid; effective_at ascending; created ascending; id ascending.
pub fn application_order(a: &Grant, b: &Grant) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| match (a.expires_at, b.expires_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| category_rank(a.category).cmp(&category_rank(b.category)))
        .then_with(|| a.effective_at.cmp(&b.effective_at))
        .then_with(|| a.created.cmp(&b.created))
        .then_with(|| a.id.cmp(&b.id))
}

fn category_rank(category: Category) -> u8 {
    match category {
        Category::Promotional => 0,
        Category::Paid => 1,
    }
}

/// The changes UpdateCreditGrant may make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChanges {
    /// New name.
    pub name: Option<String>,
    /// New expiry: `Some(None)` removes it.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Merged in; an empty value removes the key.
    pub metadata: BTreeMap<String, String>,
}

use super::error::{ConflictReason, RuleError};
use super::transaction::{BalanceTransaction, NewId, TransactionKind};

impl Grant {
    /// A transaction of this grant with the given id, recorded at `now`.
    pub fn transaction(
        &self,
        id: String,
        kind: TransactionKind,
        amount: i64,
        effective_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BalanceTransaction {
        BalanceTransaction {
            id,
            customer: self.customer.clone(),
            credit_grant: self.id.clone(),
            kind,
            asset: self.asset.clone(),
            amount,
            invoice: None,
            invoice_line_item: None,
            effective_at,
            created: now,
            cost_basis: self.cost_basis.clone(),
        }
    }

    /// Voids a grant that was never applied; its remainder is debited.
    pub fn void(
        &mut self,
        now: DateTime<Utc>,
        new_id: NewId<'_>,
    ) -> Result<Vec<BalanceTransaction>, RuleError> {
        if self.voided_at.is_some() {
            return Err(RuleError::conflict(
                ConflictReason::GrantVoided,
                "the grant is already voided",
            ));
        }
        if self.totals.applied > 0 {
            return Err(RuleError::conflict(
                ConflictReason::GrantAlreadyApplied,
                "the grant was applied to an invoice; expire it instead of voiding it",
            ));
        }
        let mut out = Vec::new();
        if self.available > 0 {
            out.push(self.transaction(
                new_id(),
                TransactionKind::CreditsVoided,
                self.available,
                now,
                now,
            ));
            self.totals.voided = add(self.totals.voided, self.available, "voided total")?;
            self.available = 0;
        }
        self.voided_at = Some(now);
        self.updated = now;
        Ok(out)
    }

    /// Makes a grant bought pending payment usable (its invoice was paid).
    /// An active grant stays as it is; a voided one cannot be activated.
    pub fn activate(
        &mut self,
        now: DateTime<Utc>,
        _new_id: NewId<'_>,
    ) -> Result<Vec<BalanceTransaction>, RuleError> {
        if self.voided_at.is_some() {
            return Err(RuleError::conflict(
                ConflictReason::GrantVoided,
                "the grant is voided (its purchase invoice was voided)",
            ));
        }
        if self.pending_payment {
            self.pending_payment = false;
            self.updated = now;
        }
        Ok(Vec::new())
    }

    /// Expires the remainder now; the expiry moves to `now` if it was later.
    pub fn expire_now(
        &mut self,
        now: DateTime<Utc>,
        new_id: NewId<'_>,
    ) -> Result<Vec<BalanceTransaction>, RuleError> {
        if self.voided_at.is_some() {
            return Err(RuleError::conflict(
                ConflictReason::GrantVoided,
                "the grant is voided",
            ));
        }
        if self.expires_at.is_some_and(|at| at <= now) && self.available == 0 {
            return Err(RuleError::conflict(
                ConflictReason::GrantAlreadyExpired,
                "the grant has already expired",
            ));
        }
        if self.expires_at.is_none_or(|at| at > now) {
            self.expires_at = Some(now);
        }
        let out = self.record_expiry(now, now, new_id)?;
        self.updated = now;
        Ok(out)
    }

    /// Debits whatever is left as expired, effective at `effective_at`
    /// (the sweeper passes `expires_at`; a reversal or ExpireCreditGrant, now).
    pub fn record_expiry(
        &mut self,
        effective_at: DateTime<Utc>,
        now: DateTime<Utc>,
        new_id: NewId<'_>,
    ) -> Result<Vec<BalanceTransaction>, RuleError> {
        if self.available == 0 {
            return Ok(Vec::new());
        }
        let debit = self.transaction(
            new_id(),
            TransactionKind::CreditsExpired,
            self.available,
            effective_at,
            now,
        );
        self.totals.expired = add(self.totals.expired, self.available, "expired total")?;
        self.available = 0;
        Ok(vec![debit])
    }

    /// Applies UpdateCreditGrant's changes (already validated field by field).
    pub fn update(&mut self, changes: GrantChanges, now: DateTime<Utc>) -> Result<(), RuleError> {
        if self.voided_at.is_some() {
            return Err(RuleError::conflict(
                ConflictReason::GrantVoided,
                "a voided grant cannot change",
            ));
        }
        if let Some(expires_at) = changes.expires_at {
            if self.expires_at.is_some_and(|at| at <= now) {
                return Err(RuleError::conflict(
                    ConflictReason::GrantAlreadyExpired,
                    "the grant has expired; its expiry can no longer change",
                ));
            }
            if expires_at.is_some_and(|at| at <= self.effective_at) {
                return Err(RuleError::invalid(
                    "expires_at",
                    "must be after effective_at",
                ));
            }
            self.expires_at = expires_at;
        }
        if let Some(name) = changes.name {
            self.name = name;
        }
        for (key, value) in changes.metadata {
            if value.is_empty() {
                self.metadata.remove(&key);
            } else {
                self.metadata.insert(key, value);
            }
        }
        let mut violations = Vec::new();
        super::validate::check_metadata(&self.metadata, "metadata", &mut violations);
        if !violations.is_empty() {
            return Err(RuleError::Invalid(violations));
        }
        self.updated = now;
        Ok(())
    }
}

/// `a + b`, or an overflow error naming what was summed: money never wraps
/// and never saturates.
pub fn add(a: i64, b: i64, what: &'static str) -> Result<i64, RuleError> {
    a.checked_add(b).ok_or(RuleError::Overflow(what))
}

/// `a - b`, or an overflow error naming what was subtracted.
pub fn subtract(a: i64, b: i64, what: &'static str) -> Result<i64, RuleError> {
    a.checked_sub(b).ok_or(RuleError::Overflow(what))
}
