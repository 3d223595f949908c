//! Metered prices.

use billing_money::Asset;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pricing::Pricing;

/// Most tiers of one price.
pub const TIERS_MAX: usize = 50;

/// A metered price: what a meter's usage costs, in one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// `price_…`
    pub id: String,
    /// Currency or ledger pricing unit.
    pub asset: Asset,
    /// The meter (`mtr_…`) whose usage is billed.
    pub meter: String,
    /// How usage becomes an amount.
    pub pricing: Pricing,
    /// Shown on invoice lines.
    pub nickname: String,
    /// False once deactivated.
    pub active: bool,
    /// Creation time.
    pub created: DateTime<Utc>,
}
