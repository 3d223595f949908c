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
