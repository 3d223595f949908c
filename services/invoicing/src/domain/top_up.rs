//! Auto top-up (DESIGN.md section 11): when a customer's available balance
//! of an asset drops below a threshold, buy credits, within limits per
//! rolling 30 days. The decision is a pure function of the balance (with
//! unpaid top-ups counted), the settings and the window's purchases.

use billing_money::{Asset, Currency, Decimal};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::purchase::charge;

/// A purchase was made.
pub const AUTO_TOP_UP_TRIGGERED: &str = "auto_top_up.triggered";
/// A purchase would have passed the window's limits: none was made.
pub const AUTO_TOP_UP_LIMIT_REACHED: &str = "auto_top_up.limit_reached";
/// Unpaid top-ups already bring the balance back: nothing was bought.
pub const AUTO_TOP_UP_SKIPPED: &str = "auto_top_up.skipped";
/// Disabled (DisableAutoTopUp, or a top-up invoice voided unpaid).
pub const AUTO_TOP_UP_DISABLED: &str = "auto_top_up.disabled";

/// The limits' rolling window.
pub fn window() -> TimeDelta {
    TimeDelta::days(30)
}

/// How much a top-up buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Size {
    /// This many credits (smallest units).
    Fixed {
        /// Credits per purchase.
        credits: i64,
    },
    /// What brings the balance (with unpaid top-ups) back to this.
    RechargeTo {
        /// Target balance.
        balance: i64,
    },
}

/// A customer's auto top-up for one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoTopUp {
    /// `atu_…`
    pub id: String,
    /// `cus_…`
    pub customer: String,
    /// The asset topped up.
    pub asset: Asset,
    /// Buy below this (smallest units).
    pub threshold: i64,
    /// How much.
    pub size: Size,
    /// The purchases' currency.
    pub currency: Currency,
    /// Minor units per whole credit.
    pub unit_amount: Decimal,
    /// Bought credits expire this many days after purchase; 0: never.
    pub expires_after_days: u32,
    /// Bought credits wait for payment.
    pub require_payment: bool,
    /// Most purchases per window; 0: no limit.
    pub max_purchases: u32,
    /// Most spent per window (currency minor units); None: no limit.
    pub max_spend: Option<i64>,
    /// False once disabled.
    pub enabled: bool,
    /// The ledger alert (`balalrt_…`) at the threshold.
    pub balance_alert: String,
    /// When it was set.
    pub created: DateTime<Utc>,
}

/// The data of `auto_top_up.*` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopUpEvent {
    /// The top-up as it stood.
    pub auto_top_up: AutoTopUp,
    /// The purchase made, if any.
    pub credit_purchase: Option<String>,
    /// Why nothing was bought, or why it was disabled.
    pub reason: String,
    /// The ledger event behind the decision.
    pub cause: String,
}

/// What to do about a crossing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Buy `credits` for `cost` (currency minor units).
    Buy {
        /// Credits, smallest units.
        credits: i64,
        /// What the invoice will charge.
        cost: i64,
    },
    /// The balance with unpaid top-ups is not below the threshold.
    Covered,
    /// A purchase would pass a limit.
    LimitReached(String),
}

/// Decides on a crossing: `available` and `pending` (unpaid purchases) are
/// the ledger's balances now; `(count, spent)` are the top-up's purchases
/// in the window. None when the arithmetic does not fit in 64 bits.
pub fn decide(
    top_up: &AutoTopUp,
    available: i64,
    pending: i64,
    (count, spent): (u32, i64),
) -> Option<Decision> {
    let balance = available.checked_add(pending)?;
    if balance >= top_up.threshold {
        return Some(Decision::Covered);
    }
    let credits = match top_up.size {
        Size::Fixed { credits } => credits,
        Size::RechargeTo { balance: target } => target.checked_sub(balance)?,
    };
    if credits <= 0 {
        return Some(Decision::Covered);
    }
    let cost = charge(&top_up.asset, credits, top_up.unit_amount)?;
    if top_up.max_purchases > 0 && count >= top_up.max_purchases {
        return Some(Decision::LimitReached(format!(
            "{count} purchases in the last 30 days; the limit is {}",
            top_up.max_purchases
        )));
    }
    if let Some(max) = top_up.max_spend
        && spent.checked_add(cost)? > max
    {
        return Some(Decision::LimitReached(format!(
            "{spent} spent in the last 30 days; {cost} more would pass the limit of {max}"
        )));
    }
    Some(Decision::Buy { credits, cost })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top_up(size: Size) -> AutoTopUp {
        AutoTopUp {
            id: "atu_1".into(),
            customer: "cus_1".into(),
            asset: Asset::Currency(Currency::parse("usd").unwrap()),
            threshold: 1_000,
            size,
            currency: Currency::parse("usd").unwrap(),
            unit_amount: Decimal::from(100),
            expires_after_days: 0,
            require_payment: true,
            max_purchases: 2,
            max_spend: Some(20_000),
            enabled: true,
            balance_alert: "balalrt_1".into(),
            created: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn buys_below_the_threshold_counting_unpaid_top_ups() {
        let fixed = top_up(Size::Fixed { credits: 5_000 });
        assert_eq!(
            decide(&fixed, 900, 0, (0, 0)),
            Some(Decision::Buy {
                credits: 5_000,
                cost: 5_000
            })
        );
        assert_eq!(
            decide(&fixed, 900, 5_000, (1, 5_000)),
            Some(Decision::Covered)
        );
        let recharge = top_up(Size::RechargeTo { balance: 3_000 });
        assert_eq!(
            decide(&recharge, 400, 100, (0, 0)),
            Some(Decision::Buy {
                credits: 2_500,
                cost: 2_500
            })
        );
    }

    #[test]
    fn limits_count_purchases_and_spend_in_the_window() {
        let fixed = top_up(Size::Fixed { credits: 5_000 });
        assert!(matches!(
            decide(&fixed, 0, 0, (2, 10_000)),
            Some(Decision::LimitReached(_))
        ));
        let mut by_spend = fixed.clone();
        by_spend.max_purchases = 0;
        assert!(matches!(
            decide(&by_spend, 0, 0, (3, 16_000)),
            Some(Decision::LimitReached(_))
        ));
        assert!(matches!(
            decide(&by_spend, 0, 0, (3, 15_000)),
            Some(Decision::Buy { .. })
        ));
    }
}
