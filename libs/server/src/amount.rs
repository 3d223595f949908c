//! `billing.common.v1.Amount` ⇄ an asset's smallest-unit count, shared by
//! every service that answers or reads amounts.

use billing_money::{Asset, MoneyError, format_value, parse_value};
use billing_proto::common::v1 as common;

/// The proto amount of `value` smallest units of `asset`.
pub fn to_proto(asset: &Asset, value: i64) -> common::Amount {
    let kind = match asset {
        Asset::Currency(currency) => common::amount::Kind::Monetary(common::MonetaryAmount {
            currency: currency.code().to_owned(),
            value,
        }),
        Asset::PricingUnit { id, scale } => {
            common::amount::Kind::CustomPricingUnit(common::CustomPricingUnitAmount {
                id: id.clone(),
                value: format_value(value, *scale),
            })
        }
    };
    common::Amount { kind: Some(kind) }
}

/// The smallest-unit count of a proto amount known to be in `asset`
/// (a peer's response); None when the amount has no kind.
pub fn value_in(amount: &common::Amount, asset: &Asset) -> Option<Result<i64, MoneyError>> {
    match amount.kind.as_ref()? {
        common::amount::Kind::Monetary(money) => Some(Ok(money.value)),
        common::amount::Kind::CustomPricingUnit(unit) => {
            Some(parse_value(&unit.value, asset.scale()))
        }
    }
}

/// The asset and smallest-unit count of an amount this suite wrote with
/// [`to_proto`], which gives a pricing unit's value exactly `scale` decimal
/// places: the scale is read back from the digits. None when the amount has
/// no kind.
pub fn from_peer(amount: &common::Amount) -> Option<Result<(Asset, i64), MoneyError>> {
    Some(match amount.kind.as_ref()? {
        common::amount::Kind::Monetary(money) => billing_money::Currency::parse(&money.currency)
            .map(|currency| (Asset::Currency(currency), money.value)),
        common::amount::Kind::CustomPricingUnit(unit) => {
            let scale = unit
                .value
                .split_once('.')
                .map_or(0, |(_, places)| places.len());
            u32::try_from(scale)
                .map_err(|_| MoneyError::Overflow)
                .and_then(|scale| {
                    let asset = Asset::pricing_unit(unit.id.clone(), scale)?;
                    let value = parse_value(&unit.value, scale)?;
                    Ok((asset, value))
                })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_amount_gives_back_its_asset() {
        let unit = Asset::pricing_unit("pu_1", 3).unwrap();
        for (asset, value) in [
            (unit.clone(), 0),
            (unit, 12_345),
            (Asset::from_key("usd", 2).unwrap(), -7),
        ] {
            let round_trip = from_peer(&to_proto(&asset, value)).unwrap().unwrap();
            assert_eq!(round_trip, (asset, value));
        }
    }
}
