//! The audit: recomputes every grant from its history and checks every
//! invoice's applications. It scans; it is an operator's tool, not a hot path.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, rows};
use crate::domain::apply::ApplyOutcome;
use crate::domain::invariants::{self, HistoryTotals, Violation};
use crate::domain::transaction::TransactionKind;
use crate::error::LedgerError;

/// What the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Grants checked.
    pub grants: i64,
    /// Invoices checked.
    pub invoices: i64,
    /// Broken invariants.
    pub violations: Vec<Violation>,
}

impl Store {
    /// Checks the invariants of one account.
    pub async fn audit(&self, account: &str) -> Result<AuditReport, LedgerError> {
        let history = self.history_totals(account).await?;
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1",
            rows::GRANT_COLUMNS
        );
        let grant_rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .fetch_all(self.db.pool())
            .await?;
        let mut violations = Vec::new();
        let mut grants = Vec::with_capacity(grant_rows.len());
        for row in &grant_rows {
            let grant = rows::grant(row)?;
            let recomputed = history.get(&grant.id).copied().unwrap_or_default();
            invariants::check_grant(&grant, Some(&recomputed), &mut violations);
            grants.push(grant);
        }
        let balances = sqlx::query(
            "SELECT customer, asset, available, evaluated_us FROM customer_balances \
             WHERE account = $1 AND available IS NOT NULL",
        )
        .bind(account)
        .fetch_all(self.db.pool())
        .await?;
        let holds = self.holds_for_audit(account).await?;
        for row in &balances {
            let (customer, asset): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let evaluated: Option<i64> = row.try_get(3)?;
            let Some(evaluated) = evaluated else { continue };
            let of: Vec<&crate::domain::grant::Grant> = grants
                .iter()
                .filter(|g| g.customer == customer && g.asset.key() == asset)
                .collect();
            let stored = (
                row.try_get(2)?,
                billing_server::time::from_micros(evaluated),
            );
            let held: Vec<&crate::domain::hold::Hold> = holds
                .iter()
                .filter(|h| h.customer == customer && h.asset.key() == asset)
                .collect();
            invariants::check_evaluated_balance(
                (&customer, &asset),
                stored,
                &of,
                &held,
                &mut violations,
            );
        }
        let outcomes =
            sqlx::query("SELECT outcome FROM invoice_credit_applications WHERE account = $1")
                .bind(account)
                .fetch_all(self.db.pool())
                .await?;
        for row in &outcomes {
            let outcome: ApplyOutcome = serde_json::from_str(&row.try_get::<String, _>(0)?)?;
            invariants::check_invoice(&outcome, &mut violations);
        }
        Ok(AuditReport {
            grants: i64::try_from(grant_rows.len()).unwrap_or(i64::MAX),
            invoices: i64::try_from(outcomes.len()).unwrap_or(i64::MAX),
            violations,
        })
    }

    async fn history_totals(
        &self,
        account: &str,
    ) -> Result<HashMap<String, HistoryTotals>, LedgerError> {
        let found = sqlx::query(
            "SELECT credit_grant, kind, CAST(SUM(amount) AS BIGINT) FROM credit_balance_transactions \
             WHERE account = $1 GROUP BY credit_grant, kind",
        )
        .bind(account)
        .fetch_all(self.db.pool())
        .await?;
        let mut by_grant: HashMap<String, HistoryTotals> = HashMap::new();
        for row in &found {
            let kind: String = row.try_get(1)?;
            let sum: i64 = row.try_get(2)?;
            let entry = by_grant.entry(row.try_get(0)?).or_default();
            match TransactionKind::parse(&kind) {
                Some(TransactionKind::CreditsGranted) => entry.granted = sum,
                Some(TransactionKind::CreditsApplied) => entry.totals.applied = sum,
                Some(TransactionKind::CreditsApplicationInvoiceVoided) => {
                    entry.totals.reinstated = sum
                }
                Some(TransactionKind::CreditsExpired) => entry.totals.expired = sum,
                Some(TransactionKind::CreditsVoided) => entry.totals.voided = sum,
                None => return Err(LedgerError::Corrupt(kind)),
            }
        }
        Ok(by_grant)
    }
}
