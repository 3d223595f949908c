//! Prices.

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_money::Asset;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::domain::price::Price;
use crate::error::InvoicingError;

const COLUMNS: &str = "id, asset, asset_scale, meter, pricing, nickname, status, created_us";

fn price(row: &AnyRow) -> Result<Price, InvoicingError> {
    let asset: String = row.try_get(1)?;
    let scale: i64 = row.try_get(2)?;
    let pricing: String = row.try_get(4)?;
    let status: String = row.try_get(6)?;
    let scale =
        u32::try_from(scale).map_err(|_| InvoicingError::Corrupt(format!("scale {scale}")))?;
    Ok(Price {
        id: row.try_get(0)?,
        asset: Asset::from_key(&asset, scale)?,
        meter: row.try_get(3)?,
        pricing: serde_json::from_str(&pricing)?,
        nickname: row.try_get(5)?,
        active: status == "active",
        created: from_micros(row.try_get(7)?),
    })
}

impl Store {
    /// Inserts a price.
    pub async fn create_price(
        &self,
        account: &str,
        price: Price,
        key: Option<&IdempotencyKey>,
    ) -> Result<Price, InvoicingError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO prices (account, id, asset, asset_scale, meter, pricing, nickname, status, created_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
        )
        .bind(account)
        .bind(&price.id)
        .bind(price.asset.key())
        .bind(i64::from(price.asset.scale()))
        .bind(&price.meter)
        .bind(serde_json::to_string(&price.pricing)?)
        .bind(&price.nickname)
        .bind(to_micros(price.created))
        .execute(&mut *tx)
        .await?;
        let now_us = to_micros(price.created);
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, price).await?)
    }

    /// One price.
    pub async fn price(&self, account: &str, id: &str) -> Result<Option<Price>, InvoicingError> {
        let row = billing_db::sql::one_of_account(COLUMNS, "prices", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(price).transpose()
    }

    /// The prices with these ids (missing ones are left out).
    pub async fn prices(&self, account: &str, ids: &[&str]) -> Result<Vec<Price>, InvoicingError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM prices WHERE account = $1 AND id IN ({})",
            billing_db::sql::list(ids.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(price).collect()
    }

    /// A page of prices, newest first.
    pub async fn list_prices(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Price>, String), InvoicingError> {
        let rows = Conditions::new("account", account)
            .newest_first(
                &format!("SELECT {COLUMNS} FROM prices"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let prices = rows.iter().map(price).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(prices, |p| &p.id))
    }

    /// Marks a price inactive (idempotent: an inactive price stays inactive).
    pub async fn deactivate_price(&self, account: &str, id: &str) -> Result<Price, InvoicingError> {
        let mut tx = self.db.begin_write().await?;
        let changed =
            sqlx::query("UPDATE prices SET status = 'inactive' WHERE account = $1 AND id = $2")
                .bind(account)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        if changed == 0 {
            return Err(InvoicingError::not_found("price", id));
        }
        self.price(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("price", id))
    }
}
