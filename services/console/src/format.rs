//! How amounts, times and enums read on a page.

use billing_proto::common::v1::{Amount, amount::Kind};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// An amount as people write it: `20.00 USD`, `1,250.5 pu_tokens`.
pub fn amount(amount: &Option<Amount>) -> String {
    match asset_value(amount) {
        Some((asset, value)) => format!("{} {asset}", group(&value.to_string())),
        None => "—".into(),
    }
}

/// The asset (upper-case currency or pricing unit id) and the exact decimal
/// value (in whole units) of an amount.
pub fn asset_value(amount: &Option<Amount>) -> Option<(String, Decimal)> {
    match amount.as_ref()?.kind.as_ref()? {
        Kind::Monetary(m) => {
            let exponent = billing_money::Currency::parse(&m.currency)
                .map(|c| c.exponent())
                .unwrap_or(2);
            let text = billing_money::format_value(m.value, exponent);
            Some((m.currency.to_ascii_uppercase(), text.parse().ok()?))
        }
        Kind::CustomPricingUnit(p) => Some((p.id.clone(), p.value.parse().ok()?)),
    }
}

/// Thousands separators in the integer part of a decimal string.
pub fn group(text: &str) -> String {
    let (sign, rest) = text
        .strip_prefix('-')
        .map_or(("", text), |rest| ("-", rest));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A timestamp as `2026-11-29 19:05 UTC`; "—" when unset.
pub fn time(ts: &Option<prost_types::Timestamp>) -> String {
    to_utc(ts).map_or_else(
        || "—".into(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A timestamp as a date; "—" when unset.
pub fn date(ts: &Option<prost_types::Timestamp>) -> String {
    to_utc(ts).map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d").to_string())
}

/// A protobuf timestamp as a chrono time.
pub fn to_utc(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts.as_ref()?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// `CREDIT_GRANT_STATE_PENDING_PAYMENT` → `pending payment`.
pub fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use billing_proto::common::v1::{CustomPricingUnitAmount, MonetaryAmount};

    #[test]
    fn amounts_read_as_people_write_them() {
        let usd = Some(Amount {
            kind: Some(Kind::Monetary(MonetaryAmount {
                currency: "usd".into(),
                value: 123_456_789,
            })),
        });
        assert_eq!(amount(&usd), "1,234,567.89 USD");
        let units = Some(Amount {
            kind: Some(Kind::CustomPricingUnit(CustomPricingUnitAmount {
                id: "pu_x".into(),
                value: "-1250.5".into(),
            })),
        });
        assert_eq!(amount(&units), "-1,250.5 pu_x");
        assert_eq!(amount(&None), "—");
        assert_eq!(
            enum_name("CREDIT_GRANT_STATE_PENDING_PAYMENT", "CREDIT_GRANT_STATE_"),
            "pending payment"
        );
    }
}
