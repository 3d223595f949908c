//! Meters: create, read, list, change.

use billing_db::events::{NewEvent, Outbox};
use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::domain::meter::{Aggregation, Meter};
use crate::error::MeterError;

const METER_COLUMNS: &str = "id, event_name, display_name, aggregation, customer_key, value_key, status, created_us, updated_us";

fn meter(row: &AnyRow) -> Result<Meter, MeterError> {
    let aggregation: String = row.try_get(3)?;
    let status: String = row.try_get(6)?;
    Ok(Meter {
        id: row.try_get(0)?,
        event_name: row.try_get(1)?,
        display_name: row.try_get(2)?,
        aggregation: Aggregation::parse(&aggregation)
            .ok_or_else(|| MeterError::Corrupt(aggregation.clone()))?,
        customer_key: row.try_get(4)?,
        value_key: row.try_get(5)?,
        active: status == "active",
        created: from_micros(row.try_get(7)?),
        updated: from_micros(row.try_get(8)?),
    })
}

fn status(meter: &Meter) -> &'static str {
    if meter.active { "active" } else { "inactive" }
}

fn event_name_in_use(error: sqlx::Error, event_name: &str) -> MeterError {
    if billing_db::is_unique_violation(&error) {
        MeterError::EventNameInUse(event_name.to_owned())
    } else {
        error.into()
    }
}

impl Store {
    /// Inserts a meter; its event name must be free among active meters.
    pub async fn create_meter(
        &self,
        account: &str,
        meter: Meter,
        key: Option<&IdempotencyKey>,
    ) -> Result<Meter, MeterError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        sqlx::query(
            "INSERT INTO meters (account, id, event_name, display_name, aggregation, customer_key, value_key, \
             status, created_us, updated_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(account)
        .bind(&meter.id)
        .bind(&meter.event_name)
        .bind(&meter.display_name)
        .bind(meter.aggregation.as_str())
        .bind(&meter.customer_key)
        .bind(&meter.value_key)
        .bind(status(&meter))
        .bind(to_micros(meter.created))
        .bind(to_micros(meter.updated))
        .execute(&mut *tx)
        .await
        .map_err(|e| event_name_in_use(e, &meter.event_name))?;
        let now_us = to_micros(meter.created);
        let mut outbox = Outbox::new();
        meter_event(&mut outbox, METER_CREATED, &meter)?;
        outbox
            .write(&mut tx, self.db.backend(), account, now_us)
            .await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, meter).await?)
    }

    /// One meter.
    pub async fn meter(&self, account: &str, id: &str) -> Result<Option<Meter>, MeterError> {
        let row = billing_db::sql::one_of_account(METER_COLUMNS, "meters", account, id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(meter).transpose()
    }

    /// A page of meters, newest first.
    pub async fn list_meters(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Meter>, String), MeterError> {
        let rows = Conditions::new("account", account)
            .newest_first(
                &format!("SELECT {METER_COLUMNS} FROM meters"),
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let meters = rows.iter().map(meter).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(meters, |m| &m.id))
    }

    /// The account's active meters with these event names.
    pub async fn active_meters(
        &self,
        account: &str,
        event_names: &[&str],
    ) -> Result<Vec<Meter>, MeterError> {
        if event_names.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {METER_COLUMNS} FROM meters WHERE account = $1 AND status = 'active' AND event_name IN ({})",
            billing_db::sql::list(event_names.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for name in event_names {
            query = query.bind(*name);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(meter).collect()
    }

    /// Locks a meter, applies `change`, saves it.
    pub async fn change_meter(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Meter) -> Result<(), MeterError> + Send,
    ) -> Result<Meter, MeterError> {
        let mut tx = match idempotency::begin(&self.db, account, key).await? {
            Begun::Replay(stored) => return Ok(stored),
            Begun::Fresh(tx) => tx,
        };
        let sql = format!(
            "SELECT {METER_COLUMNS} FROM meters WHERE account = $1 AND id = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let mut found = row
            .as_ref()
            .map(meter)
            .transpose()?
            .ok_or_else(|| MeterError::not_found("meter", id))?;
        let was_active = found.active;
        change(&mut found)?;
        found.updated = now;
        sqlx::query("UPDATE meters SET display_name = $1, status = $2, updated_us = $3 WHERE account = $4 AND id = $5")
            .bind(&found.display_name)
            .bind(status(&found))
            .bind(to_micros(now))
            .bind(account)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| event_name_in_use(e, &found.event_name))?;
        let event_type = match (was_active, found.active) {
            (true, false) => METER_DEACTIVATED,
            (false, true) => METER_REACTIVATED,
            _ => METER_UPDATED,
        };
        let mut outbox = Outbox::new();
        meter_event(&mut outbox, event_type, &found)?;
        outbox
            .write(&mut tx, self.db.backend(), account, to_micros(now))
            .await?;
        Ok(idempotency::finish(&self.db, tx, account, key, to_micros(now), found).await?)
    }
}

/// A meter was created.
pub const METER_CREATED: &str = "meter.created";
/// A meter's display name changed.
pub const METER_UPDATED: &str = "meter.updated";
/// A meter stopped accepting events.
pub const METER_DEACTIVATED: &str = "meter.deactivated";
/// A meter accepts events again.
pub const METER_REACTIVATED: &str = "meter.reactivated";

/// Adds the event of `meter`'s new state to the change's outbox (`data`:
/// the meter as stored, turned into a `Meter` by the feed).
fn meter_event(outbox: &mut Outbox, event_type: &str, meter: &Meter) -> Result<(), MeterError> {
    let event = NewEvent {
        event_type,
        subject: &meter.id,
        data: serde_json::to_string(meter)?,
    };
    outbox.push(billing_server::ids::new_id("evt"), event);
    Ok(())
}
