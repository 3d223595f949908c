//! Balance alerts (DESIGN.md §10): which events a move of a customer's
//! available balance fires.
//!
//! An alert's state is never stored: it is derived from the balance as last
//! evaluated (triggered while it is below the threshold). The store keeps
//! that one number per customer and asset, locked and rewritten by every
//! change that moves the balance, so each crossing is seen by exactly one
//! transaction, and [`crossings`] turns the before/after pair into events.

use billing_money::Asset;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The available balance fell below a configured alert's threshold.
pub const CREDIT_BALANCE_DROPPED: &str = "customer.credit_balance_dropped";
/// The available balance reached 0 (built in for every customer and asset).
pub const CREDIT_BALANCE_DEPLETED: &str = "customer.credit_balance_depleted";
/// The available balance is back above 0 (built in), or back at or above a
/// configured alert's threshold.
pub const CREDIT_BALANCE_RECOVERED: &str = "customer.credit_balance_recovered";

/// Longest title.
pub const TITLE_MAX: usize = 200;
/// Most alerts on one asset for one customer (or for every customer).
pub const ALERTS_PER_ASSET_MAX: i64 = 25;

/// A configured alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAlert {
    /// `balalrt_…`
    pub id: String,
    /// The customer watched; `None` for every customer of the account.
    pub customer: Option<String>,
    /// The asset watched.
    pub asset: Asset,
    /// Positive, in the asset's smallest units.
    pub threshold: i64,
    /// Shown in events.
    pub title: String,
    /// Creation time.
    pub created: DateTime<Utc>,
}

impl BalanceAlert {
    /// Whether the alert is triggered at `available` (else armed).
    pub fn triggered_at(&self, available: i64) -> bool {
        available < self.threshold
    }
}

/// The stored data of a `customer.credit_balance_*` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The customer.
    pub customer: String,
    /// The asset.
    pub asset: Asset,
    /// The available balance after the change.
    pub available: i64,
    /// The configured alert that crossed; `None` for the built-in one.
    pub alert: Option<BalanceAlert>,
}

/// The events of a move of the available balance from `before` (as last
/// evaluated; `None` when never evaluated, which fires nothing) to
/// `after`, in the order the balance passed the thresholds.
pub fn crossings(
    before: Option<i64>,
    after: i64,
    alerts: &[BalanceAlert],
) -> Vec<(&'static str, Option<&BalanceAlert>)> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut fired: Vec<(i64, &'static str, Option<&BalanceAlert>)> = Vec::new();
    // The built-in alert is a threshold of one smallest unit.
    if before > 0 && after <= 0 {
        fired.push((1, CREDIT_BALANCE_DEPLETED, None));
    } else if before <= 0 && after > 0 {
        fired.push((1, CREDIT_BALANCE_RECOVERED, None));
    }
    for alert in alerts {
        match (alert.triggered_at(before), alert.triggered_at(after)) {
            (false, true) => fired.push((alert.threshold, CREDIT_BALANCE_DROPPED, Some(alert))),
            (true, false) => fired.push((alert.threshold, CREDIT_BALANCE_RECOVERED, Some(alert))),
            _ => {}
        }
    }
    // Falling passes the highest threshold first; rising the lowest.
    if after < before {
        fired.sort_by_key(|f| std::cmp::Reverse(f.0));
    } else {
        fired.sort_by_key(|f| f.0);
    }
    fired.into_iter().map(|(_, t, a)| (t, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, threshold: i64) -> BalanceAlert {
        BalanceAlert {
            id: id.into(),
            customer: None,
            asset: Asset::from_key("usd", 2).unwrap(),
            threshold,
            title: String::new(),
            created: DateTime::UNIX_EPOCH,
        }
    }

    fn fired(before: Option<i64>, after: i64, alerts: &[BalanceAlert]) -> Vec<String> {
        crossings(before, after, alerts)
            .into_iter()
            .map(|(t, a)| format!("{t}:{}", a.map_or("built-in", |a| a.id.as_str())))
            .collect()
    }

    #[test]
    fn a_first_evaluation_fires_nothing() {
        assert!(fired(None, 0, &[alert("a", 100)]).is_empty());
    }

    #[test]
    fn falling_through_thresholds_fires_each_once_highest_first() {
        let alerts = [alert("low", 100), alert("high", 500)];
        assert_eq!(
            fired(Some(1_000), 0, &alerts),
            [
                "customer.credit_balance_dropped:high",
                "customer.credit_balance_dropped:low",
                "customer.credit_balance_depleted:built-in",
            ]
        );
        // Moving within a band fires nothing.
        assert!(fired(Some(400), 200, &alerts).is_empty());
        assert!(fired(Some(0), 0, &alerts).is_empty());
    }

    #[test]
    fn rising_recovers_lowest_first_and_equal_to_the_threshold_is_armed() {
        let alerts = [alert("low", 100), alert("high", 500)];
        assert_eq!(
            fired(Some(0), 500, &alerts),
            [
                "customer.credit_balance_recovered:built-in",
                "customer.credit_balance_recovered:low",
                "customer.credit_balance_recovered:high",
            ]
        );
        assert!(!alerts[1].triggered_at(500));
        assert!(alerts[1].triggered_at(499));
    }
}
