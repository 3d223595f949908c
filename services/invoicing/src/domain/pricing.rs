//! Pricing metered usage (Stripe's price model, made exact).
//!
//! Unit and flat amounts are decimals in the asset's smallest unit (cents
//! for usd, like Stripe's `unit_amount_decimal`; 10^-scale for a pricing
//! unit). A line's amount is computed exactly and rounded once, half away
//! from zero, by [`billing_money::round_to_scale`]: never per event, never
//! per tier.

use billing_money::Decimal;

/// How tiers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TiersMode {
    /// Each unit is priced by the tier it falls in.
    Graduated,
    /// Every unit is priced by the tier the total quantity falls in.
    Volume,
}

/// One tier: units up to and including `up_to` (None: no upper bound).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tier {
    /// Inclusive upper bound of the tier; None for the last tier.
    pub up_to: Option<Decimal>,
    /// Per-unit amount, smallest units, may be fractional.
    pub unit_amount: Decimal,
    /// Flat amount for reaching the tier, smallest units.
    pub flat_amount: Decimal,
}

/// How a price turns a quantity into an amount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PriceModel {
    /// quantity × unit amount.
    PerUnit {
        /// Per-unit amount, smallest units, may be fractional.
        unit_amount: Decimal,
    },
    /// Tiers.
    Tiered {
        /// Graduated or volume.
        mode: TiersMode,
        /// Ascending `up_to`, the last one unbounded.
        tiers: Vec<Tier>,
    },
}

/// Rounding of a transformed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QuantityRounding {
    /// Towards +∞ (a started package is billed).
    Up,
    /// Towards 0.
    Down,
}

/// Bill usage in packages: quantity = round(usage / divide_by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransformQuantity {
    /// Package size, at least 1.
    pub divide_by: u64,
    /// How partial packages count.
    pub round: QuantityRounding,
}

/// A metered price, as far as the amount is concerned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pricing {
    /// The model.
    pub model: PriceModel,
    /// Optional packaging of the usage.
    pub transform: Option<TransformQuantity>,
}

/// Why a price or an amount is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// Tiers must be non-empty, strictly ascending, with only the last unbounded.
    #[error("tiers must ascend strictly by up_to and end with one unbounded tier")]
    BadTiers,
    /// Amounts and quantities must not be negative.
    #[error("amounts and quantities must not be negative")]
    Negative,
    /// `divide_by` must be at least 1.
    #[error("transform_quantity.divide_by must be at least 1")]
    ZeroDivisor,
    /// The amount does not fit.
    #[error("the line amount is out of range")]
    Overflow,
}

/// A priced line: the billed quantity, the exact amount, and its single rounding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PricedLine {
    /// Quantity after `transform_quantity`.
    pub quantity: Decimal,
    /// Exact amount before rounding, smallest units.
    pub exact_amount: Decimal,
    /// The line amount, rounded once, smallest units.
    pub amount: i64,
}

impl Pricing {
    /// Checks the price's shape (at price creation).
    pub fn validate(&self) -> Result<(), PricingError> {
        if self.transform.is_some_and(|t| t.divide_by == 0) {
            return Err(PricingError::ZeroDivisor);
        }
        match &self.model {
            PriceModel::PerUnit { unit_amount } if unit_amount.is_sign_negative() => {
                Err(PricingError::Negative)
            }
            PriceModel::PerUnit { .. } => Ok(()),
            PriceModel::Tiered { tiers, .. } => validate_tiers(tiers),
        }
    }

    /// The per-unit amount, for per-unit prices.
    pub fn unit_amount(&self) -> Option<Decimal> {
        match &self.model {
            PriceModel::PerUnit { unit_amount } => Some(*unit_amount),
            PriceModel::Tiered { .. } => None,
        }
    }

    /// Prices a period's usage into one line.
    pub fn price(&self, usage: Decimal) -> Result<PricedLine, PricingError> {
        self.validate()?;
        if usage.is_sign_negative() && !usage.is_zero() {
            return Err(PricingError::Negative);
        }
        let quantity = self.quantity(usage)?;
        let exact_amount = match &self.model {
            PriceModel::PerUnit { unit_amount } => quantity
                .checked_mul(*unit_amount)
                .ok_or(PricingError::Overflow)?,
            PriceModel::Tiered {
                mode: TiersMode::Graduated,
                tiers,
            } => graduated(tiers, quantity)?,
            PriceModel::Tiered {
                mode: TiersMode::Volume,
                tiers,
            } => volume(tiers, quantity)?,
        };
        // Amounts are in smallest units: the one rounding is to whole units.
        let amount =
            billing_money::round_to_scale(exact_amount, 0).map_err(|_| PricingError::Overflow)?;
        Ok(PricedLine {
            quantity,
            exact_amount,
            amount,
        })
    }

    fn quantity(&self, usage: Decimal) -> Result<Decimal, PricingError> {
        let Some(transform) = self.transform else {
            return Ok(usage);
        };
        let divided = usage
            .checked_div(Decimal::from(transform.divide_by))
            .ok_or(PricingError::Overflow)?;
        Ok(match transform.round {
            QuantityRounding::Up => divided.ceil(),
            QuantityRounding::Down => divided.floor(),
        })
    }
}

fn validate_tiers(tiers: &[Tier]) -> Result<(), PricingError> {
    let Some((last, bounded)) = tiers.split_last() else {
        return Err(PricingError::BadTiers);
    };
    if last.up_to.is_some() {
        return Err(PricingError::BadTiers);
    }
    let mut previous = Decimal::ZERO;
    for tier in bounded {
        let up_to = tier.up_to.ok_or(PricingError::BadTiers)?;
        if up_to <= previous {
            return Err(PricingError::BadTiers);
        }
        previous = up_to;
    }
    if tiers
        .iter()
        .any(|t| t.unit_amount.is_sign_negative() || t.flat_amount.is_sign_negative())
    {
        return Err(PricingError::Negative);
    }
    Ok(())
}

/// Each tier prices the units that fall in it; its flat amount applies once
/// any unit reaches it.
fn graduated(tiers: &[Tier], quantity: Decimal) -> Result<Decimal, PricingError> {
    let mut total = Decimal::ZERO;
    let mut floor = Decimal::ZERO;
    for tier in tiers {
        if quantity <= floor {
            break;
        }
        let ceiling = tier.up_to.map_or(quantity, |up_to| up_to.min(quantity));
        let units = ceiling - floor;
        let tier_amount = units
            .checked_mul(tier.unit_amount)
            .and_then(|a| a.checked_add(tier.flat_amount))
            .ok_or(PricingError::Overflow)?;
        total = total
            .checked_add(tier_amount)
            .ok_or(PricingError::Overflow)?;
        floor = ceiling;
    }
    Ok(total)
}

/// The tier holding the whole quantity prices every unit. Zero usage bills
/// nothing: a flat amount is for usage that reached the tier.
fn volume(tiers: &[Tier], quantity: Decimal) -> Result<Decimal, PricingError> {
    if quantity.is_zero() {
        return Ok(Decimal::ZERO);
    }
    let tier = tiers
        .iter()
        .find(|t| t.up_to.is_none_or(|up_to| quantity <= up_to))
        .ok_or(PricingError::BadTiers)?;
    quantity
        .checked_mul(tier.unit_amount)
        .and_then(|a| a.checked_add(tier.flat_amount))
        .ok_or(PricingError::Overflow)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn tier(up_to: Option<&str>, unit: &str, flat: &str) -> Tier {
        Tier {
            up_to: up_to.map(d),
            unit_amount: d(unit),
            flat_amount: d(flat),
        }
    }

    fn per_unit(unit: &str) -> Pricing {
        Pricing {
            model: PriceModel::PerUnit {
                unit_amount: d(unit),
            },
            transform: None,
        }
    }

    fn tiered(mode: TiersMode) -> Pricing {
        // 0–100 at 10¢ + $1 flat, 101–1,000 at 5¢, beyond at 1.5¢.
        Pricing {
            model: PriceModel::Tiered {
                mode,
                tiers: vec![
                    tier(Some("100"), "10", "100"),
                    tier(Some("1000"), "5", "0"),
                    tier(None, "1.5", "0"),
                ],
            },
            transform: None,
        }
    }

    /// One row per case: price, usage, expected (quantity, amount).
    fn check(name: &str, pricing: &Pricing, usage: &str, quantity: &str, amount: i64) {
        let line = pricing
            .price(d(usage))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (line.quantity, line.amount),
            (d(quantity), amount),
            "{name}"
        );
    }

    #[test]
    fn per_unit_decimals_round_once_per_line() {
        check("whole cents", &per_unit("25"), "3", "3", 75);
        check(
            "fractional unit price",
            &per_unit("0.0125"),
            "1000",
            "1000",
            13,
        );
        // 0.005 of a cent is below half a cent: it rounds to 0.
        check(
            "tiny amount rounds to zero",
            &per_unit("0.005"),
            "1",
            "1",
            0,
        );
        check("half rounds away from zero", &per_unit("0.5"), "1", "1", 1);
        check("fractional usage", &per_unit("10"), "2.25", "2.25", 23);
        check("zero usage", &per_unit("10"), "0", "0", 0);
        // Per event rounding would give 1000 × round(0.004) = 0; once per line gives 4.
        check(
            "no per-event rounding",
            &per_unit("0.004"),
            "1000",
            "1000",
            4,
        );
    }

    #[test]
    fn graduated_tiers() {
        let pricing = tiered(TiersMode::Graduated);
        check("inside the first tier", &pricing, "50", "50", 50 * 10 + 100);
        check(
            "at the first boundary",
            &pricing,
            "100",
            "100",
            100 * 10 + 100,
        );
        check(
            "into the second tier",
            &pricing,
            "101",
            "101",
            1000 + 100 + 5,
        );
        check(
            "into the last tier",
            &pricing,
            "1200",
            "1200",
            1000 + 100 + 900 * 5 + 300,
        ); // 200 × 1.5
        check(
            "fractional into last",
            &pricing,
            "1001",
            "1001",
            1000 + 100 + 4500 + 2,
        ); // 1.5 rounds to 2
        check("zero usage", &pricing, "0", "0", 0);
    }

    #[test]
    fn volume_tiers() {
        let pricing = tiered(TiersMode::Volume);
        check("first tier", &pricing, "100", "100", 100 * 10 + 100);
        check(
            "second tier prices every unit",
            &pricing,
            "101",
            "101",
            101 * 5,
        );
        check(
            "last tier prices every unit",
            &pricing,
            "1001",
            "1001",
            1502,
        ); // 1501.5 → 1502
        check("zero usage", &pricing, "0", "0", 0);
    }

    #[test]
    fn transform_quantity_packages_usage() {
        let mut up = per_unit("500");
        up.transform = Some(TransformQuantity {
            divide_by: 1000,
            round: QuantityRounding::Up,
        });
        check("partial package rounds up", &up, "1001", "2", 1000);
        check("exact packages", &up, "3000", "3", 1500);
        check("zero usage", &up, "0", "0", 0);
        let mut down = up.clone();
        down.transform = Some(TransformQuantity {
            divide_by: 1000,
            round: QuantityRounding::Down,
        });
        check("partial package rounds down", &down, "1999", "1", 500);
    }

    #[test]
    fn bad_prices_are_refused() {
        let mut zero = per_unit("1");
        zero.transform = Some(TransformQuantity {
            divide_by: 0,
            round: QuantityRounding::Up,
        });
        assert_eq!(zero.validate(), Err(PricingError::ZeroDivisor));
        assert_eq!(per_unit("-1").validate(), Err(PricingError::Negative));
        let bad = |tiers: Vec<Tier>| Pricing {
            model: PriceModel::Tiered {
                mode: TiersMode::Graduated,
                tiers,
            },
            transform: None,
        };
        assert_eq!(bad(vec![]).validate(), Err(PricingError::BadTiers));
        assert_eq!(
            bad(vec![tier(Some("10"), "1", "0")]).validate(),
            Err(PricingError::BadTiers)
        );
        assert_eq!(
            bad(vec![
                tier(Some("10"), "1", "0"),
                tier(Some("5"), "1", "0"),
                tier(None, "1", "0")
            ])
            .validate(),
            Err(PricingError::BadTiers)
        );
        assert_eq!(per_unit("1").price(d("-1")), Err(PricingError::Negative));
    }
}
