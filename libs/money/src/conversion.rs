//! A pricing unit's rate in money (DESIGN.md §13): what credits do not
//! cover on a line priced in the unit is due in the currency, converted
//! once per line and rounded half away from zero.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Currency, FieldViolation, MoneyError, decimal_places, parse_decimal};

/// Most decimal places of a rate (as a price's `unit_amount_decimal`).
pub const RATE_PLACES_MAX: u32 = 12;

/// One whole unit is worth `unit_amount` smallest units of `currency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    /// The currency owed.
    pub currency: Currency,
    /// Smallest units of the currency per whole unit, positive.
    pub unit_amount: Decimal,
}

impl Conversion {
    /// Checks a rate given as strings; violations name `field.currency`
    /// and `field.unit_amount_decimal`.
    pub fn parse(
        field: &str,
        currency: &str,
        unit_amount: &str,
        out: &mut Vec<FieldViolation>,
    ) -> Option<Self> {
        let currency = match Currency::parse(currency) {
            Ok(currency) => Some(currency),
            Err(error) => {
                out.push(FieldViolation::new(
                    format!("{field}.currency"),
                    error.to_string(),
                ));
                None
            }
        };
        let amount_field = format!("{field}.unit_amount_decimal");
        let unit_amount = match parse_decimal(unit_amount) {
            Ok(value) if value <= Decimal::ZERO => {
                out.push(FieldViolation::new(amount_field, "must be positive"));
                None
            }
            Ok(value) if decimal_places(value) > RATE_PLACES_MAX => {
                out.push(FieldViolation::new(
                    amount_field,
                    format!("has more than {RATE_PLACES_MAX} decimal places (it is not rounded)"),
                ));
                None
            }
            Ok(value) => Some(value.normalize()),
            Err(error) => {
                out.push(FieldViolation::new(amount_field, error.to_string()));
                None
            }
        };
        Some(Self {
            currency: currency?,
            unit_amount: unit_amount?,
        })
    }

    /// `units` smallest units of a unit with `scale` decimal places, in the
    /// currency's smallest units: exact product, rounded once, half away
    /// from zero. A product past i64 is an error.
    pub fn convert(&self, units: i64, scale: u32) -> Result<i64, MoneyError> {
        if scale > crate::PRICING_UNIT_SCALE_MAX {
            return Err(MoneyError::ScaleOutOfRange);
        }
        // Integers all the way: mantissa × units at scale (rate's + unit's).
        let rate = self.unit_amount.normalize();
        let product = rate
            .mantissa()
            .checked_mul(i128::from(units))
            .ok_or(MoneyError::Overflow)?;
        let divisor = 10_i128
            .checked_pow(rate.scale() + scale)
            .ok_or(MoneyError::Overflow)?;
        let (quotient, remainder) = (product / divisor, product % divisor);
        // Half away from zero: a remainder of at least half moves outwards.
        let rounded = if remainder.unsigned_abs() * 2 >= divisor.unsigned_abs() {
            quotient + product.signum()
        } else {
            quotient
        };
        i64::try_from(rounded).map_err(|_| MoneyError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(currency: &str, amount: &str) -> Conversion {
        let mut out = Vec::new();
        let parsed = Conversion::parse("conversion", currency, amount, &mut out);
        assert!(out.is_empty(), "{out:?}");
        parsed.unwrap()
    }

    #[test]
    fn converts_once_rounding_half_away_from_zero() {
        // 250.5 credits at 1.2¢ = 300.6¢ → 301¢ (issue 16's example).
        assert_eq!(rate("usd", "1.2").convert(2_505, 1), Ok(301));
        assert_eq!(rate("usd", "1").convert(25, 1), Ok(3)); // 2.5 → 3
        assert_eq!(rate("usd", "1").convert(24, 1), Ok(2));
        assert_eq!(rate("usd", "1").convert(-25, 1), Ok(-3));
        assert_eq!(rate("jpy", "0.000000000001").convert(1, 0), Ok(0));
        assert_eq!(
            rate("usd", "999999999").convert(i64::MAX, 0),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn bad_rates_name_their_fields() {
        let mut out = Vec::new();
        assert!(Conversion::parse("conversion", "USD", "0", &mut out).is_none());
        let fields: Vec<&str> = out.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["conversion.currency", "conversion.unit_amount_decimal"]
        );
        out.clear();
        assert!(Conversion::parse("c", "usd", "0.0000000000001", &mut out).is_none());
        assert!(out[0].description.contains("12 decimal places"));
    }
}
