//! The credit liability report (DESIGN.md §13, docs/reporting.md): per
//! asset and cost-basis currency, the unused credits at the start and end
//! of a period and every movement in between, with the money behind each
//! movement rounded once per transaction at its grant's cost basis.

use std::collections::BTreeMap;

use billing_money::{Asset, Conversion, Currency};

use super::grant::CostBasis;
use super::transaction::TransactionKind;

/// A sum of the report does not fit in i64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the liability report's {0} overflows i64")]
pub struct ReportOverflow(pub &'static str);

/// One asset and cost-basis currency over the period. Credits are in the
/// asset's smallest unit; money (`*_cost`, `recognized_revenue`) in the
/// currency's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityRow {
    /// The credits' asset.
    pub asset: Asset,
    /// The cost basis' currency; None for credits given for free.
    pub currency: Option<Currency>,
    /// Unused at the start.
    pub opening: i64,
    /// Granted with a cost basis.
    pub purchased: i64,
    /// Their cost.
    pub purchased_cost: i64,
    /// Granted without a cost basis.
    pub granted_free: i64,
    /// Applied, less what voided invoices gave back.
    pub applied: i64,
    /// The revenue those applications recognize.
    pub recognized_revenue: i64,
    /// Expired unused (breakage).
    pub expired: i64,
    /// Their cost.
    pub breakage_cost: i64,
    /// Voided.
    pub voided: i64,
    /// Their cost.
    pub voided_cost: i64,
    /// Unused at the end (summed on its own, not derived).
    pub closing: i64,
}

impl LiabilityRow {
    fn new(asset: Asset, currency: Option<Currency>) -> Self {
        Self {
            asset,
            currency,
            opening: 0,
            purchased: 0,
            purchased_cost: 0,
            granted_free: 0,
            applied: 0,
            recognized_revenue: 0,
            expired: 0,
            breakage_cost: 0,
            voided: 0,
            voided_cost: 0,
            closing: 0,
        }
    }

    /// `opening + purchased + granted_free − applied − expired − voided`:
    /// what `closing` must be.
    pub fn expected_closing(&self) -> Result<i64, ReportOverflow> {
        let overflow = || ReportOverflow("closing balance");
        self.opening
            .checked_add(self.purchased)
            .and_then(|v| v.checked_add(self.granted_free))
            .and_then(|v| v.checked_sub(self.applied))
            .and_then(|v| v.checked_sub(self.expired))
            .and_then(|v| v.checked_sub(self.voided))
            .ok_or_else(overflow)
    }
}

/// An end of the report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Its start.
    Opening,
    /// Its end.
    Closing,
}

/// Transactions alike for the report.
#[derive(Debug, Clone, Copy)]
pub struct Movement<'a> {
    /// The grant's asset.
    pub asset: &'a Asset,
    /// The grant's cost basis.
    pub basis: Option<&'a CostBasis>,
    /// Why.
    pub kind: TransactionKind,
    /// Each one's amount.
    pub amount: i64,
}

/// The report being summed: rows by (asset key, currency code).
#[derive(Debug, Clone, Default)]
pub struct LiabilityReport {
    rows: BTreeMap<(String, String), LiabilityRow>,
}

fn add(total: &mut i64, value: i64, what: &'static str) -> Result<(), ReportOverflow> {
    *total = total.checked_add(value).ok_or(ReportOverflow(what))?;
    Ok(())
}

impl LiabilityReport {
    fn row(&mut self, asset: &Asset, basis: Option<&CostBasis>) -> &mut LiabilityRow {
        let currency = basis.map(|b| b.currency);
        let key = (
            asset.key(),
            currency.map(|c| c.code().to_owned()).unwrap_or_default(),
        );
        self.rows
            .entry(key)
            .or_insert_with(|| LiabilityRow::new(asset.clone(), currency))
    }

    /// Adds unused credits at one end of the period (`balance`: credits
    /// less debits before it, of grants in `asset` with `basis`). The two
    /// ends are summed on their own, never derived from the movements.
    pub fn balance_at(
        &mut self,
        edge: Edge,
        (asset, basis): (&Asset, Option<&CostBasis>),
        balance: i64,
    ) -> Result<(), ReportOverflow> {
        let row = self.row(asset, basis);
        match edge {
            Edge::Opening => add(&mut row.opening, balance, "opening balance"),
            Edge::Closing => add(&mut row.closing, balance, "closing balance"),
        }
    }

    /// Adds `count` transactions of the period alike in asset, basis, kind
    /// and amount: each one's worth is rounded on its own, so they add
    /// `count` times that rounded worth.
    pub fn record_many(
        &mut self,
        movement: Movement<'_>,
        count: i64,
    ) -> Result<(), ReportOverflow> {
        let Movement {
            asset,
            basis,
            kind,
            amount,
        } = movement;
        let cost = match basis {
            Some(basis) => Conversion {
                currency: basis.currency,
                unit_amount: basis.unit_amount,
            }
            .convert(amount, asset.scale())
            .map_err(|_| ReportOverflow("cost of a transaction"))?,
            None => 0,
        };
        let times =
            |value: i64, what: &'static str| value.checked_mul(count).ok_or(ReportOverflow(what));
        let (amount, cost) = (times(amount, "credits")?, times(cost, "money")?);
        let row = self.row(asset, basis);
        match kind {
            TransactionKind::CreditsGranted if basis.is_some() => {
                add(&mut row.purchased, amount, "purchased")?;
                add(&mut row.purchased_cost, cost, "purchased cost")
            }
            TransactionKind::CreditsGranted => add(&mut row.granted_free, amount, "granted"),
            TransactionKind::CreditsApplied => {
                add(&mut row.applied, amount, "applied")?;
                add(&mut row.recognized_revenue, cost, "recognized revenue")
            }
            // A voided invoice gives its credits back: the application and
            // its revenue are undone.
            TransactionKind::CreditsApplicationInvoiceVoided => {
                add(&mut row.applied, -amount, "applied")?;
                add(&mut row.recognized_revenue, -cost, "recognized revenue")
            }
            TransactionKind::CreditsExpired => {
                add(&mut row.expired, amount, "expired")?;
                add(&mut row.breakage_cost, cost, "breakage")
            }
            TransactionKind::CreditsVoided => {
                add(&mut row.voided, amount, "voided")?;
                add(&mut row.voided_cost, cost, "voided cost")
            }
        }
    }

    /// The rows, by asset then currency (free credits first).
    pub fn rows(self) -> Vec<LiabilityRow> {
        self.rows.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records one transaction of a pricing unit of scale 1.
    fn record(
        report: &mut LiabilityReport,
        kind: TransactionKind,
        amount: i64,
        rate: Option<&str>,
    ) {
        let asset = Asset::pricing_unit("pu_1", 1).unwrap();
        let basis = rate.map(|rate| CostBasis {
            currency: Currency::parse("usd").unwrap(),
            unit_amount: rate.parse().unwrap(),
        });
        let movement = Movement {
            asset: &asset,
            basis: basis.as_ref(),
            kind,
            amount,
        };
        report.record_many(movement, 1).unwrap();
    }

    #[test]
    fn each_movement_lands_in_its_column_and_the_row_reconciles() {
        use TransactionKind::*;
        let mut report = LiabilityReport::default();
        let basis = CostBasis {
            currency: Currency::parse("usd").unwrap(),
            unit_amount: "0.5".parse().unwrap(),
        };
        let unit = Asset::pricing_unit("pu_1", 1).unwrap();
        report
            .balance_at(Edge::Opening, (&unit, Some(&basis)), 100)
            .unwrap();
        // 1,000.5 credits at 0.5¢: 500.25¢ → 500¢; 10.5 applied: 5.25 → 5¢.
        record(&mut report, CreditsGranted, 10_005, Some("0.5"));
        record(&mut report, CreditsApplied, 105, Some("0.5"));
        record(&mut report, CreditsApplicationInvoiceVoided, 5, Some("0.5"));
        record(&mut report, CreditsExpired, 30, Some("0.5"));
        record(&mut report, CreditsVoided, 10, Some("0.5"));
        record(&mut report, CreditsGranted, 70, None);
        report
            .balance_at(Edge::Closing, (&unit, Some(&basis)), 9_965)
            .unwrap();
        let rows = report.rows();
        assert_eq!(rows.len(), 2, "free credits have their own row");
        let (free, paid) = (&rows[0], &rows[1]);
        assert_eq!((free.currency, free.granted_free), (None, 70));
        assert_eq!(
            (paid.purchased, paid.purchased_cost, paid.applied),
            (10_005, 500, 100)
        );
        // 105 × 0.05 = 5.25 → 5; 5 × 0.05 = 0.25 → 0 given back.
        assert_eq!(paid.recognized_revenue, 5);
        assert_eq!((paid.expired, paid.breakage_cost), (30, 2)); // 1.5 → 2
        assert_eq!((paid.voided, paid.voided_cost), (10, 1)); // 0.5 → 1
        assert_eq!(paid.expected_closing(), Ok(paid.closing));
    }
}
