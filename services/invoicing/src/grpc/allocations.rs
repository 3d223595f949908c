//! `CreditAllocation` ⇄ the domain's allocations, with field checks.

use billing_money::{Currency, Decimal, FieldViolation, decimal_places, parse_decimal};
use billing_proto::common::v1 as common;
use billing_proto::invoicing::v1 as pb;

use crate::domain::allocation::{ALLOCATIONS_MAX, Allocation, EXPIRY_DAYS_MAX, Expiry, OnCancel};
use crate::domain::subscription::ITEMS_MAX;
use crate::ops::{AllocationInput, AmountInput};

/// Highest grant priority (the ledger's).
pub(super) const PRIORITY_MAX: u32 = 100;
/// Default grant priority (the ledger's).
pub(super) const PRIORITY_DEFAULT: u32 = 50;
/// Most decimal places of a price per credit (minor units).
const UNIT_AMOUNT_PLACES_MAX: u32 = 12;
/// Longest price per credit.
const UNIT_AMOUNT_CHARS_MAX: usize = 40;

/// `unit_amount_decimal` of a purchase or a top-up: minor units per whole
/// credit, non-negative, at most 12 decimal places (more is refused, never
/// rounded).
pub(super) fn unit_amount_input(value: &str, out: &mut Vec<FieldViolation>) -> Option<Decimal> {
    let parsed = (value.len() <= UNIT_AMOUNT_CHARS_MAX)
        .then(|| parse_decimal(value).ok())
        .flatten()
        .filter(|d| !d.is_sign_negative() && decimal_places(*d) <= UNIT_AMOUNT_PLACES_MAX);
    if parsed.is_none() {
        out.push(FieldViolation::new(
            "unit_amount_decimal",
            format!(
                "is required: minor units per credit, a non-negative decimal with at most \
                 {UNIT_AMOUNT_PLACES_MAX} decimal places"
            ),
        ));
    }
    parsed
}

/// CreateSubscription's `credit_allocations`, checked field by field
/// (pricing units and prices are checked against their owners later).
pub fn allocation_inputs(
    allocations: &[pb::CreditAllocation],
    out: &mut Vec<FieldViolation>,
) -> Vec<AllocationInput> {
    if allocations.len() > ALLOCATIONS_MAX {
        out.push(FieldViolation::new(
            "credit_allocations",
            format!("at most {ALLOCATIONS_MAX} allocations"),
        ));
        return Vec::new();
    }
    let mut inputs = Vec::new();
    for (i, allocation) in allocations.iter().enumerate() {
        let field = |name: &str| format!("credit_allocations[{i}].{name}");
        let amount = amount_input(allocation.amount.as_ref(), &field("amount"), out);
        let rollover_max = allocation
            .rollover_max_amount
            .as_ref()
            .map(|a| amount_input(Some(a), &field("rollover_max_amount"), out));
        let priority = allocation.priority.unwrap_or(PRIORITY_DEFAULT);
        if priority > PRIORITY_MAX {
            out.push(FieldViolation::new(
                field("priority"),
                format!("must be between 0 and {PRIORITY_MAX}"),
            ));
        }
        let expiry = match pb::AllocationExpiry::try_from(allocation.expiry) {
            Ok(pb::AllocationExpiry::Unspecified | pb::AllocationExpiry::EndOfPeriod) => {
                Some(Expiry::EndOfPeriod)
            }
            Ok(pb::AllocationExpiry::AfterDays) => Some(Expiry::AfterDays {
                days: allocation.expiry_days,
            }),
            Ok(pb::AllocationExpiry::Never) => Some(Expiry::Never),
            Err(_) => {
                out.push(FieldViolation::new(
                    field("expiry"),
                    "must be END_OF_PERIOD, AFTER_DAYS or NEVER",
                ));
                None
            }
        };
        match expiry {
            Some(Expiry::AfterDays { days }) if days == 0 || days > EXPIRY_DAYS_MAX => {
                out.push(FieldViolation::new(
                    field("expiry_days"),
                    format!("must be 1 to {EXPIRY_DAYS_MAX} with AFTER_DAYS"),
                ));
            }
            Some(Expiry::EndOfPeriod | Expiry::Never) if allocation.expiry_days != 0 => {
                out.push(FieldViolation::new(
                    field("expiry_days"),
                    "is only for expiry AFTER_DAYS",
                ));
            }
            _ => {}
        }
        let on_cancel = match pb::AllocationOnCancel::try_from(allocation.on_cancel) {
            Ok(pb::AllocationOnCancel::Unspecified | pb::AllocationOnCancel::Expire) => {
                OnCancel::Expire
            }
            Ok(pb::AllocationOnCancel::Keep) => OnCancel::Keep,
            Err(_) => {
                out.push(FieldViolation::new(
                    field("on_cancel"),
                    "must be EXPIRE or KEEP",
                ));
                OnCancel::Expire
            }
        };
        if allocation.prices.len() > ITEMS_MAX {
            out.push(FieldViolation::new(
                field("prices"),
                format!("at most {ITEMS_MAX} prices (a subscription has no more)"),
            ));
        }
        for (p, price) in allocation.prices.iter().take(ITEMS_MAX).enumerate() {
            if price.is_empty() || price.len() > 255 {
                out.push(FieldViolation::new(
                    field(&format!("prices[{p}]")),
                    "must be a price id of the subscription",
                ));
            }
        }
        if let (Some(amount), Some(expiry)) = (amount, expiry) {
            inputs.push(AllocationInput {
                amount,
                rollover_max: rollover_max.flatten(),
                prices: allocation.prices.clone(),
                priority,
                expiry,
                prorate_first_period: allocation.prorate_first_period,
                on_cancel,
            });
        }
    }
    inputs
}

pub(super) fn amount_input(
    amount: Option<&common::Amount>,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<AmountInput> {
    match amount.and_then(|a| a.kind.as_ref()) {
        None => {
            out.push(FieldViolation::new(
                field,
                "is required: set monetary or custom_pricing_unit",
            ));
            None
        }
        Some(common::amount::Kind::Monetary(money)) => {
            let currency = Currency::parse(&money.currency)
                .map_err(|_| {
                    out.push(FieldViolation::new(
                        format!("{field}.monetary.currency"),
                        "must be a lowercase ISO 4217 code such as \"usd\"",
                    ));
                })
                .ok()?;
            if money.value <= 0 {
                out.push(FieldViolation::new(
                    format!("{field}.monetary.value"),
                    "must be positive",
                ));
                return None;
            }
            Some(AmountInput::Money(currency, money.value))
        }
        Some(common::amount::Kind::CustomPricingUnit(unit)) => {
            if !unit.id.starts_with("pu_") || unit.id.len() > 255 {
                out.push(FieldViolation::new(
                    format!("{field}.custom_pricing_unit.id"),
                    "must be a `pu_…` id",
                ));
                return None;
            }
            Some(AmountInput::Unit(unit.id.clone(), unit.value.clone()))
        }
    }
}

/// An allocation for a response.
pub fn allocation(allocation: &Allocation) -> pb::CreditAllocation {
    let (expiry, expiry_days) = match allocation.expiry {
        Expiry::EndOfPeriod => (pb::AllocationExpiry::EndOfPeriod, 0),
        Expiry::AfterDays { days } => (pb::AllocationExpiry::AfterDays, days),
        Expiry::Never => (pb::AllocationExpiry::Never, 0),
    };
    pb::CreditAllocation {
        amount: Some(billing_server::amount::to_proto(
            &allocation.asset,
            allocation.amount,
        )),
        prices: allocation.prices.clone(),
        priority: Some(allocation.priority),
        expiry: expiry.into(),
        expiry_days,
        rollover_max_amount: allocation
            .rollover_max
            .map(|max| billing_server::amount::to_proto(&allocation.asset, max)),
        prorate_first_period: allocation.prorate_first_period,
        on_cancel: match allocation.on_cancel {
            OnCancel::Expire => pb::AllocationOnCancel::Expire,
            OnCancel::Keep => pb::AllocationOnCancel::Keep,
        }
        .into(),
    }
}
