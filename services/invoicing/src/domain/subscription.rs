//! Subscriptions and their billing periods.
//!
//! Periods end at the billing cycle anchor plus whole intervals, computed
//! from the anchor each time (never from the previous end) so a month-end
//! anchor stays at month end: Jan 31 → Feb 28 → Mar 31, like Stripe.

use billing_money::Currency;

use super::allocation::Allocation;
use super::realtime::Controls;
use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

/// Most items of one subscription.
pub const ITEMS_MAX: usize = 20;
/// How far back a subscription may start.
pub const BACKDATE_MAX_DAYS: i64 = 400;

/// A subscription was created.
pub const SUBSCRIPTION_CREATED: &str = "subscription.created";
/// A subscription changed: set to cancel at period end, or a period closed
/// and the next began.
pub const SUBSCRIPTION_UPDATED: &str = "subscription.updated";
/// A subscription ended (its last period closed).
pub const SUBSCRIPTION_CANCELED: &str = "subscription.canceled";

/// Billing period length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interval {
    /// Calendar months.
    Month,
    /// Calendar years.
    Year,
}

impl Interval {
    /// Months per interval.
    pub fn months(self) -> u32 {
        match self {
            Self::Month => 1,
            Self::Year => 12,
        }
    }

    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// From the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "month" => Some(Self::Month),
            "year" => Some(Self::Year),
            _ => None,
        }
    }
}

/// One price of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// `si_…`
    pub id: String,
    /// `price_…`
    pub price: String,
}

/// A customer's subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// `sub_…`
    pub id: String,
    /// `cus_…`
    pub customer: String,
    /// False once canceled.
    pub active: bool,
    /// Currency of its money prices, if any.
    pub currency: Option<Currency>,
    /// Prices billed, in order.
    pub items: Vec<Item>,
    /// Month or year.
    pub interval: Interval,
    /// Periods end at anchor + k intervals.
    pub anchor: DateTime<Utc>,
    /// Billing start.
    pub start: DateTime<Utc>,
    /// Current period start.
    pub period_start: DateTime<Utc>,
    /// Current period end (exclusive).
    pub period_end: DateTime<Utc>,
    /// Ends with the current period.
    pub cancel_at_period_end: bool,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Newest invoice.
    pub latest_invoice: Option<String>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Credits granted every period.
    #[serde(default)]
    pub credit_allocations: Vec<Allocation>,
    /// Overage policy and usage thresholds.
    #[serde(default)]
    pub controls: Controls,
}

/// `anchor + k intervals`, clamped to the month's last day; None past year 9999.
fn nth_end(anchor: DateTime<Utc>, interval: Interval, k: u32) -> Option<DateTime<Utc>> {
    anchor.checked_add_months(Months::new(k.checked_mul(interval.months())?))
}

/// The first period end strictly after `after`: the smallest `anchor + k
/// intervals` (k ≥ 0) greater than `after`.
pub fn period_end_after(
    anchor: DateTime<Utc>,
    interval: Interval,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // Jump close to the answer, then step: month lengths vary.
    let months_apart = (after.year_month_index() - anchor.year_month_index()).max(0);
    let mut k = u32::try_from(months_apart / i64::from(interval.months()))
        .ok()?
        .saturating_sub(1);
    loop {
        let end = nth_end(anchor, interval, k)?;
        if end > after {
            return Some(end);
        }
        k = k.checked_add(1)?;
    }
}

trait YearMonth {
    fn year_month_index(&self) -> i64;
}

impl YearMonth for DateTime<Utc> {
    fn year_month_index(&self) -> i64 {
        use chrono::Datelike;
        i64::from(self.year()) * 12 + i64::from(self.month0())
    }
}

impl Subscription {
    /// The start of the whole interval that ends at `end` (a short first
    /// period's proration compares against it).
    pub fn interval_start(&self, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
        end.checked_sub_months(Months::new(self.interval.months()))
    }

    /// The period after the current one, or None when the subscription ends
    /// with the current period.
    pub fn next_period(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.cancel_at_period_end || !self.active {
            return None;
        }
        let end = period_end_after(self.anchor, self.interval, self.period_end)?;
        Some((self.period_end, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
    }

    #[test]
    fn month_end_anchor_stays_at_month_end() {
        let anchor = at(2026, 1, 31);
        let first = period_end_after(anchor, Interval::Month, anchor).unwrap();
        assert_eq!(first, at(2026, 2, 28));
        let second = period_end_after(anchor, Interval::Month, first).unwrap();
        assert_eq!(second, at(2026, 3, 31));
    }

    #[test]
    fn anchor_after_start_gives_a_short_first_period() {
        let anchor = at(2026, 3, 15);
        assert_eq!(
            period_end_after(anchor, Interval::Month, at(2026, 3, 1)).unwrap(),
            anchor
        );
        assert_eq!(
            period_end_after(anchor, Interval::Year, anchor).unwrap(),
            at(2027, 3, 15)
        );
    }
}
