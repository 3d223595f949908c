//! Credit purchases: created with their invoice in one transaction, then
//! moved along by the purchase saga (ops::purchases).

use billing_db::events::Outbox;
use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::time::to_micros;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::events::{push, push_invoice};
use crate::domain::invoice::{INVOICE_CREATED, INVOICE_FINALIZED, INVOICE_PAID, Invoice, Status};
use crate::domain::purchase::{CREDIT_PURCHASE_CREATED, CreditPurchase, PurchaseStatus};
use crate::domain::top_up::{AUTO_TOP_UP_TRIGGERED, TopUpEvent};
use crate::error::InvoicingError;

const COLUMNS: &str = "terms, credit_grant, status";

fn purchase(row: &AnyRow) -> Result<CreditPurchase, InvoicingError> {
    let terms: String = row.try_get(0)?;
    let status: String = row.try_get(2)?;
    let mut purchase: CreditPurchase = serde_json::from_str(&terms)?;
    purchase.credit_grant = row.try_get(1)?;
    purchase.status =
        PurchaseStatus::parse(&status).ok_or_else(|| InvoicingError::Corrupt(status.clone()))?;
    Ok(purchase)
}

impl Store {
    /// Inserts the purchase and its finalized invoice, with their events and
    /// the request's idempotency key, in one transaction. A replay returns
    /// the purchase as first created.
    pub async fn create_purchase(
        &self,
        account: &str,
        invoice: &Invoice,
        purchase: CreditPurchase,
        key: Option<&IdempotencyKey>,
        triggered: Option<&TopUpEvent>,
    ) -> Result<CreditPurchase, InvoicingError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        super::invoices::insert(&mut tx, account, invoice).await?;
        sqlx::query(
            "INSERT INTO credit_purchases (account, id, customer, invoice, credit_grant, status, terms, created_us, \
             auto_top_up, amount) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
        )
        .bind(account)
        .bind(&purchase.id)
        .bind(&purchase.customer)
        .bind(&purchase.invoice)
        .bind(purchase.status.as_str())
        .bind(serde_json::to_string(&purchase)?)
        .bind(to_micros(purchase.created))
        .bind(purchase.auto_top_up.as_deref())
        .bind(purchase.amount)
        .execute(&mut *tx)
        .await?;
        let mut outbox = Outbox::new();
        let id = invoice.id.as_str();
        push_invoice(&mut tx, &mut outbox, account, (INVOICE_CREATED, id)).await?;
        push_invoice(&mut tx, &mut outbox, account, (INVOICE_FINALIZED, id)).await?;
        if invoice.status == Status::Paid {
            push_invoice(&mut tx, &mut outbox, account, (INVOICE_PAID, id)).await?;
        }
        push(
            &mut outbox,
            (CREDIT_PURCHASE_CREATED, purchase.id.as_str()),
            &purchase,
        )?;
        if let Some(event) = triggered {
            push(
                &mut outbox,
                (AUTO_TOP_UP_TRIGGERED, event.auto_top_up.id.as_str()),
                event,
            )?;
        }
        let now_us = to_micros(purchase.created);
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, purchase).await?)
    }

    /// One purchase.
    pub async fn purchase(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<CreditPurchase>, InvoicingError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "credit_purchases", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(purchase).transpose()
    }

    /// The purchase an invoice was made for, if any.
    pub async fn purchase_of_invoice(
        &self,
        account: &str,
        invoice: &str,
    ) -> Result<Option<CreditPurchase>, InvoicingError> {
        let sql =
            format!("SELECT {COLUMNS} FROM credit_purchases WHERE account = $1 AND invoice = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(invoice)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(purchase).transpose()
    }

    /// A page of purchases, newest first, optionally of one customer.
    pub async fn list_purchases(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<CreditPurchase>, String), InvoicingError> {
        let rows = Conditions::new("account", account)
            .eq("customer", customer)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM credit_purchases"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let purchases = rows.iter().map(purchase).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(purchases, |p| &p.id))
    }

    /// Moves a purchase from `from` to `to` (recording its grant), with the
    /// event `event` when given; false when it was not in `from` (another
    /// caller moved it first).
    pub async fn move_purchase(
        &self,
        account: &str,
        id: &str,
        (from, to): (PurchaseStatus, PurchaseStatus),
        grant: Option<&str>,
        event: Option<&str>,
        now_us: i64,
    ) -> Result<bool, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE credit_purchases SET status = $1, credit_grant = COALESCE(credit_grant, $2) \
             WHERE account = $3 AND id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(grant)
        .bind(account)
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved && let Some(event_type) = event {
            let row = billing_db::sql::one_of_account(COLUMNS, "credit_purchases", account, id)
                .fetch_one(&mut *tx)
                .await?;
            let mut outbox = Outbox::new();
            let moved = purchase(&row)?;
            push(&mut outbox, (event_type, id), &moved)?;
            if to == PurchaseStatus::Void
                && let Some(top_up) = &moved.auto_top_up
            {
                // A top-up invoice voided unpaid: the top-up stops buying.
                let reason = format!(
                    "the invoice {} of its purchase {id} was voided unpaid",
                    moved.invoice
                );
                super::top_ups::disable(&mut tx, &mut outbox, account, top_up, &reason, now_us)
                    .await?;
            }
            outbox
                .write(&mut tx, self.db.backend(), account, now_us)
                .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Purchases (any account) whose saga may have a step left: processing,
    /// or pending payment with their invoice paid or void.
    pub async fn open_purchases(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String)>, InvoicingError> {
        let mut found: Vec<(String, String)> = sqlx::query_as(
            "SELECT account, id FROM credit_purchases WHERE status = 'processing' ORDER BY account, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        let settled: Vec<(String, String)> = sqlx::query_as(
            "SELECT p.account, p.id FROM credit_purchases p JOIN invoices i \
             ON i.account = p.account AND i.id = p.invoice \
             WHERE p.status = 'pending_payment' AND i.status IN ('paid', 'void') \
             ORDER BY p.account, p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        found.extend(settled);
        Ok(found)
    }
}
