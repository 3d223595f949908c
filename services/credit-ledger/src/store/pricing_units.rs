//! Custom pricing units.

use billing_db::idempotency::IdempotencyKey;
use billing_db::sql::Conditions;
use billing_money::{Conversion, Currency};
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
    /// Its rate in money, if it converts.
    #[serde(default)]
    pub conversion: Option<Conversion>,
}

/// UpdatePricingUnit's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitChanges {
    /// A new name.
    pub display_name: Option<String>,
    /// A new rate (`Some(None)` removes it).
    pub conversion: Option<Option<Conversion>>,
}

const UNIT_COLUMNS: &str =
    "id, display_name, scale, created_us, conversion_currency, conversion_unit_amount";

fn unit(row: &AnyRow) -> Result<PricingUnit, LedgerError> {
    let scale: i64 = row.try_get(2)?;
    let currency: Option<String> = row.try_get(4)?;
    let amount: Option<String> = row.try_get(5)?;
    let conversion = match (currency, amount) {
        (Some(currency), Some(amount)) => Some(Conversion {
            currency: Currency::parse(&currency)
                .map_err(|e| LedgerError::Corrupt(format!("conversion currency: {e}")))?,
            unit_amount: billing_money::parse_decimal(&amount)
                .map_err(|e| LedgerError::Corrupt(format!("conversion rate: {e}")))?,
        }),
        _ => None,
    };
    Ok(PricingUnit {
        id: row.try_get(0)?,
        display_name: row.try_get(1)?,
        scale: u32::try_from(scale).map_err(|_| LedgerError::Corrupt(format!("scale {scale}")))?,
        created: from_micros(row.try_get(3)?),
        conversion,
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
            "INSERT INTO pricing_units (account, id, display_name, scale, created_us, conversion_currency, \
             conversion_unit_amount) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(account)
        .bind(&unit.id)
        .bind(&unit.display_name)
        .bind(i64::from(unit.scale))
        .bind(to_micros(unit.created))
        .bind(unit.conversion.map(|c| c.currency.code().to_owned()))
        .bind(unit.conversion.map(|c| c.unit_amount.to_string()))
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
        let row = billing_db::sql::one_of_account(UNIT_COLUMNS, "pricing_units", account, id)
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
                &format!("SELECT {UNIT_COLUMNS} FROM pricing_units"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let units = rows.iter().map(unit).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(units, |u| &u.id))
    }

    /// Applies `changes` to a pricing unit; None when it does not exist.
    pub async fn update_pricing_unit(
        &self,
        account: &str,
        id: &str,
        changes: UnitChanges,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Option<PricingUnit>, LedgerError> {
        let mut tx = match self.begin(account, key).await? {
            Begun::Replay(stored) => return Ok(Some(stored)),
            Begun::Fresh(tx) => tx,
        };
        let sql = format!(
            "SELECT {UNIT_COLUMNS} FROM pricing_units WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut unit = unit(&row)?;
        if let Some(name) = changes.display_name {
            unit.display_name = name;
        }
        if let Some(conversion) = changes.conversion {
            unit.conversion = conversion;
        }
        sqlx::query(
            "UPDATE pricing_units SET display_name = $1, conversion_currency = $2, conversion_unit_amount = $3 \
             WHERE account = $4 AND id = $5",
        )
        .bind(&unit.display_name)
        .bind(unit.conversion.map(|c| c.currency.code().to_owned()))
        .bind(unit.conversion.map(|c| c.unit_amount.to_string()))
        .bind(account)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.finish(tx, account, key, to_micros(now), unit)
            .await
            .map(Some)
    }
}
