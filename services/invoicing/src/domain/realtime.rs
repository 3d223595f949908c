//! Real-time balances, access checks and usage thresholds (DESIGN.md §12):
//! the rules, free of I/O. The ops layer gathers the figures (the ledger's
//! credits and holds, the unbilled usage priced from meter-ingest, the
//! credits a preview says that usage would consume) and these functions
//! combine them, with checked arithmetic throughout.

use std::collections::BTreeMap;

use billing_money::{Asset, Decimal};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::invoice::TotalOverflow;

/// Most usage thresholds on one subscription.
pub const USAGE_THRESHOLDS_MAX: usize = 10;
/// A period's usage of a meter passed one of its subscription's thresholds.
pub const USAGE_EXCEEDED_THRESHOLD: &str = "subscription.usage_exceeded_threshold";
/// CheckAccess's hold timeout when none is given.
pub const HOLD_TIMEOUT_DEFAULT_SECONDS: u32 = 300;
/// The longest hold timeout (the ledger's).
pub const HOLD_TIMEOUT_MAX_SECONDS: u32 = 86_400;

/// What CheckAccess does once usage outruns the credits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overage {
    /// Allow; usage past the credits is billed.
    #[default]
    Allow,
    /// Deny once the ongoing balance is 0 or less.
    Block,
    /// Allow until the overage in `asset` reaches `limit`; other assets are
    /// blocked at 0.
    AllowUpTo {
        /// The asset of the limit.
        asset: Asset,
        /// Positive, smallest units.
        limit: i64,
    },
}

/// A usage quantity a subscription wants to be told about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageThreshold {
    /// `mtr_…` of one of the subscription's prices.
    pub meter: String,
    /// Positive, in the meter's units.
    pub quantity: Decimal,
}

/// A subscription's real-time controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controls {
    /// The overage policy.
    #[serde(default)]
    pub overage: Overage,
    /// Usage thresholds, in the order given.
    #[serde(default)]
    pub usage_thresholds: Vec<UsageThreshold>,
}

/// The data of a `subscription.usage_exceeded_threshold` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageThresholdCrossing {
    /// `sub_…`
    pub subscription: String,
    /// `cus_…`
    pub customer: String,
    /// Which of the subscription's thresholds (its index).
    pub threshold_index: usize,
    /// The threshold.
    pub threshold: UsageThreshold,
    /// The period's usage of the meter when the worker saw it.
    pub usage: Decimal,
    /// The period's start.
    pub period_start: DateTime<Utc>,
    /// The period's end.
    pub period_end: DateTime<Utc>,
    /// When the crossing was seen.
    pub created: DateTime<Utc>,
}

/// The ledger's figures for one asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credits {
    /// Usable now.
    pub available: i64,
    /// Bought, not yet paid for.
    pub pending: i64,
    /// Active holds.
    pub held: i64,
    /// What the unbilled lines would take if they were invoiced now.
    pub unbilled_credits: i64,
    /// What the ancestors' shared grants offer (a credit pool).
    pub pooled: i64,
}

/// One unbilled line's amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbilledLine {
    /// The line's asset.
    pub asset: Asset,
    /// Priced from the usage so far, rounded once.
    pub amount: i64,
    /// The credits it would take if invoiced now.
    pub credits: i64,
    /// Its pricing unit's rate in money, if it converts.
    pub conversion: Option<billing_money::Conversion>,
}

/// A customer's balance of one asset now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetBalance {
    /// The asset.
    pub asset: Asset,
    /// Credits usable now.
    pub available: i64,
    /// Credits bought, not yet paid for.
    pub pending: i64,
    /// Unbilled usage, priced.
    pub unbilled_usage: i64,
    /// The credits that usage would consume.
    pub unbilled_credits: i64,
    /// Active holds.
    pub credits_reserved: i64,
    /// What the ancestors' shared grants offer.
    pub pooled_available: i64,
    /// A converting unit's overage in money (each line's rounded once).
    pub overage_converted: Option<(billing_money::Currency, i64)>,
}

impl AssetBalance {
    /// Nothing of `asset`.
    pub fn zero(asset: Asset) -> Self {
        Self {
            asset,
            available: 0,
            pending: 0,
            unbilled_usage: 0,
            unbilled_credits: 0,
            credits_reserved: 0,
            pooled_available: 0,
            overage_converted: None,
        }
    }

    /// `available + pooled_available − unbilled_credits − credits_reserved`.
    pub fn ongoing(&self) -> Result<i64, TotalOverflow> {
        self.available
            .checked_add(self.pooled_available)
            .and_then(|credits| credits.checked_sub(self.unbilled_credits))
            .and_then(|left| left.checked_sub(self.credits_reserved))
            .ok_or(TotalOverflow("ongoing balance"))
    }

    /// `unbilled_usage − unbilled_credits`: what would be billed past the
    /// credits.
    pub fn overage(&self) -> Result<i64, TotalOverflow> {
        self.unbilled_usage
            .checked_sub(self.unbilled_credits)
            .ok_or(TotalOverflow("overage"))
    }
}

/// Combines the ledger's figures and the unbilled lines into one balance
/// per asset (every asset either side names), ordered by asset.
pub fn balances(
    credits: &[(Asset, Credits)],
    lines: &[UnbilledLine],
) -> Result<Vec<AssetBalance>, TotalOverflow> {
    let mut by_asset: BTreeMap<String, AssetBalance> = BTreeMap::new();
    for (asset, figures) in credits {
        let balance = by_asset
            .entry(asset.key())
            .or_insert_with(|| AssetBalance::zero(asset.clone()));
        balance.available = add(balance.available, figures.available)?;
        balance.pending = add(balance.pending, figures.pending)?;
        balance.credits_reserved = add(balance.credits_reserved, figures.held)?;
        balance.unbilled_credits = add(balance.unbilled_credits, figures.unbilled_credits)?;
        balance.pooled_available = add(balance.pooled_available, figures.pooled)?;
    }
    for line in lines {
        let balance = by_asset
            .entry(line.asset.key())
            .or_insert_with(|| AssetBalance::zero(line.asset.clone()));
        balance.unbilled_usage = add(balance.unbilled_usage, line.amount)?;
        // As finalizing now would: what credits leave of the line, in
        // money, rounded once per line.
        if let Some(rate) = line.conversion {
            let uncovered = line
                .amount
                .checked_sub(line.credits)
                .ok_or(TotalOverflow("overage"))?;
            let money = rate
                .convert(uncovered, line.asset.scale())
                .map_err(|_| TotalOverflow("converted overage"))?;
            let (_, sum) = balance.overage_converted.get_or_insert((rate.currency, 0));
            *sum = add(*sum, money)?;
        }
    }
    Ok(by_asset.into_values().collect())
}

fn add(a: i64, b: i64) -> Result<i64, TotalOverflow> {
    a.checked_add(b).ok_or(TotalOverflow("customer balance"))
}

/// Why CheckAccess answered as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessReason {
    /// Allowed.
    Ok,
    /// Blocked: the credits are used up (or cannot cover the reservation).
    Depleted,
    /// The overage reached the policy's limit.
    OverageLimitReached,
    /// No active subscription bills the meter or price.
    NotSubscribed,
}

/// The policy's answer for a use of `balance`'s asset. `reserve` is the
/// reservation asked for and whether the ledger granted its hold (a
/// granted hold always allows: the credits are set aside).
pub fn decide(
    policy: &Overage,
    balance: &AssetBalance,
    reserve: Option<(i64, bool)>,
) -> Result<AccessReason, TotalOverflow> {
    if let Some((_, true)) = reserve {
        return Ok(AccessReason::Ok);
    }
    let ongoing = balance.ongoing()?;
    let overage = balance.overage()?;
    let limit = match policy {
        Overage::Allow => return Ok(AccessReason::Ok),
        Overage::Block => None,
        Overage::AllowUpTo { asset, limit } if *asset == balance.asset => Some(*limit),
        Overage::AllowUpTo { .. } => None,
    };
    let Some(limit) = limit else {
        // Blocking: a use needs credits left (a reservation needed its hold).
        return Ok(if reserve.is_none() && ongoing > 0 {
            AccessReason::Ok
        } else {
            AccessReason::Depleted
        });
    };
    // Up to a limit: the overage after this use must stay within it. The
    // part of a reservation the free credits cannot cover adds to it.
    let added = match reserve {
        Some((amount, _)) => amount
            .checked_sub(ongoing.max(0))
            .ok_or(TotalOverflow("access check"))?,
        None => 0,
    };
    let after = overage
        .checked_add(added.max(0))
        .ok_or(TotalOverflow("access check"))?;
    let within = if reserve.is_some() {
        after <= limit
    } else {
        ongoing > 0 || after < limit
    };
    Ok(if within {
        AccessReason::Ok
    } else {
        AccessReason::OverageLimitReached
    })
}

/// The thresholds (by index) that `usage` (per meter) has passed and that
/// have not fired yet this period.
pub fn thresholds_passed(
    thresholds: &[UsageThreshold],
    usage: &BTreeMap<String, Decimal>,
    fired: &[usize],
) -> Vec<usize> {
    thresholds
        .iter()
        .enumerate()
        .filter(|(i, t)| !fired.contains(i) && usage.get(&t.meter).is_some_and(|u| *u > t.quantity))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Asset {
        Asset::from_key("usd", 2).unwrap()
    }

    fn balance(available: i64, unbilled_usage: i64, unbilled_credits: i64) -> AssetBalance {
        AssetBalance {
            asset: usd(),
            available,
            pending: 0,
            unbilled_usage,
            unbilled_credits,
            credits_reserved: 0,
            pooled_available: 0,
            overage_converted: None,
        }
    }

    #[test]
    fn balances_merge_the_ledger_and_the_lines_per_asset() {
        let credits = [(
            usd(),
            Credits {
                available: 1_000,
                pending: 50,
                held: 100,
                unbilled_credits: 900,
                pooled: 0,
            },
        )];
        let lines = [
            UnbilledLine {
                asset: usd(),
                amount: 700,
                credits: 700,
                conversion: None,
            },
            UnbilledLine {
                asset: usd(),
                amount: 500,
                credits: 200,
                conversion: None,
            },
        ];
        let merged = balances(&credits, &lines).unwrap();
        assert_eq!(merged.len(), 1);
        let b = &merged[0];
        assert_eq!((b.unbilled_usage, b.unbilled_credits), (1_200, 900));
        assert_eq!(b.ongoing(), Ok(0), "1,000 − 900 − 100");
        assert_eq!(b.overage(), Ok(300));
        let overflow = [UnbilledLine {
            asset: usd(),
            amount: i64::MAX,
            credits: 0,
            conversion: None,
        }];
        assert!(balances(&[], &[overflow[0].clone(), overflow[0].clone()]).is_err());
    }

    #[test]
    fn block_denies_at_zero_and_allow_never_does() {
        assert_eq!(
            decide(&Overage::Block, &balance(100, 0, 0), None),
            Ok(AccessReason::Ok)
        );
        assert_eq!(
            decide(&Overage::Block, &balance(100, 100, 100), None),
            Ok(AccessReason::Depleted)
        );
        assert_eq!(
            decide(&Overage::Allow, &balance(0, 900, 0), None),
            Ok(AccessReason::Ok)
        );
        // A reservation the ledger refused is a denial under BLOCK, not
        // under ALLOW; one it granted is always allowed.
        assert_eq!(
            decide(&Overage::Block, &balance(100, 0, 0), Some((200, false))),
            Ok(AccessReason::Depleted)
        );
        assert_eq!(
            decide(&Overage::Allow, &balance(0, 0, 0), Some((200, false))),
            Ok(AccessReason::Ok)
        );
        assert_eq!(
            decide(&Overage::Block, &balance(0, 0, 0), Some((1, true))),
            Ok(AccessReason::Ok)
        );
    }

    #[test]
    fn allow_up_to_denies_past_the_limit() {
        let policy = Overage::AllowUpTo {
            asset: usd(),
            limit: 500,
        };
        // No credits left, 499 of overage: allowed; 500: denied.
        assert_eq!(
            decide(&policy, &balance(0, 499, 0), None),
            Ok(AccessReason::Ok)
        );
        assert_eq!(
            decide(&policy, &balance(0, 500, 0), None),
            Ok(AccessReason::OverageLimitReached)
        );
        // A reservation: 100 free credits and 300 of overage leave room
        // for 300 more, not 301.
        let b = balance(1_000, 1_200, 900);
        assert_eq!(b.overage(), Ok(300));
        assert_eq!(
            decide(&policy, &b, Some((300, false))),
            Ok(AccessReason::Ok)
        );
        assert_eq!(
            decide(&policy, &balance(100, 300, 0), Some((301, false))),
            Ok(AccessReason::OverageLimitReached)
        );
        // Another asset is blocked at 0.
        let eur = Overage::AllowUpTo {
            asset: Asset::from_key("eur", 2).unwrap(),
            limit: 500,
        };
        assert_eq!(
            decide(&eur, &balance(0, 10, 0), None),
            Ok(AccessReason::Depleted)
        );
    }

    #[test]
    fn a_threshold_passes_once_usage_is_above_it() {
        let thresholds = [
            UsageThreshold {
                meter: "mtr_a".into(),
                quantity: Decimal::from(100),
            },
            UsageThreshold {
                meter: "mtr_a".into(),
                quantity: Decimal::from(1_000),
            },
        ];
        let usage = BTreeMap::from([("mtr_a".to_owned(), Decimal::from(100))]);
        assert!(thresholds_passed(&thresholds, &usage, &[]).is_empty());
        let usage = BTreeMap::from([("mtr_a".to_owned(), Decimal::from(1_001))]);
        assert_eq!(thresholds_passed(&thresholds, &usage, &[]), [0, 1]);
        assert_eq!(thresholds_passed(&thresholds, &usage, &[0]), [1]);
    }
}
