//! Customers.

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::events::write_one;
use crate::domain::customer::{CUSTOMER_CREATED, CUSTOMER_UPDATED, Customer, CustomerChanges};
use crate::error::InvoicingError;

const COLUMNS: &str = "id, external_id, name, email, metadata, created_us";

fn customer(row: &AnyRow) -> Result<Customer, InvoicingError> {
    let metadata: String = row.try_get(4)?;
    Ok(Customer {
        id: row.try_get(0)?,
        external_id: row.try_get(1)?,
        name: row.try_get(2)?,
        email: row.try_get(3)?,
        metadata: serde_json::from_str(&metadata)?,
        created: from_micros(row.try_get(5)?),
    })
}

fn external_id_in_use(error: sqlx::Error, external_id: Option<&str>) -> InvoicingError {
    match external_id {
        Some(id) if billing_db::is_unique_violation(&error) => {
            InvoicingError::ExternalIdInUse(id.to_owned())
        }
        _ => error.into(),
    }
}

impl Store {
    /// Inserts a customer; the external id must be free.
    pub async fn create_customer(
        &self,
        account: &str,
        customer: Customer,
        key: Option<&IdempotencyKey>,
    ) -> Result<Customer, InvoicingError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO customers (account, id, external_id, name, email, metadata, created_us, updated_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(account)
        .bind(&customer.id)
        .bind(customer.external_id.as_deref())
        .bind(&customer.name)
        .bind(&customer.email)
        .bind(serde_json::to_string(&customer.metadata)?)
        .bind(to_micros(customer.created))
        .execute(&mut *tx)
        .await
        .map_err(|e| external_id_in_use(e, customer.external_id.as_deref()))?;
        let now_us = to_micros(customer.created);
        let event = (CUSTOMER_CREATED, customer.id.as_str());
        write_one(
            &mut tx,
            self.db.backend(),
            account,
            event,
            &customer,
            now_us,
        )
        .await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, customer).await?)
    }

    /// One customer by `cus_…` id or external id (the id wins). Two lookups,
    /// each on its own unique index: `id = $2 OR external_id = $2` is planned
    /// as a scan of the account's customers.
    pub async fn customer(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<Customer>, InvoicingError> {
        let sql = format!(
            "SELECT {COLUMNS}, 0 AS rank FROM customers WHERE account = $1 AND id = $2 \
             UNION ALL \
             SELECT {COLUMNS}, 1 AS rank FROM customers WHERE account = $1 AND external_id = $2 \
             ORDER BY rank LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(customer).transpose()
    }

    /// A page of customers, newest first.
    pub async fn list_customers(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Customer>, String), InvoicingError> {
        let rows = Conditions::new("account", account)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM customers"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let customers = rows.iter().map(customer).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(customers, |c| &c.id))
    }

    /// Locks a customer, applies the change, saves it.
    pub async fn update_customer(
        &self,
        account: &str,
        id: &str,
        changes: CustomerChanges,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Customer, InvoicingError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM customers WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut found = row
            .as_ref()
            .map(customer)
            .transpose()?
            .ok_or_else(|| InvoicingError::not_found("customer", id))?;
        changes.apply(&mut found).map_err(InvoicingError::fields)?;
        sqlx::query(
            "UPDATE customers SET name = $1, email = $2, metadata = $3, updated_us = $4 WHERE account = $5 AND id = $6",
        )
        .bind(&found.name)
        .bind(&found.email)
        .bind(serde_json::to_string(&found.metadata)?)
        .bind(to_micros(now))
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let now_us = to_micros(now);
        let event = (CUSTOMER_UPDATED, found.id.as_str());
        write_one(&mut tx, self.db.backend(), account, event, &found, now_us).await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, found).await?)
    }
}
