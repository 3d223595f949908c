//! Balance transactions: batched appends and paged reads.

use billing_db::Tx;
use billing_db::batch::{Batch, Value};
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::time::to_micros;

use super::{Store, rows};
use crate::domain::transaction::BalanceTransaction;
use crate::error::LedgerError;

/// A new balance transaction id (`cbtxn_…`); domain code is handed this.
pub(crate) fn new_id() -> String {
    billing_server::ids::new_id("cbtxn")
}

/// Columns per inserted row (see [`append`]).
const INSERT_COLUMNS: usize = 11;
/// Rows per INSERT statement: stays far below both backends' parameter limits.
const INSERT_ROWS_MAX: usize = 500;

/// Appends transactions, one multi-row INSERT per 500 rows.
pub(crate) async fn append(
    tx: &mut Tx,
    account: &str,
    items: &[BalanceTransaction],
) -> Result<(), LedgerError> {
    let mut batch = Batch::new();
    append_to(&mut batch, account, items);
    batch.run_each(tx).await?;
    Ok(())
}

/// Adds the INSERTs of [`append`] to `batch`.
pub(crate) fn append_to(batch: &mut Batch, account: &str, items: &[BalanceTransaction]) {
    for chunk in items.chunks(INSERT_ROWS_MAX) {
        let sql = format!(
            "INSERT INTO credit_balance_transactions (account, id, customer, credit_grant, direction, kind, \
             amount, invoice, invoice_line_item, effective_at_us, created_us) VALUES {}",
            billing_db::sql::values_rows(chunk.len(), INSERT_COLUMNS, 1)
        );
        let mut values = Vec::with_capacity(chunk.len() * INSERT_COLUMNS);
        for item in chunk {
            values.extend([
                Value::from(account),
                Value::Text(item.id.clone()),
                Value::Text(item.customer.clone()),
                Value::Text(item.credit_grant.clone()),
                Value::from(if item.kind.is_credit() {
                    "credit"
                } else {
                    "debit"
                }),
                Value::from(item.kind.as_str()),
                Value::Int(item.amount),
                Value::OptText(item.invoice.clone()),
                Value::OptText(item.invoice_line_item.clone()),
                Value::Int(to_micros(item.effective_at)),
                Value::Int(to_micros(item.created)),
            ]);
        }
        batch.push(sql, values);
    }
}

impl Store {
    /// A page of a customer's transactions (optionally one grant's), newest first.
    pub async fn list_transactions(
        &self,
        account: &str,
        customer: &str,
        credit_grant: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<BalanceTransaction>, String), LedgerError> {
        let select = format!(
            "SELECT {} FROM credit_balance_transactions t \
             JOIN credit_grants g ON g.account = t.account AND g.id = t.credit_grant",
            rows::TRANSACTION_COLUMNS
        );
        let found = Conditions::new("t.account", account)
            .eq("t.customer", Some(customer))
            .eq("t.credit_grant", credit_grant)
            .newest_first(
                &select,
                "t.id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let items = found
            .iter()
            .map(rows::transaction)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |t| &t.id))
    }
}
