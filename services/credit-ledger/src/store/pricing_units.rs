//! Custom pricing units.

use billing_db::idempotency::IdempotencyKey;
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Begun, Store};
use crate::error::LedgerError;

/// A pricing unit as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingUnit {
    /// `pu_…`
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// 0 to 9.
    pub scale: u32,
    /// Created.
    pub created: DateTime<Utc>,
}

fn unit(row: &AnyRow) -> Result<PricingUnit, LedgerError> {
    let scale: i64 = row.try_get(2)?;
    Ok(PricingUnit {
        id: row.try_get(0)?,
        display_name: row.try_get(1)?,
        scale: u32::try_from(scale).map_err(|_| LedgerError::Corrupt(format!("scale {scale}")))?,
        created: from_micros(row.try_get(3)?),
    })
}

impl Store {
    /// Inserts a pricing unit.
    pub async fn create_pricing_unit(
        &self,
        account: &str,
        unit: PricingUnit,
        key: Option<&IdempotencyKey>,
    ) -> Result<PricingUnit, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO pricing_units (account, id, display_name, scale, created_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account)
        .bind(&unit.id)
        .bind(&unit.display_name)
        .bind(i64::from(unit.scale))
        .bind(to_micros(unit.created))
        .execute(&mut *tx)
        .await?;
        self.finish(tx, account, key, to_micros(unit.created), unit)
            .await
    }

    /// One pricing unit, if it exists in the account.
    pub async fn pricing_unit(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<PricingUnit>, LedgerError> {
        let row = sqlx::query(
            "SELECT id, display_name, scale, created_us FROM pricing_units WHERE account = $1 AND id = $2",
        )
        .bind(account)
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(unit).transpose()
    }

    /// A page of pricing units, newest first.
    pub async fn list_pricing_units(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<PricingUnit>, String), LedgerError> {
        let rows = Conditions::new("account", account)
            .newest_first(
                "SELECT id, display_name, scale, created_us FROM pricing_units",
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let units = rows.iter().map(unit).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(units, |u| &u.id))
    }
}
