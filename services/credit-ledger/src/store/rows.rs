//! Decoding rows into domain types.

use billing_money::Asset;
use billing_server::time::from_micros;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::grant::{Category, Grant, GrantTotals, Scope};
use crate::domain::transaction::{BalanceTransaction, TransactionKind};
use crate::error::LedgerError;

/// The columns [`grant`] reads, in order.
pub(crate) const GRANT_COLUMNS: &str = "id, customer, name, asset, asset_scale, amount, available, \
    applied_total, reinstated_total, expired_total, voided_total, scope, category, priority, \
    effective_at_us, expires_at_us, voided_at_us, metadata, created_us, updated_us, source, cost_basis, \
    pending_payment, shared_with_descendants";

/// How many columns [`GRANT_COLUMNS`] names (the next one is a caller's).
pub(crate) const GRANT_COLUMN_COUNT: usize = 24;

/// An asset from its stored key and scale.
pub(crate) fn asset(key: &str, scale: i64) -> Result<Asset, LedgerError> {
    let scale = u32::try_from(scale).map_err(|_| LedgerError::Corrupt(format!("scale {scale}")))?;
    Ok(Asset::from_key(key, scale)?)
}

/// A grant from a row selected with [`GRANT_COLUMNS`].
pub(crate) fn grant(row: &AnyRow) -> Result<Grant, LedgerError> {
    let category: String = row.try_get(12)?;
    let scope: String = row.try_get(11)?;
    let metadata: String = row.try_get(17)?;
    let priority: i64 = row.try_get(13)?;
    let source: Option<String> = row.try_get(20)?;
    let cost_basis: Option<String> = row.try_get(21)?;
    let pending_payment: i64 = row.try_get(22)?;
    let shared: i64 = row.try_get(23)?;
    Ok(Grant {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        name: row.try_get(2)?,
        asset: asset(&row.try_get::<String, _>(3)?, row.try_get(4)?)?,
        amount: row.try_get(5)?,
        available: row.try_get(6)?,
        totals: GrantTotals {
            applied: row.try_get(7)?,
            reinstated: row.try_get(8)?,
            expired: row.try_get(9)?,
            voided: row.try_get(10)?,
        },
        scope: serde_json::from_str::<Scope>(&scope)?,
        category: Category::parse(&category)
            .ok_or_else(|| LedgerError::Corrupt(category.clone()))?,
        priority: u32::try_from(priority)
            .map_err(|_| LedgerError::Corrupt(format!("priority {priority}")))?,
        effective_at: from_micros(row.try_get(14)?),
        expires_at: row.try_get::<Option<i64>, _>(15)?.map(from_micros),
        voided_at: row.try_get::<Option<i64>, _>(16)?.map(from_micros),
        metadata: serde_json::from_str(&metadata)?,
        created: from_micros(row.try_get(18)?),
        updated: from_micros(row.try_get(19)?),
        source: source.as_deref().map(serde_json::from_str).transpose()?,
        cost_basis: cost_basis
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
        pending_payment: pending_payment != 0,
        shared: shared != 0,
    })
}

/// The columns [`transaction`] reads; `t` is the transactions table, `g` the grants.
pub(crate) const TRANSACTION_COLUMNS: &str = "t.id, t.customer, t.credit_grant, t.kind, g.asset, \
    g.asset_scale, t.amount, t.invoice, t.invoice_line_item, t.effective_at_us, t.created_us, g.cost_basis";

/// A balance transaction from a row selected with [`TRANSACTION_COLUMNS`].
pub(crate) fn transaction(row: &AnyRow) -> Result<BalanceTransaction, LedgerError> {
    let kind: String = row.try_get(3)?;
    Ok(BalanceTransaction {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        credit_grant: row.try_get(2)?,
        kind: TransactionKind::parse(&kind).ok_or_else(|| LedgerError::Corrupt(kind.clone()))?,
        asset: asset(&row.try_get::<String, _>(4)?, row.try_get(5)?)?,
        amount: row.try_get(6)?,
        invoice: row.try_get(7)?,
        invoice_line_item: row.try_get(8)?,
        effective_at: from_micros(row.try_get(9)?),
        created: from_micros(row.try_get(10)?),
        cost_basis: row
            .try_get::<Option<String>, _>(11)?
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
    })
}
