//! Where credits came from and what they cost: `CreditGrantSource` and
//! `CostBasis` ⇄ the domain's, with field checks.

use billing_money::{Currency, FieldViolation, decimal_places, parse_decimal};
use billing_proto::ledger::v1 as pb;
use billing_server::time::{from_proto, to_proto};

use crate::domain::grant::{CostBasis, Source, SourceKind};
use crate::domain::validate::check_reference;

/// Most decimal places of a cost basis (minor units per credit).
const COST_BASIS_PLACES_MAX: u32 = 12;
/// Longest cost basis string.
const COST_BASIS_CHARS_MAX: usize = 40;

/// A grant's source from a request.
pub fn source_input(
    source: &pb::CreditGrantSource,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<Source> {
    let name = |n: &str| format!("{field}.{n}");
    let kind = match pb::CreditGrantSourceType::try_from(source.r#type) {
        Ok(pb::CreditGrantSourceType::Allocation) => SourceKind::Allocation,
        Ok(pb::CreditGrantSourceType::Rollover) => SourceKind::Rollover,
        Ok(pb::CreditGrantSourceType::Purchase) => SourceKind::Purchase,
        _ => {
            out.push(FieldViolation::new(
                name("type"),
                "must be ALLOCATION, ROLLOVER or PURCHASE",
            ));
            return None;
        }
    };
    let before = out.len();
    let period_start = match kind {
        SourceKind::Allocation | SourceKind::Rollover => {
            check_reference(&source.subscription, &name("subscription"), out);
            match &source.period_start {
                Some(t) => from_proto(t, &name("period_start"))
                    .map_err(|v| out.push(v))
                    .ok(),
                None => {
                    out.push(FieldViolation::new(name("period_start"), "is required"));
                    None
                }
            }
        }
        SourceKind::Purchase => {
            check_reference(&source.credit_purchase, &name("credit_purchase"), out);
            check_reference(&source.invoice, &name("invoice"), out);
            None
        }
    };
    (out.len() == before).then(|| Source {
        kind,
        subscription: source.subscription.clone(),
        allocation: source.allocation,
        period_start,
        credit_purchase: source.credit_purchase.clone(),
        invoice: source.invoice.clone(),
    })
}

/// A grant's source for a response.
pub fn source_output(source: &Source) -> pb::CreditGrantSource {
    pb::CreditGrantSource {
        r#type: match source.kind {
            SourceKind::Allocation => pb::CreditGrantSourceType::Allocation,
            SourceKind::Rollover => pb::CreditGrantSourceType::Rollover,
            SourceKind::Purchase => pb::CreditGrantSourceType::Purchase,
        }
        .into(),
        subscription: source.subscription.clone(),
        allocation: source.allocation,
        period_start: source.period_start.map(to_proto),
        credit_purchase: source.credit_purchase.clone(),
        invoice: source.invoice.clone(),
    }
}

/// A cost basis from a request: a currency and a non-negative decimal with
/// at most 12 places (more precision is refused, never rounded).
pub fn cost_basis_input(
    cost: &pb::CostBasis,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<CostBasis> {
    let currency = Currency::parse(&cost.currency)
        .map_err(|_| {
            out.push(FieldViolation::new(
                format!("{field}.currency"),
                "must be a lowercase ISO 4217 code such as \"usd\"",
            ));
        })
        .ok();
    let amount_field = format!("{field}.unit_amount_decimal");
    let unit_amount = if cost.unit_amount_decimal.len() > COST_BASIS_CHARS_MAX {
        None
    } else {
        parse_decimal(&cost.unit_amount_decimal)
            .ok()
            .filter(|d| !d.is_sign_negative() && decimal_places(*d) <= COST_BASIS_PLACES_MAX)
    };
    if unit_amount.is_none() {
        out.push(FieldViolation::new(
            amount_field,
            format!(
                "must be a non-negative decimal with at most {COST_BASIS_PLACES_MAX} decimal places"
            ),
        ));
    }
    Some(CostBasis {
        currency: currency?,
        unit_amount: unit_amount?,
    })
}

/// A cost basis for a response.
pub fn cost_basis_output(cost: &CostBasis) -> pb::CostBasis {
    pb::CostBasis {
        currency: cost.currency.code().to_owned(),
        unit_amount_decimal: cost.unit_amount.normalize().to_string(),
    }
}
