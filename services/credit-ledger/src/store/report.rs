//! Reading the history in bulk: ExportLedgerEntries' pages and the credit
//! liability report, both in effective-time order over the
//! `credit_balance_transactions_by_effective` index, a page at a time.

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Store, rows};
use crate::domain::grant::{Category, CostBasis};
use crate::domain::report::{Edge, LiabilityReport, LiabilityRow, Movement};
use crate::domain::transaction::{BalanceTransaction, TransactionKind};
use crate::error::LedgerError;

/// Most transactions read per page.
pub const EXPORT_PAGE: i64 = 1_000;

/// Where an export page starts: after this (effective µs, id).
pub type ExportCursor = (i64, String);

/// Which transactions to read: `[from_us, to_us)` by effective time,
/// optionally of one customer.
#[derive(Debug, Clone)]
pub struct ExportRange {
    /// Inclusive.
    pub from_us: i64,
    /// Exclusive.
    pub to_us: i64,
    /// Only this customer's.
    pub customer: Option<String>,
}

/// One page's statement: the page starts after `($2, $4)` (the first
/// after `(from, "")`), so one text serves every page. The lower bound is
/// the cursor's, not `from`: SQLite then seeks straight to the page
/// instead of walking the index from the start of the range.
fn page_sql(range: &ExportRange) -> String {
    let customer = if range.customer.is_some() {
        " AND t.customer = $6"
    } else {
        ""
    };
    format!(
        "SELECT {}, g.category FROM credit_balance_transactions t \
         JOIN credit_grants g ON g.account = t.account AND g.id = t.credit_grant \
         WHERE t.account = $1 AND t.effective_at_us >= $2 AND t.effective_at_us < $3 \
         AND (t.effective_at_us, t.id) > ($2, $4){customer} \
         ORDER BY t.effective_at_us, t.id LIMIT $5",
        rows::TRANSACTION_COLUMNS
    )
}

/// Credits less debits before `before_us`, per asset and cost basis.
fn balances_sql() -> &'static str {
    "SELECT g.asset, g.asset_scale, g.cost_basis, \
     CAST(SUM(CASE WHEN t.direction = 'credit' THEN t.amount ELSE -t.amount END) AS BIGINT) \
     FROM credit_balance_transactions t \
     JOIN credit_grants g ON g.account = t.account AND g.id = t.credit_grant \
     WHERE t.account = $1 AND t.effective_at_us < $2 \
     GROUP BY g.asset, g.asset_scale, g.cost_basis"
}

impl Store {
    /// One page of the export after `after` (the previous page's last).
    pub async fn export_page(
        &self,
        account: &str,
        range: &ExportRange,
        after: Option<&ExportCursor>,
    ) -> Result<Vec<(BalanceTransaction, Category)>, LedgerError> {
        let mut conn = self.db.pool().acquire().await?;
        export_page(&mut conn, account, range, after).await
    }

    /// The liability report over `[from_us, to_us)`, read in one snapshot:
    /// the opening and closing balances are summed on their own, and the
    /// period's transactions grouped in the database and read as a stream.
    pub async fn liability_report(
        &self,
        account: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<LiabilityRow>, LedgerError> {
        let mut tx = self.db.begin_snapshot().await?;
        let mut report = LiabilityReport::default();
        let overflow =
            |e: crate::domain::report::ReportOverflow| LedgerError::Invariant(e.to_string());
        for (before, edge) in [(from_us, Edge::Opening), (to_us, Edge::Closing)] {
            let found = sqlx::query(balances_sql())
                .bind(account)
                .bind(before)
                .fetch_all(&mut *tx)
                .await?;
            for row in &found {
                let asset = rows::asset(&row.try_get::<String, _>(0)?, row.try_get(1)?)?;
                let basis = cost_basis(row, 2)?;
                report
                    .balance_at(edge, (&asset, basis.as_ref()), row.try_get(3)?)
                    .map_err(overflow)?;
            }
        }
        // The period's movements, grouped by what decides their worth
        // (each transaction is rounded on its own, so alike ones add alike),
        // read as a stream.
        let mut movements = sqlx::query(
            "SELECT g.asset, g.asset_scale, g.cost_basis, t.kind, t.amount, COUNT(*) \
             FROM credit_balance_transactions t \
             JOIN credit_grants g ON g.account = t.account AND g.id = t.credit_grant \
             WHERE t.account = $1 AND t.effective_at_us >= $2 AND t.effective_at_us < $3 \
             GROUP BY g.asset, g.asset_scale, g.cost_basis, t.kind, t.amount",
        )
        .bind(account)
        .bind(from_us)
        .bind(to_us)
        .fetch(&mut *tx);
        while let Some(row) = movements.try_next().await? {
            let asset = rows::asset(&row.try_get::<String, _>(0)?, row.try_get(1)?)?;
            let basis = cost_basis(&row, 2)?;
            let kind: String = row.try_get(3)?;
            let kind = TransactionKind::parse(&kind).ok_or_else(|| LedgerError::Corrupt(kind))?;
            let movement = Movement {
                asset: &asset,
                basis: basis.as_ref(),
                kind,
                amount: row.try_get(4)?,
            };
            report
                .record_many(movement, row.try_get(5)?)
                .map_err(overflow)?;
        }
        drop(movements);
        tx.commit().await?;
        Ok(report.rows())
    }
}

/// A grant's cost basis (stored as JSON) from column `index`.
fn cost_basis(row: &sqlx::any::AnyRow, index: usize) -> Result<Option<CostBasis>, LedgerError> {
    Ok(row
        .try_get::<Option<String>, _>(index)?
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?)
}

async fn export_page(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    range: &ExportRange,
    after: Option<&ExportCursor>,
) -> Result<Vec<(BalanceTransaction, Category)>, LedgerError> {
    let (after_us, after_id) = after.map_or((range.from_us, ""), |(us, id)| (*us, id.as_str()));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(page_sql(range)))
        .bind(account)
        .bind(after_us)
        .bind(range.to_us)
        .bind(after_id)
        .bind(EXPORT_PAGE);
    if let Some(customer) = &range.customer {
        query = query.bind(customer.as_str());
    }
    let found = query.fetch_all(&mut *conn).await?;
    found
        .iter()
        .map(|row| {
            let category: String = row.try_get(12)?;
            let category = Category::parse(&category)
                .ok_or_else(|| LedgerError::Corrupt(format!("category {category}")))?;
            Ok((rows::transaction(row)?, category))
        })
        .collect()
}
