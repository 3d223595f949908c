//! Recurring credit allocations (DESIGN.md section 11): what a subscription
//! grants every period, and the window of each period's grant.
//!
//! The ledger's eligibility rule is `effective_at ≤ period_end < expires_at`
//! on the invoice's service period end. A period `[start, end)` is invoiced
//! with `period_end = end`, and the next period starts at that same instant.
//! A grant effective at `start` would therefore also pay the *previous*
//! period's invoice, and one expiring at `end` would not pay its own. So a
//! period's grant is effective from `start + 1 µs` and (end of period)
//! expires at `end + 1 µs`: it pays exactly the invoices whose service period
//! ends in `(start, end]` — its own period's, or the final invoice of a
//! subscription canceled within it.

use billing_money::{Asset, Decimal, round_to_scale};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Most allocations on one subscription.
pub const ALLOCATIONS_MAX: usize = 10;
/// Longest `after N days` expiry.
pub const EXPIRY_DAYS_MAX: u32 = 3_660;

/// When a period's credits expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Expiry {
    /// With the period.
    EndOfPeriod,
    /// N days after the period starts.
    AfterDays {
        /// 1 to [`EXPIRY_DAYS_MAX`].
        days: u32,
    },
    /// Never.
    Never,
}

/// What cancelling does to the current period's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCancel {
    /// They expire at the cancellation.
    Expire,
    /// They keep their own expiry.
    Keep,
}

/// One recurring allocation of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// What the credits are in.
    pub asset: Asset,
    /// Granted per period, in the asset's smallest units (> 0).
    pub amount: i64,
    /// Prices the credits may pay for; empty: every metered price.
    pub prices: Vec<String>,
    /// 0 to 100.
    pub priority: u32,
    /// When a period's credits expire.
    pub expiry: Expiry,
    /// Carried into the next period, at most this much; None: nothing.
    pub rollover_max: Option<i64>,
    /// Prorate a short first period.
    pub prorate_first_period: bool,
    /// On cancel.
    pub on_cancel: OnCancel,
}

/// One microsecond: the shift that aligns a grant with the ledger's rule.
fn tick() -> TimeDelta {
    TimeDelta::microseconds(1)
}

/// When a period's grant (allocation or carried) is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `start + 1 µs`.
    pub effective_at: DateTime<Utc>,
    /// Per the expiry rule, `+ 1 µs`; None: never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Allocation {
    /// The window of the grants for the period `[start, end)`.
    pub fn window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Window> {
        let expires_at = match self.expiry {
            Expiry::EndOfPeriod => Some(end.checked_add_signed(tick())?),
            Expiry::AfterDays { days } => Some(
                start
                    .checked_add_signed(TimeDelta::days(i64::from(days)))?
                    .checked_add_signed(tick())?,
            ),
            Expiry::Never => None,
        };
        Some(Window {
            effective_at: start.checked_add_signed(tick())?,
            expires_at,
        })
    }

    /// The amount granted for `[start, end)`: the full amount, or, for a
    /// first period shorter than a whole interval `[full_start, end)` with
    /// proration on, `amount × (end − start) / (end − full_start)` rounded
    /// once, half away from zero. None if the arithmetic does not fit.
    pub fn period_amount(
        &self,
        first: bool,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        full_start: DateTime<Utc>,
    ) -> Option<i64> {
        if !first || !self.prorate_first_period || start <= full_start {
            return Some(self.amount);
        }
        let part = Decimal::from((end - start).num_microseconds()?);
        let whole = Decimal::from((end - full_start).num_microseconds()?);
        if whole <= Decimal::ZERO {
            return Some(self.amount);
        }
        let exact = Decimal::from(self.amount)
            .checked_mul(part)?
            .checked_div(whole)?;
        round_to_scale(exact, 0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billing_money::Currency;
    use chrono::TimeZone;

    fn at(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).single().unwrap()
    }

    fn allocation(expiry: Expiry) -> Allocation {
        Allocation {
            asset: Asset::Currency(Currency::parse("usd").unwrap()),
            amount: 1_000,
            prices: Vec::new(),
            priority: 50,
            expiry,
            rollover_max: None,
            prorate_first_period: true,
            on_cancel: OnCancel::Expire,
        }
    }

    #[test]
    fn a_period_grant_pays_its_own_invoice_and_not_the_previous_one() {
        let a = allocation(Expiry::EndOfPeriod);
        let w = a.window(at(2, 1), at(3, 1)).unwrap();
        // The ledger's rule on a service period end p: effective_at ≤ p < expires_at.
        let pays = |p: DateTime<Utc>| w.effective_at <= p && w.expires_at.is_none_or(|e| p < e);
        assert!(pays(at(3, 1)), "February's invoice ends March 1");
        assert!(!pays(at(2, 1)), "January's invoice ends February 1");
        assert!(pays(at(2, 15)), "a cancel on February 15");
        assert!(!pays(at(3, 2)));
    }

    #[test]
    fn after_days_and_never() {
        let w = allocation(Expiry::AfterDays { days: 10 })
            .window(at(2, 1), at(3, 1))
            .unwrap();
        assert_eq!(w.expires_at, Some(at(2, 11) + tick()));
        let w = allocation(Expiry::Never)
            .window(at(2, 1), at(3, 1))
            .unwrap();
        assert_eq!(w.expires_at, None);
    }

    #[test]
    fn a_short_first_period_is_prorated_once_half_away_from_zero() {
        let a = allocation(Expiry::EndOfPeriod);
        // 10 of February's 28 days: 1000 × 10/28 = 357.14… → 357.
        assert_eq!(
            a.period_amount(true, at(2, 19), at(3, 1), at(2, 1)),
            Some(357)
        );
        // 14 of 28: exactly 500.
        assert_eq!(
            a.period_amount(true, at(2, 15), at(3, 1), at(2, 1)),
            Some(500)
        );
        // A whole first period, or a later one: the full amount.
        assert_eq!(
            a.period_amount(true, at(2, 1), at(3, 1), at(2, 1)),
            Some(1_000)
        );
        assert_eq!(
            a.period_amount(false, at(2, 19), at(3, 1), at(2, 1)),
            Some(1_000)
        );
        let mut whole = a.clone();
        whole.prorate_first_period = false;
        assert_eq!(
            whole.period_amount(true, at(2, 19), at(3, 1), at(2, 1)),
            Some(1_000)
        );
    }
}
