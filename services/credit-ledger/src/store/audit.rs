//! The audit: recomputes every grant from its history, checks each
//! customer's evaluated balance, every invoice's applications, and that the
//! liability report over all time reconciles with the grants. It reads a
//! page at a time (grants by customer, invoices by id), so its memory does
//! not grow with the account; it is an operator's tool, not a hot path.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::{Store, rows};
use crate::domain::apply::ApplyOutcome;
use crate::domain::grant::Grant;
use crate::domain::invariants::{self, HistoryTotals, Violation};
use crate::domain::transaction::TransactionKind;
use crate::error::LedgerError;

/// Grants or invoices read per statement.
const AUDIT_PAGE: usize = 1_000;

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

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Checks the invariants of one account.
    pub async fn audit(&self, account: &str) -> Result<AuditReport, LedgerError> {
        let mut violations = Vec::new();
        // Unused credits per (asset, cost-basis currency), from the grants.
        let mut unused: BTreeMap<(String, String), i128> = BTreeMap::new();
        let mut grants = 0;
        // The grants of the customer being read (a customer may span pages).
        let mut current: Vec<Grant> = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self.grants_page(account, after.as_ref()).await?;
            let ids: Vec<&str> = page.iter().map(|g| g.id.as_str()).collect();
            let history = self.history_totals(account, &ids).await?;
            let mut finished = Vec::new();
            for grant in &page {
                let recomputed = history.get(&grant.id).copied().unwrap_or_default();
                invariants::check_grant(grant, Some(&recomputed), &mut violations);
                let currency = grant
                    .cost_basis
                    .as_ref()
                    .map(|b| b.currency.code().to_owned())
                    .unwrap_or_default();
                *unused.entry((grant.asset.key(), currency)).or_default() +=
                    i128::from(grant.available);
                if current
                    .first()
                    .is_some_and(|g| g.customer != grant.customer)
                {
                    finished.push(std::mem::take(&mut current));
                }
                current.push(grant.clone());
            }
            grants += page.len();
            let last_page = page.len() < AUDIT_PAGE;
            if last_page && !current.is_empty() {
                finished.push(std::mem::take(&mut current));
            }
            self.check_balances(account, &finished, &mut violations)
                .await?;
            if last_page {
                break;
            }
            after = page.last().map(|g| (g.customer.clone(), g.id.clone()));
        }
        let invoices = self.check_invoices(account, &mut violations).await?;
        self.check_liability(account, &unused, &mut violations)
            .await?;
        Ok(AuditReport {
            grants: count(grants),
            invoices: count(invoices),
            violations,
        })
    }

    /// A page of grants in (customer, id) order after `after`.
    async fn grants_page(
        &self,
        account: &str,
        after: Option<&(String, String)>,
    ) -> Result<Vec<Grant>, LedgerError> {
        // One text for every page: the first starts after ("", "").
        let sql = format!(
            "SELECT {} FROM credit_grants WHERE account = $1 \
             AND (customer, id) > ($2, $3) ORDER BY customer, id LIMIT {AUDIT_PAGE}",
            rows::GRANT_COLUMNS
        );
        let (customer, id) = after.map_or(("", ""), |(c, i)| (c.as_str(), i.as_str()));
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(customer)
            .bind(id)
            .fetch_all(self.db.pool())
            .await?;
        found.iter().map(rows::grant).collect()
    }

    /// Each finished customer's stored alert balances against its grants
    /// and holds (one statement each for all of them).
    async fn check_balances(
        &self,
        account: &str,
        customers: &[Vec<Grant>],
        violations: &mut Vec<Violation>,
    ) -> Result<(), LedgerError> {
        let names: Vec<&str> = customers
            .iter()
            .filter_map(|grants| grants.first().map(|g| g.customer.as_str()))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT customer, asset, available, evaluated_us FROM customer_balances \
             WHERE account = $1 AND customer IN ({}) AND available IS NOT NULL",
            billing_db::sql::list(names.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for name in &names {
            query = query.bind(*name);
        }
        let balances = query.fetch_all(self.db.pool()).await?;
        let holds = self.holds_of(account, &names).await?;
        for row in &balances {
            let (customer, asset): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let Some(evaluated) = row.try_get::<Option<i64>, _>(3)? else {
                continue;
            };
            let of: Vec<&Grant> = customers
                .iter()
                .flatten()
                .filter(|g| g.customer == customer && g.asset.key() == asset)
                .collect();
            let held: Vec<&crate::domain::hold::Hold> = holds
                .iter()
                .filter(|h| h.customer == customer && h.asset.key() == asset)
                .collect();
            invariants::check_evaluated_balance(
                (&customer, &asset),
                (
                    row.try_get(2)?,
                    billing_server::time::from_micros(evaluated),
                ),
                &of,
                &held,
                violations,
            );
        }
        Ok(())
    }

    /// Every invoice's applications, a page at a time; returns how many.
    async fn check_invoices(
        &self,
        account: &str,
        violations: &mut Vec<Violation>,
    ) -> Result<usize, LedgerError> {
        let mut checked = 0;
        let mut after = String::new();
        loop {
            let found = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT invoice, outcome FROM invoice_credit_applications \
                 WHERE account = $1 AND invoice > $2 ORDER BY invoice LIMIT {AUDIT_PAGE}"
            )))
            .bind(account)
            .bind(&after)
            .fetch_all(self.db.pool())
            .await?;
            for row in &found {
                let outcome: ApplyOutcome = serde_json::from_str(&row.try_get::<String, _>(1)?)?;
                invariants::check_invoice(&outcome, violations);
            }
            checked += found.len();
            match found.last() {
                Some(last) if found.len() == AUDIT_PAGE => after = last.try_get(0)?,
                _ => return Ok(checked),
            }
        }
    }

    /// The liability report over all time: each row reconciles, and its
    /// closing balance is what the grants hold unused.
    async fn check_liability(
        &self,
        account: &str,
        unused: &BTreeMap<(String, String), i128>,
        violations: &mut Vec<Violation>,
    ) -> Result<(), LedgerError> {
        use billing_server::time::{EARLIEST_SECONDS, END_SECONDS};
        let second = 1_000_000;
        let rows = self
            .liability_report(account, EARLIEST_SECONDS * second, END_SECONDS * second)
            .await?;
        let mut reported: BTreeMap<(String, String), i128> = BTreeMap::new();
        for row in &rows {
            let key = (
                row.asset.key(),
                row.currency
                    .map(|c| c.code().to_owned())
                    .unwrap_or_default(),
            );
            let subject = format!("{}/{}", key.0, key.1);
            if row.expected_closing() != Ok(row.closing) {
                violations.push(Violation {
                    subject: subject.clone(),
                    invariant: "LIABILITY_REPORT_RECONCILES",
                    detail: format!(
                        "opening + purchased + granted − applied − expired − voided is {:?}, \
                         the closing balance {}",
                        row.expected_closing(),
                        row.closing
                    ),
                });
            }
            reported.insert(key, i128::from(row.closing));
        }
        for key in unused.keys().chain(reported.keys()) {
            let (grants, report) = (
                unused.get(key).copied().unwrap_or_default(),
                reported.get(key).copied().unwrap_or_default(),
            );
            if grants != report {
                violations.push(Violation {
                    subject: format!("{}/{}", key.0, key.1),
                    invariant: "LIABILITY_MATCHES_GRANTS",
                    detail: format!(
                        "the report's closing balance is {report} but the grants hold {grants} unused"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Σ of each transaction kind per grant of `grants`.
    async fn history_totals(
        &self,
        account: &str,
        grants: &[&str],
    ) -> Result<HashMap<String, HistoryTotals>, LedgerError> {
        let mut by_grant: HashMap<String, HistoryTotals> = HashMap::new();
        if grants.is_empty() {
            return Ok(by_grant);
        }
        let sql = format!(
            "SELECT credit_grant, kind, CAST(SUM(amount) AS BIGINT) FROM credit_balance_transactions \
             WHERE account = $1 AND credit_grant IN ({}) GROUP BY credit_grant, kind",
            billing_db::sql::list(grants.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for grant in grants {
            query = query.bind(*grant);
        }
        for row in &query.fetch_all(self.db.pool()).await? {
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
