//! Customers.

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_server::page::{PageRequest, token_before};
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use super::events::write_one;
use crate::domain::customer::{
    CUSTOMER_CREATED, CUSTOMER_UPDATED, Customer, CustomerChanges, HIERARCHY_DEPTH_MAX,
};
use crate::error::InvoicingError;

const COLUMNS: &str = "id, external_id, name, email, metadata, created_us, parent";

/// Most customers one search call looks at.
pub const SEARCH_WINDOW: i64 = 10_000;

/// Above every `cus_…` id (ids are ASCII), for a search from the newest.
const ID_ABOVE_ALL: &str = "\u{7f}";

/// `%query%` for LIKE, lowercased, with LIKE's own characters escaped.
fn contains_pattern(query: &str) -> String {
    let mut pattern = String::from("%");
    for c in query.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn customer(row: &AnyRow) -> Result<Customer, InvoicingError> {
    let metadata: String = row.try_get(4)?;
    Ok(Customer {
        id: row.try_get(0)?,
        external_id: row.try_get(1)?,
        name: row.try_get(2)?,
        email: row.try_get(3)?,
        metadata: serde_json::from_str(&metadata)?,
        created: from_micros(row.try_get(5)?),
        parent: row.try_get(6)?,
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
        if let Some(parent) = &customer.parent {
            self.check_parent(&mut tx, account, &customer.id, parent)
                .await?;
        }
        sqlx::query(
            "INSERT INTO customers (account, id, external_id, name, email, metadata, created_us, updated_us, \
             parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
        )
        .bind(account)
        .bind(&customer.id)
        .bind(customer.external_id.as_deref())
        .bind(&customer.name)
        .bind(&customer.email)
        .bind(serde_json::to_string(&customer.metadata)?)
        .bind(to_micros(customer.created))
        .bind(customer.parent.as_deref())
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

    /// A page of the customers whose name, e-mail, external id or id
    /// contains `query` (case-insensitive), newest first. Each call looks at no more than [`SEARCH_WINDOW`] customers (an
    /// index range below the cursor): when the window ends before the page
    /// fills, the token continues below the window.
    pub async fn search_customers(
        &self,
        account: &str,
        page: &PageRequest,
        query: &str,
    ) -> Result<(Vec<Customer>, String), InvoicingError> {
        let before = page.before_id.as_deref().unwrap_or(ID_ABOVE_ALL);
        // The window's last id: the SEARCH_WINDOW-th customer below the
        // cursor (an index-only walk), or None when fewer remain.
        let floor: Option<String> = sqlx::query_scalar(
            "SELECT id FROM customers WHERE account = $1 AND id < $2 \
             ORDER BY id DESC LIMIT 1 OFFSET $3",
        )
        .bind(account)
        .bind(before)
        .bind(SEARCH_WINDOW - 1)
        .fetch_optional(self.db.pool())
        .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM customers WHERE account = $1 AND id < $2 AND id >= $3 \
             AND (lower(name) LIKE $4 ESCAPE '\\' OR lower(email) LIKE $4 ESCAPE '\\' \
             OR lower(external_id) LIKE $4 ESCAPE '\\' OR lower(id) LIKE $4 ESCAPE '\\') \
             ORDER BY id DESC LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(before)
            .bind(floor.as_deref().unwrap_or(""))
            .bind(contains_pattern(query))
            .bind(page.fetch_limit())
            .fetch_all(self.db.pool())
            .await?;
        let customers = rows.iter().map(customer).collect::<Result<Vec<_>, _>>()?;
        let (customers, token) = page.finish(customers, |c| &c.id);
        match floor {
            Some(floor) if token.is_empty() => Ok((customers, token_before(&floor))),
            _ => Ok((customers, token)),
        }
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
        let moved = changes
            .parent
            .as_ref()
            .is_some_and(|parent| *parent != found.parent);
        changes.apply(&mut found).map_err(InvoicingError::fields)?;
        if moved && let Some(parent) = &found.parent {
            self.check_parent(&mut tx, account, &found.id, parent)
                .await?;
        }
        sqlx::query(
            "UPDATE customers SET name = $1, email = $2, metadata = $3, updated_us = $4, parent = $7 \
             WHERE account = $5 AND id = $6",
        )
        .bind(&found.name)
        .bind(&found.email)
        .bind(serde_json::to_string(&found.metadata)?)
        .bind(to_micros(now))
        .bind(account)
        .bind(id)
        .bind(found.parent.as_deref())
        .execute(&mut *tx)
        .await?;
        let now_us = to_micros(now);
        let event = (CUSTOMER_UPDATED, found.id.as_str());
        write_one(&mut tx, self.db.backend(), account, event, &found, now_us).await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, found).await?)
    }

    /// The customer's ancestors, nearest first (at most four).
    pub async fn ancestors(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<Vec<String>, InvoicingError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(chain(&mut conn, account, customer).await?.1)
    }

    /// Refuses `parent` for `customer` unless it is a customer of the
    /// account, not `customer` or one of its descendants, and the hierarchy
    /// stays at most [`HIERARCHY_DEPTH_MAX`] deep. On PostgreSQL the
    /// account's hierarchy changes one at a time (two concurrent moves
    /// could otherwise close a cycle).
    async fn check_parent(
        &self,
        tx: &mut billing_db::Tx,
        account: &str,
        customer: &str,
        parent: &str,
    ) -> Result<(), InvoicingError> {
        if self.db.backend() == billing_db::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(format!("customer hierarchy {account}"))
                .execute(&mut **tx)
                .await?;
        }
        let (found, above) = chain(tx, account, parent).await?;
        if !found {
            return Err(InvoicingError::not_found("customer", parent));
        }
        if parent == customer || above.iter().any(|a| a == customer) {
            return Err(InvoicingError::invalid(
                "parent",
                format!(
                    "{parent} is {customer} or one of its descendants: a hierarchy has no cycles"
                ),
            ));
        }
        // Levels: the parent's chain (it and its ancestors) plus the
        // customer's own subtree.
        let below = subtree_depth(tx, account, customer).await?;
        if above.len() + 1 + below > HIERARCHY_DEPTH_MAX {
            return Err(InvoicingError::invalid(
                "parent",
                format!("the hierarchy would be more than {HIERARCHY_DEPTH_MAX} customers deep"),
            ));
        }
        Ok(())
    }
}

/// Whether `customer` exists, and its ancestors nearest first (at most
/// [`HIERARCHY_DEPTH_MAX`]: one more than a valid hierarchy holds).
async fn chain(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    customer: &str,
) -> Result<(bool, Vec<String>), InvoicingError> {
    let mut ancestors = Vec::new();
    let mut next = customer.to_owned();
    let mut found = false;
    for level in 0..=HIERARCHY_DEPTH_MAX {
        let parent: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent FROM customers WHERE account = $1 AND id = $2")
                .bind(account)
                .bind(&next)
                .fetch_optional(&mut *conn)
                .await?;
        match parent {
            None => break,
            Some(parent) => {
                found |= level == 0;
                match parent {
                    Some(parent) if level < HIERARCHY_DEPTH_MAX => {
                        ancestors.push(parent.clone());
                        next = parent;
                    }
                    _ => break,
                }
            }
        }
    }
    Ok((found, ancestors))
}

/// Levels of `customer`'s subtree, itself included (1 for a leaf).
async fn subtree_depth(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    customer: &str,
) -> Result<usize, InvoicingError> {
    let mut level = vec![customer.to_owned()];
    let mut depth = 0;
    while !level.is_empty() && depth <= HIERARCHY_DEPTH_MAX {
        depth += 1;
        let sql = format!(
            "SELECT id FROM customers WHERE account = $1 AND parent IN ({})",
            billing_db::sql::list(level.len(), 2)
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(account);
        for id in &level {
            query = query.bind(id.as_str());
        }
        level = query.fetch_all(&mut *conn).await?;
    }
    Ok(depth)
}
