//! Money and custom pricing units as exact integers.
//!
//! Layout:
//! - [`Currency`]: an ISO 4217 currency with its minor-unit exponent.
//! - [`Asset`]: what an amount is counted in, a currency or a custom pricing unit,
//!   with its fixed scale (number of decimal places of its smallest unit).
//! - [`parse_value`] / [`format_value`]: decimal strings to and from integer
//!   smallest units, never rounding on the way in.
//! - [`round_to_scale`]: the single rounding rule of the product (half away from
//!   zero), used once per invoice line.
//! - [`Conversion`]: a pricing unit's rate in money, converting uncovered
//!   units once per line.
//! - [`FieldViolation`]: a refused input field and why (the domain layers'
//!   shared vocabulary for bad input).
//!
//! Every amount stored or summed is an `i64` in the asset's smallest unit;
//! arithmetic is checked and overflow is an error, never a wrap.

pub mod conversion;
pub mod field;

use std::fmt;
use std::str::FromStr;

pub use conversion::Conversion;
pub use field::FieldViolation;

pub use rust_decimal::Decimal;
use rust_decimal::RoundingStrategy;
use serde::{Deserialize, Serialize};

/// The largest scale a custom pricing unit may have.
pub const PRICING_UNIT_SCALE_MAX: u32 = 9;

/// Why a currency, value or amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a lowercase three-letter ISO 4217 code with a minor unit.
    #[error("unknown currency {0:?}: expected a lowercase ISO 4217 code such as \"usd\"")]
    UnknownCurrency(String),
    /// The string is not a decimal number.
    #[error("{0:?} is not a decimal number")]
    NotADecimal(String),
    /// More fractional digits than the asset's smallest unit allows.
    #[error("{value:?} has more than {scale} decimal places")]
    TooPrecise {
        /// The value as given.
        value: String,
        /// The asset's scale.
        scale: u32,
    },
    /// The value does not fit a 64-bit count of smallest units.
    #[error("amount out of range")]
    Overflow,
    /// More digits than a decimal holds exactly (28 significant digits, at
    /// most 28 after the point) or a string over [`DECIMAL_CHARS_MAX`]:
    /// refused, never rounded.
    #[error("{0:?} has more digits than can be kept exactly (28 at most)")]
    TooManyDigits(String),
    /// A pricing-unit scale above [`PRICING_UNIT_SCALE_MAX`].
    #[error("scale must be between 0 and {PRICING_UNIT_SCALE_MAX}")]
    ScaleOutOfRange,
}

/// An ISO 4217 currency with a minor unit, stored by its lowercase code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Currency {
    code: [u8; 3],
    exponent: u32,
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.code().to_owned()
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, MoneyError> {
        Currency::parse(&code)
    }
}

impl Currency {
    /// Parses a lowercase ISO 4217 code ("usd", "jpy", "kwd").
    ///
    /// Upper-case codes are refused rather than folded, so that stored codes
    /// and responses are always the one spelling Stripe uses.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.to_owned());
        let bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| unknown())?;
        if !bytes.iter().all(u8::is_ascii_lowercase) {
            return Err(unknown());
        }
        let iso =
            iso_currency::Currency::from_code(&code.to_ascii_uppercase()).ok_or_else(unknown)?;
        // Codes without a minor unit (gold, testing codes) cannot hold money amounts.
        let exponent = iso.exponent().ok_or_else(unknown)?;
        Ok(Self {
            code: bytes,
            exponent: u32::from(exponent),
        })
    }

    /// The lowercase code.
    pub fn code(&self) -> &str {
        // The bytes were checked to be ASCII lowercase in `parse`.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Decimal places of the minor unit (usd 2, jpy 0, kwd 3).
    pub fn exponent(&self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What an amount is counted in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "AssetRepr", try_from = "AssetRepr")]
pub enum Asset {
    /// Money in a currency's minor units.
    Currency(Currency),
    /// An account-defined pricing unit, counted in 10^-scale.
    PricingUnit {
        /// The unit's id (`pu_…`).
        id: String,
        /// Decimal places, 0 to 9.
        scale: u32,
    },
}

/// Storage form of an asset: its key plus scale.
#[derive(Serialize, Deserialize)]
struct AssetRepr {
    key: String,
    scale: u32,
}

impl From<Asset> for AssetRepr {
    fn from(asset: Asset) -> Self {
        Self {
            key: asset.key(),
            scale: asset.scale(),
        }
    }
}

impl TryFrom<AssetRepr> for Asset {
    type Error = MoneyError;
    fn try_from(repr: AssetRepr) -> Result<Self, MoneyError> {
        Asset::from_key(&repr.key, repr.scale)
    }
}

impl Asset {
    /// A pricing unit asset; the scale must be 0 to 9.
    pub fn pricing_unit(id: impl Into<String>, scale: u32) -> Result<Self, MoneyError> {
        if scale > PRICING_UNIT_SCALE_MAX {
            return Err(MoneyError::ScaleOutOfRange);
        }
        Ok(Self::PricingUnit {
            id: id.into(),
            scale,
        })
    }

    /// The storage key: the currency code, or the pricing unit's id.
    ///
    /// Currency codes are three lowercase letters and pricing unit ids start
    /// with `pu_`, so a key names exactly one asset.
    pub fn key(&self) -> String {
        match self {
            Self::Currency(c) => c.code().to_owned(),
            Self::PricingUnit { id, .. } => id.clone(),
        }
    }

    /// Rebuilds an asset from its storage key and scale.
    pub fn from_key(key: &str, scale: u32) -> Result<Self, MoneyError> {
        if key.starts_with("pu_") {
            Self::pricing_unit(key, scale)
        } else {
            Currency::parse(key).map(Self::Currency)
        }
    }

    /// Decimal places of the asset's smallest unit.
    pub fn scale(&self) -> u32 {
        match self {
            Self::Currency(c) => c.exponent(),
            Self::PricingUnit { scale, .. } => *scale,
        }
    }
}

/// An exact amount: an asset and a signed count of its smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// What it is counted in.
    pub asset: Asset,
    /// Count of the asset's smallest unit.
    pub value: i64,
}

impl Money {
    /// An amount of `value` smallest units of `asset`.
    pub fn new(asset: Asset, value: i64) -> Self {
        Self { asset, value }
    }

    /// Zero of the asset.
    pub fn zero(asset: Asset) -> Self {
        Self { asset, value: 0 }
    }

    /// The value as a decimal string with exactly the asset's scale.
    pub fn decimal_string(&self) -> String {
        format_value(self.value, self.asset.scale())
    }
}

/// Parses a decimal string into smallest units of an asset with `scale` places.
///
/// Trailing zeros are fine ("1.50" at scale 1); any further significant digit
/// is [`MoneyError::TooPrecise`], never rounded away.
pub fn parse_value(value: &str, scale: u32) -> Result<i64, MoneyError> {
    let decimal = parse_decimal(value)?;
    decimal_to_units(decimal.normalize(), scale).map_err(|error| match error {
        MoneyError::TooPrecise { scale, .. } => MoneyError::TooPrecise {
            value: value.to_owned(),
            scale,
        },
        other => other,
    })
}

/// Parses a plain decimal string (`-?digits(.digits)?`) exactly.
///
/// Used for usage values, which may have any number of decimal places that
/// fit rust_decimal's 28 significant digits.
pub fn parse_decimal(value: &str) -> Result<Decimal, MoneyError> {
    if value.len() > DECIMAL_CHARS_MAX {
        return Err(MoneyError::TooManyDigits(value.chars().take(32).collect()));
    }
    if !is_plain_decimal(value) {
        return Err(MoneyError::NotADecimal(value.to_owned()));
    }
    // rust_decimal rounds what it cannot hold; we refuse it instead.
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > DECIMAL_DIGITS_MAX || whole.len() + fraction.len() > DECIMAL_DIGITS_MAX {
        return Err(MoneyError::TooManyDigits(value.to_owned()));
    }
    Decimal::from_str(value).map_err(|_| MoneyError::NotADecimal(value.to_owned()))
}

/// Longest decimal string accepted anywhere.
pub const DECIMAL_CHARS_MAX: usize = 64;

/// Significant digits (and digits after the point) a `Decimal` keeps exactly.
const DECIMAL_DIGITS_MAX: usize = 28;

/// The number of decimal places `value` really has (trailing zeros do not
/// count): what a caller compares with a field's limit, such as 12 for a
/// price's `unit_amount_decimal`.
pub fn decimal_places(value: Decimal) -> u32 {
    value.normalize().scale()
}

/// `-?digits(.digits)?`: no exponent, sign or white space that a client could
/// mean differently from how we read it.
fn is_plain_decimal(value: &str) -> bool {
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

/// Converts an exact decimal to smallest units, refusing extra precision.
pub fn decimal_to_units(decimal: Decimal, scale: u32) -> Result<i64, MoneyError> {
    if scale > 28 {
        return Err(MoneyError::ScaleOutOfRange);
    }
    if decimal.normalize().scale() > scale {
        return Err(MoneyError::TooPrecise {
            value: decimal.to_string(),
            scale,
        });
    }
    let factor = Decimal::from_i128_with_scale(10_i128.pow(scale), 0);
    let units = decimal.checked_mul(factor).ok_or(MoneyError::Overflow)?;
    i64::try_from(units.trunc().mantissa() / 10_i128.pow(units.trunc().scale()))
        .map_err(|_| MoneyError::Overflow)
}

/// Formats smallest units as a decimal string with exactly `scale` places.
pub fn format_value(value: i64, scale: u32) -> String {
    Decimal::from_i128_with_scale(i128::from(value), scale).to_string()
}

/// Rounds an exact decimal amount to the asset's smallest unit, half away from
/// zero, and returns the count of smallest units.
///
/// This is the product's only rounding rule. It is applied once per invoice
/// line (price × quantity), never per event.
pub fn round_to_scale(decimal: Decimal, scale: u32) -> Result<i64, MoneyError> {
    if scale > 28 {
        return Err(MoneyError::ScaleOutOfRange);
    }
    let rounded = decimal.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    decimal_to_units(rounded, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_carry_their_minor_unit() {
        let check = |code: &str, exponent: u32| {
            assert_eq!(
                Currency::parse(code).map(|c| c.exponent()),
                Ok(exponent),
                "{code}"
            );
        };
        check("usd", 2);
        check("eur", 2);
        check("jpy", 0);
        check("krw", 0);
        check("kwd", 3);
        check("bhd", 3);
    }

    #[test]
    fn bad_currencies_are_refused() {
        for code in ["USD", "us", "usdd", "", "xxx", "xau", "zzz", "u$d"] {
            assert!(Currency::parse(code).is_err(), "{code:?} should be refused");
        }
    }

    #[test]
    fn parse_value_is_exact() {
        let check = |value: &str, scale: u32, expected: Result<i64, ()>| {
            assert_eq!(
                parse_value(value, scale).map_err(|_| ()),
                expected,
                "{value} @ {scale}"
            );
        };
        check("12.5", 2, Ok(1250));
        check("12.50", 1, Ok(125));
        check("12.500000", 0, Err(()));
        check("12", 0, Ok(12));
        // Digits a Decimal cannot hold are refused, not rounded away.
        check("1.0000000000000000000000000000001", 2, Err(()));
        check("0.0000000000000000000000000000001", 2, Err(()));
        check(&format!("1{}", "0".repeat(70)), 0, Err(()));
        check("0.001", 2, Err(()));
        check("-3.25", 2, Ok(-325));
        check("1e3", 2, Err(()));
        check("abc", 2, Err(()));
        check(" 1", 2, Err(()));
        check("", 2, Err(()));
        check("92233720368547758.08", 2, Err(()));
        check("92233720368547758.07", 2, Ok(i64::MAX));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let check = |value: &str, scale: u32, expected: i64| {
            let decimal = Decimal::from_str(value).unwrap();
            assert_eq!(
                round_to_scale(decimal, scale),
                Ok(expected),
                "{value} @ {scale}"
            );
        };
        check("0.005", 2, 1);
        check("0.004999", 2, 0);
        check("-0.005", 2, -1);
        check("2.5", 0, 3);
        check("-2.5", 0, -3);
        check("1.2345", 3, 1235);
    }

    #[test]
    fn format_keeps_the_scale() {
        assert_eq!(format_value(1250, 2), "12.50");
        assert_eq!(format_value(-5, 3), "-0.005");
        assert_eq!(format_value(7, 0), "7");
    }

    #[test]
    fn asset_keys_round_trip() {
        let usd = Asset::Currency(Currency::parse("usd").unwrap());
        assert_eq!(Asset::from_key(&usd.key(), 2), Ok(usd));
        let unit = Asset::pricing_unit("pu_01ABC", 4).unwrap();
        assert_eq!(Asset::from_key(&unit.key(), 4), Ok(unit));
        assert!(Asset::pricing_unit("pu_x", 10).is_err());
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_identity(value in proptest::num::i64::ANY, scale in 0u32..=9) {
            proptest::prop_assert_eq!(parse_value(&format_value(value, scale), scale), Ok(value));
        }
    }
}
