//! Credit purchases (DESIGN.md section 11): credits bought at a price per
//! credit, invoiced on one line, granted as paid credits with that price as
//! their cost basis, usable once the invoice is paid when payment is required.

use billing_money::{Asset, Currency, Decimal, round_to_scale};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A purchase was created (its invoice is finalized).
pub const CREDIT_PURCHASE_CREATED: &str = "credit_purchase.created";
/// Its credits became usable.
pub const CREDIT_PURCHASE_ACTIVATED: &str = "credit_purchase.activated";
/// Its invoice was voided unpaid, and its grant with it.
pub const CREDIT_PURCHASE_VOIDED: &str = "credit_purchase.voided";

/// Most prices a purchase's credits may be limited to.
pub const PRICES_MAX: usize = 100;

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    /// The invoice exists; the grant is being made.
    Processing,
    /// The grant waits for the invoice to be paid.
    PendingPayment,
    /// The credits are usable.
    Active,
    /// Voided with its invoice.
    Void,
}

impl PurchaseStatus {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::PendingPayment => "pending_payment",
            Self::Active => "active",
            Self::Void => "void",
        }
    }

    /// From the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "processing" => Some(Self::Processing),
            "pending_payment" => Some(Self::PendingPayment),
            "active" => Some(Self::Active),
            "void" => Some(Self::Void),
            _ => None,
        }
    }
}

/// A credit purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPurchase {
    /// `cpur_…`
    pub id: String,
    /// `cus_…`
    pub customer: String,
    /// What the credits are in.
    pub credits_asset: Asset,
    /// How many, in the asset's smallest units.
    pub credits: i64,
    /// The invoice's currency.
    pub currency: Currency,
    /// Minor units of the currency per whole credit.
    pub unit_amount: Decimal,
    /// What the invoice charges, in the currency's minor units.
    pub amount: i64,
    /// `in_…`
    pub invoice: String,
    /// `credgr_…`, once made.
    pub credit_grant: Option<String>,
    /// Where it stands.
    pub status: PurchaseStatus,
    /// Credits usable only once the invoice is paid.
    pub require_payment: bool,
    /// When the credits expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// The grant's priority.
    pub priority: u32,
    /// Prices the credits may pay for; empty: every metered price.
    pub prices: Vec<String>,
    /// Created.
    pub created: DateTime<Utc>,
    /// The auto top-up that bought it (`atu_…`).
    #[serde(default)]
    pub auto_top_up: Option<String>,
}

/// The credits as a decimal number of whole credits (`1050` cents of usd
/// credits are `10.50`).
pub fn quantity(asset: &Asset, credits: i64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(credits), asset.scale())
}

/// What `credits` cost at `unit_amount` minor units per whole credit:
/// rounded once, half away from zero. None past 64 bits.
pub fn charge(asset: &Asset, credits: i64, unit_amount: Decimal) -> Option<i64> {
    let exact = quantity(asset, credits).checked_mul(unit_amount)?;
    round_to_scale(exact, 0).ok()
}

/// The invoice line's description: "1,000 credits × 0.9".
pub fn line_description(asset: &Asset, credits: i64, unit_amount: Decimal) -> String {
    let unit = match asset {
        Asset::Currency(c) => format!("{} credits", c.code()),
        Asset::PricingUnit { id, .. } => id.clone(),
    };
    format!(
        "{} {unit} × {} per credit",
        quantity(asset, credits).normalize(),
        unit_amount.normalize()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charge_is_rounded_once_half_away_from_zero() {
        let units = Asset::pricing_unit("pu_api", 0).unwrap();
        // 1,000 credits at 0.95¢: 950¢.
        assert_eq!(charge(&units, 1_000, Decimal::new(95, 2)), Some(950));
        // 3 credits at 0.5¢: 1.5¢ → 2¢.
        assert_eq!(charge(&units, 3, Decimal::new(5, 1)), Some(2));
        // $100.00 of usd credits at 90¢ per dollar: 9,000¢.
        let usd = Asset::Currency(Currency::parse("usd").unwrap());
        assert_eq!(charge(&usd, 10_000, Decimal::from(90)), Some(9_000));
        assert_eq!(charge(&units, i64::MAX, Decimal::from(2)), None);
    }
}
