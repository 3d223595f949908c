//! Balance summaries from per-grant running balances (never from history).

use std::collections::BTreeMap;

use billing_money::Asset;
use chrono::{DateTime, Utc};

use super::error::RuleError;
use super::grant::{Grant, Scope, add};

/// Which grants a summary covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceFilter {
    /// Every grant of the customer.
    All,
    /// One grant.
    CreditGrant(String),
    /// Grants scoped to every metered price.
    MeteredScope,
    /// Grants that may pay for every one of these prices.
    Prices(Vec<String>),
}

impl BalanceFilter {
    fn selects(&self, grant: &Grant) -> bool {
        match self {
            Self::All => true,
            Self::CreditGrant(id) => &grant.id == id,
            Self::MeteredScope => grant.scope == Scope::Metered,
            Self::Prices(prices) => prices.iter().all(|p| grant.scope.covers(p)),
        }
    }
}

/// The balances of one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The asset.
    pub asset: Asset,
    /// Grants usable now.
    pub available: i64,
    /// Every recorded transaction.
    pub ledger: i64,
    /// Grants pending payment (not voided).
    pub pending: i64,
}

/// Sums the running balances of the selected grants, one entry per asset;
/// a sum past i64 is an error, never a saturated balance.
pub fn summarize(
    grants: &[Grant],
    filter: &BalanceFilter,
    now: DateTime<Utc>,
) -> Result<Vec<Balance>, RuleError> {
    let mut by_asset: BTreeMap<Asset, (i64, i64, i64)> = BTreeMap::new();
    for grant in grants.iter().filter(|g| filter.selects(g)) {
        let entry = by_asset.entry(grant.asset.clone()).or_default();
        entry.1 = add(entry.1, grant.available, "ledger balance")?;
        if grant.is_available_at(now) {
            entry.0 = add(entry.0, grant.available, "available balance")?;
        }
        if grant.pending_payment && grant.voided_at.is_none() {
            entry.2 = add(entry.2, grant.available, "pending balance")?;
        }
    }
    Ok(by_asset
        .into_iter()
        .map(|(asset, (available, ledger, pending))| Balance {
            asset,
            available,
            ledger,
            pending,
        })
        .collect())
}
