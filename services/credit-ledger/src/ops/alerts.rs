//! Balance alerts: create, read, list, delete, and their state for the
//! balance summary (DESIGN.md §10). The alerts fire in the store, with the
//! changes that move balances.

use billing_db::idempotency::IdempotencyKey;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;

use super::Ledger;
use crate::domain::alert::BalanceAlert;
use crate::domain::validate::AmountInput;
use crate::error::LedgerError;
use crate::store::AlertStatus;

/// A CreateBalanceAlert request, checked but with its unit not yet resolved.
#[derive(Debug, Clone)]
pub struct AlertInput {
    /// The customer watched; `None` for every customer.
    pub customer: Option<String>,
    /// The threshold.
    pub threshold: AmountInput,
    /// Title.
    pub title: String,
}

impl Ledger {
    /// Creates an alert (a customer's must be one invoicing knows).
    pub async fn create_alert(
        &self,
        account: &str,
        input: AlertInput,
        key: Option<&IdempotencyKey>,
    ) -> Result<BalanceAlert, LedgerError> {
        if let (Some(customers), Some(customer)) = (&self.customers, &input.customer) {
            customers.check(account, customer).await?;
        }
        let scale = match input.threshold.pricing_unit() {
            Some(id) => self.unit_scale(account, id).await?,
            None => None,
        };
        let (asset, threshold) = input
            .threshold
            .resolve("threshold", scale)
            .map_err(|v| LedgerError::fields(vec![v]))?;
        let alert = BalanceAlert {
            id: billing_server::ids::new_id("balalrt"),
            customer: input.customer,
            asset,
            threshold,
            title: input.title,
            created: self.clock.now(),
        };
        self.store.create_alert(account, alert, key).await
    }

    /// One alert.
    pub async fn alert(&self, account: &str, id: &str) -> Result<BalanceAlert, LedgerError> {
        self.store
            .alert(account, id)
            .await?
            .ok_or_else(|| LedgerError::not_found("balance alert", id))
    }

    /// A page of alerts.
    pub async fn list_alerts(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<BalanceAlert>, String), LedgerError> {
        self.store.list_alerts(account, customer, page).await
    }

    /// Deletes an alert.
    pub async fn delete_alert(&self, account: &str, id: &str) -> Result<BalanceAlert, LedgerError> {
        self.store.delete_alert(account, id).await
    }

    /// The customer's balances as last evaluated, with their alerts.
    pub async fn alert_status(
        &self,
        account: &str,
        customer: &str,
    ) -> Result<Vec<AlertStatus>, LedgerError> {
        self.store.alert_status(account, customer).await
    }
}
