//! The ledger invariants (DESIGN.md section 4), checked by the audit and by
//! the property tests after every step.

use std::collections::BTreeMap;

use billing_money::Asset;

use super::apply::ApplyOutcome;
use super::grant::{Grant, GrantTotals};

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Grant or invoice id.
    pub subject: String,
    /// Invariant name (UPPER_SNAKE).
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

/// The alert evaluation's stored balance of a customer and asset equals
/// the sum of its grants' available credits at the evaluation's time less
/// the holds active then (every change that moves a balance re-evaluates
/// it, in its transaction).
pub fn check_evaluated_balance(
    (customer, asset): (&str, &str),
    (stored, evaluated_at): (i64, chrono::DateTime<chrono::Utc>),
    grants: &[&super::grant::Grant],
    holds: &[&super::hold::Hold],
    out: &mut Vec<Violation>,
) {
    let available = grants
        .iter()
        .filter(|g| g.is_available_at(evaluated_at))
        .try_fold(0_i64, |sum, g| sum.checked_add(g.available));
    let held = holds
        .iter()
        .filter(|h| {
            h.created <= evaluated_at
                && h.expires_at > evaluated_at
                && h.released_at.is_none_or(|r| r > evaluated_at)
        })
        .try_fold(0_i64, |sum, h| sum.checked_add(h.amount));
    let expected = available
        .zip(held)
        .and_then(|(available, held)| available.checked_sub(held));
    if expected != Some(stored) {
        out.push(Violation {
            subject: format!("{customer}/{asset}"),
            invariant: "EVALUATED_BALANCE_MATCHES_GRANTS",
            detail: format!(
                "the alert state holds {stored} but the grants available at {} less the holds \
                 active then hold {expected:?} ({available:?} − {held:?})",
                evaluated_at.to_rfc3339()
            ),
        });
    }
}

/// Σ of each transaction kind of one grant, recomputed from its history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryTotals {
    /// Σ credits_granted.
    pub granted: i64,
    /// The other kinds.
    pub totals: GrantTotals,
}

/// Checks one grant: the balance equation, non-negative balance, and (when
/// given) agreement of the running totals with the transaction history.
pub fn check_grant(grant: &Grant, history: Option<&HistoryTotals>, out: &mut Vec<Violation>) {
    let t = &grant.totals;
    let rhs = i128::from(grant.available) + i128::from(t.applied) - i128::from(t.reinstated)
        + i128::from(t.expired)
        + i128::from(t.voided);
    if i128::from(grant.amount) != rhs {
        out.push(Violation {
            subject: grant.id.clone(),
            invariant: "GRANT_BALANCE_EQUATION",
            detail: format!(
                "granted {} != available {} + applied {} - reinstated {} + expired {} + voided {}",
                grant.amount, grant.available, t.applied, t.reinstated, t.expired, t.voided
            ),
        });
    }
    if grant.available < 0 {
        out.push(Violation {
            subject: grant.id.clone(),
            invariant: "GRANT_AVAILABLE_NON_NEGATIVE",
            detail: format!("available is {}", grant.available),
        });
    }
    if let Some(history) = history
        && (history.granted != grant.amount || history.totals != grant.totals)
    {
        out.push(Violation {
            subject: grant.id.clone(),
            invariant: "GRANT_MATCHES_HISTORY",
            detail: format!(
                "row says granted {} {:?}, transactions say granted {} {:?}",
                grant.amount, grant.totals, history.granted, history.totals
            ),
        });
    }
}

/// Checks one invoice: per asset, Σ applications ≤ Σ line amounts, and no line
/// gets more than its amount.
pub fn check_invoice(outcome: &ApplyOutcome, out: &mut Vec<Violation>) {
    // i128 sums: up to 2^64 applications of i64 cannot overflow them.
    let mut applied_by_line: BTreeMap<&str, i128> = BTreeMap::new();
    let mut applied_by_asset: BTreeMap<&Asset, i128> = BTreeMap::new();
    for application in &outcome.applications {
        *applied_by_line
            .entry(&application.invoice_line_item)
            .or_default() += i128::from(application.amount);
        *applied_by_asset.entry(&application.asset).or_default() += i128::from(application.amount);
    }
    for line in &outcome.lines {
        let applied = applied_by_line
            .get(line.invoice_line_item.as_str())
            .copied()
            .unwrap_or(0);
        if applied > i128::from(line.amount) || applied != i128::from(line.applied) {
            out.push(Violation {
                subject: outcome.invoice.clone(),
                invariant: "LINE_NOT_OVERPAID",
                detail: format!(
                    "line {} amount {} applied {} (reported {})",
                    line.invoice_line_item, line.amount, applied, line.applied
                ),
            });
        }
    }
    for total in &outcome.totals {
        let applied = applied_by_asset.get(&total.asset).copied().unwrap_or(0);
        if applied > i128::from(total.amount) {
            out.push(Violation {
                subject: outcome.invoice.clone(),
                invariant: "INVOICE_NOT_OVERPAID",
                detail: format!(
                    "{} applied {} > lines {}",
                    total.asset.key(),
                    applied,
                    total.amount
                ),
            });
        }
    }
}
