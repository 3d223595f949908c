//! What auto top-ups need from the ledger: its `customer.credit_balance_dropped`
//! events (read from a cursor up to now), balance alerts at their
//! thresholds, and a customer's available and pending balances.

use billing_money::Asset;
use billing_proto::events::v1 as events;
use billing_proto::ledger::v1 as ledger;
use futures_util::StreamExt;
use tonic::Code;

use super::{LEDGER, Upstream, upstream_error};
use crate::domain::realtime::Credits;
use crate::error::InvoicingError;

/// The ledger event an auto top-up reacts to.
pub const BALANCE_DROPPED: &str = "customer.credit_balance_dropped";

/// A `customer.credit_balance_dropped` event of the ledger's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEvent {
    /// `evt_…`: the purchase's request id.
    pub id: String,
    /// Where the feed resumes after it.
    pub cursor: String,
    /// `cus_…`
    pub customer: String,
    /// The asset's key (currency code or `pu_…`).
    pub asset: String,
    /// The alert that crossed (`balalrt_…`).
    pub alert: String,
}

fn asset_key(amount: Option<&billing_proto::common::v1::Amount>) -> String {
    use billing_proto::common::v1::amount::Kind;
    match amount.and_then(|a| a.kind.as_ref()) {
        Some(Kind::Monetary(money)) => money.currency.clone(),
        Some(Kind::CustomPricingUnit(unit)) => unit.id.clone(),
        None => String::new(),
    }
}

impl Upstream {
    /// The account's `customer.credit_balance_dropped` events after
    /// `cursor` (from the oldest kept without one), up to now.
    pub async fn dropped_events(
        &self,
        account: &str,
        cursor: Option<String>,
    ) -> Result<Vec<DroppedEvent>, InvoicingError> {
        let request = self.request(
            account,
            events::WatchEventsRequest {
                after_cursor: cursor.unwrap_or_default(),
                types: vec![BALANCE_DROPPED.to_owned()],
                until_caught_up: true,
            },
        )?;
        let mut stream = self
            .ledger_events
            .clone()
            .watch_events(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner();
        let mut found = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|s| upstream_error(LEDGER, s))?;
            for event in batch.events {
                let Some(events::event::Data::CreditBalanceAlert(alert)) = &event.data else {
                    continue;
                };
                found.push(DroppedEvent {
                    id: event.id.clone(),
                    cursor: event.cursor.clone(),
                    customer: alert.customer.clone(),
                    asset: asset_key(alert.available_balance.as_ref()),
                    alert: alert
                        .balance_alert
                        .as_ref()
                        .map(|a| a.id.clone())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(found)
    }

    /// CreateBalanceAlert for one customer at `threshold` of `asset`.
    pub async fn create_alert(
        &self,
        account: &str,
        request_id: &str,
        customer: &str,
        (asset, threshold): (&Asset, i64),
    ) -> Result<String, InvoicingError> {
        let request = self.request(
            account,
            ledger::CreateBalanceAlertRequest {
                request_id: request_id.to_owned(),
                customer: customer.to_owned(),
                threshold: Some(billing_server::amount::to_proto(asset, threshold)),
                title: "Auto top-up".to_owned(),
            },
        )?;
        let alert = self
            .ledger
            .clone()
            .create_balance_alert(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner()
            .balance_alert
            .ok_or_else(|| InvoicingError::Corrupt("CreateBalanceAlert without an alert".into()))?;
        Ok(alert.id)
    }

    /// DeleteBalanceAlert; an alert already gone is fine.
    pub async fn delete_alert(&self, account: &str, id: &str) -> Result<(), InvoicingError> {
        let request = self.request(
            account,
            ledger::DeleteBalanceAlertRequest { id: id.to_owned() },
        )?;
        match self.ledger.clone().delete_balance_alert(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(upstream_error(LEDGER, status)),
        }
    }

    /// The customer's credits of the asset `asset` (all 0 without any).
    pub async fn balance(
        &self,
        account: &str,
        customer: &str,
        asset: &Asset,
    ) -> Result<Credits, InvoicingError> {
        Ok(self
            .credits(account, (customer, &[]), &[])
            .await?
            .credits
            .into_iter()
            .find(|(of, _)| of == asset)
            .map(|(_, credits)| credits)
            .unwrap_or_default())
    }
}
