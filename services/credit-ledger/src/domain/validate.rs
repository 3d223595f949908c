//! Field checks shared by the request conversions.
//!
//! Each returns the violations it found (with the field path), so a request
//! with several bad fields reports all of them at once.

use billing_money::FieldViolation;
pub use billing_money::field::check_metadata;
use billing_money::{Asset, Currency, MoneyError};

/// Longest grant or pricing unit name.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest reference id (customer, invoice, line item, price) the ledger accepts.
pub const REFERENCE_CHARS_MAX: usize = 100;

/// A name of at most 100 characters (may be empty when optional).
pub fn check_name(name: &str, field: &str, required: bool, out: &mut Vec<FieldViolation>) {
    if required && name.trim().is_empty() {
        out.push(FieldViolation::new(field, "is required"));
    } else if name.chars().count() > NAME_CHARS_MAX {
        out.push(FieldViolation::new(
            field,
            format!("must be at most {NAME_CHARS_MAX} characters"),
        ));
    }
}

/// An id of another service's object (customer, invoice, price, line item):
/// required, at most 100 characters, no white space or control characters.
pub fn check_reference(value: &str, field: &str, out: &mut Vec<FieldViolation>) {
    if value.is_empty() {
        out.push(FieldViolation::new(field, "is required"));
    } else if value.chars().count() > REFERENCE_CHARS_MAX
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        out.push(FieldViolation::new(
            field,
            format!("must be at most {REFERENCE_CHARS_MAX} characters without spaces"),
        ));
    }
}

/// A customer id (`cus_…`, as invoicing makes them): a reference that is
/// not an external id such as `acme`.
pub fn check_customer_id(value: &str, field: &str, out: &mut Vec<FieldViolation>) {
    let before = out.len();
    check_reference(value, field, out);
    if out.len() == before && !value.starts_with("cus_") {
        out.push(FieldViolation::new(
            field,
            "must be a customer id (cus_…) from invoicing's CreateCustomer; an external id \
             such as \"acme\" is not accepted here",
        ));
    }
}

/// An amount as the client sent it, before its pricing unit (if any) is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountInput {
    /// Money: already exact.
    Monetary {
        /// The currency.
        currency: Currency,
        /// Minor units.
        value: i64,
    },
    /// A pricing unit amount; its value is parsed once the unit's scale is known.
    PricingUnit {
        /// `pu_…`
        id: String,
        /// Decimal string.
        value: String,
    },
}

impl AmountInput {
    /// The pricing unit id, if any.
    pub fn pricing_unit(&self) -> Option<&str> {
        match self {
            Self::Monetary { .. } => None,
            Self::PricingUnit { id, .. } => Some(id),
        }
    }

    /// Resolves to an asset and a positive value. `unit_scale` is the scale of
    /// the pricing unit (None when the unit does not exist in the account).
    pub fn resolve(
        &self,
        field: &str,
        unit_scale: Option<u32>,
    ) -> Result<(Asset, i64), FieldViolation> {
        match self {
            Self::Monetary { currency, value } => {
                if *value <= 0 {
                    return Err(FieldViolation::new(
                        format!("{field}.monetary.value"),
                        "must be positive",
                    ));
                }
                Ok((Asset::Currency(*currency), *value))
            }
            Self::PricingUnit { id, value } => {
                let scale = unit_scale.ok_or_else(|| {
                    FieldViolation::new(
                        format!("{field}.custom_pricing_unit.id"),
                        "unknown pricing unit",
                    )
                })?;
                let value_field = format!("{field}.custom_pricing_unit.value");
                let units =
                    billing_money::parse_value(value, scale).map_err(|error| match error {
                        MoneyError::TooPrecise { scale, .. } => FieldViolation::new(
                            &value_field,
                            format!("has more than {scale} decimal places"),
                        ),
                        MoneyError::Overflow => {
                            FieldViolation::new(&value_field, "is out of range")
                        }
                        _ => FieldViolation::new(
                            &value_field,
                            "must be a decimal number such as \"12.5\"",
                        ),
                    })?;
                if units <= 0 {
                    return Err(FieldViolation::new(value_field, "must be positive"));
                }
                let asset = Asset::pricing_unit(id.clone(), scale).map_err(|_| {
                    FieldViolation::new(format!("{field}.custom_pricing_unit.id"), "bad scale")
                })?;
                Ok((asset, units))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn metadata_limits() {
        let check = |metadata: BTreeMap<String, String>, ok: bool| {
            let mut out = Vec::new();
            check_metadata(&metadata, "metadata", &mut out);
            assert_eq!(out.is_empty(), ok, "{out:?}");
        };
        check(BTreeMap::from([("k".into(), "v".into())]), true);
        check(BTreeMap::from([("k".repeat(41), "v".into())]), false);
        check(BTreeMap::from([("k".into(), "v".repeat(501))]), false);
        check(BTreeMap::from([(String::new(), "v".into())]), false);
        check(
            (0..51).map(|i| (format!("k{i}"), "v".into())).collect(),
            false,
        );
    }

    #[test]
    fn pricing_unit_amounts_resolve_exactly() {
        let input = |value: &str| AmountInput::PricingUnit {
            id: "pu_1".into(),
            value: value.into(),
        };
        assert_eq!(
            input("1.5").resolve("amount", Some(2)).map(|r| r.1),
            Ok(150)
        );
        let field = |r: Result<(Asset, i64), FieldViolation>| r.unwrap_err().field;
        assert_eq!(
            field(input("1.555").resolve("amount", Some(2))),
            "amount.custom_pricing_unit.value"
        );
        assert_eq!(
            field(input("0").resolve("amount", Some(2))),
            "amount.custom_pricing_unit.value"
        );
        assert_eq!(
            field(input("1").resolve("amount", None)),
            "amount.custom_pricing_unit.id"
        );
    }
}
