//! Customers and prices.

use std::collections::BTreeMap;

use billing_db::idempotency::IdempotencyKey;
use billing_money::{Asset, Currency};
use billing_server::ids::new_id;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;

use super::Invoicing;
use crate::domain::customer::{Customer, CustomerChanges};
use crate::domain::price::Price;
use crate::domain::pricing::Pricing;
use crate::error::InvoicingError;

/// A customer to create.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// Optional external id.
    pub external_id: Option<String>,
    /// Display name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Parent customer.
    pub parent: Option<String>,
}

/// The asset a new price is in.
#[derive(Debug, Clone)]
pub enum PriceAsset {
    /// Money.
    Currency(Currency),
    /// A ledger pricing unit (`pu_…`), whose scale is looked up.
    PricingUnit(String),
}

/// A price to create.
#[derive(Debug, Clone)]
pub struct NewPrice {
    /// Asset.
    pub asset: PriceAsset,
    /// `mtr_…`
    pub meter: String,
    /// Amount rules (validated).
    pub pricing: Pricing,
    /// Nickname.
    pub nickname: String,
}

impl Invoicing {
    /// Creates a customer.
    pub async fn create_customer(
        &self,
        account: &str,
        new: NewCustomer,
        key: Option<&IdempotencyKey>,
    ) -> Result<Customer, InvoicingError> {
        let customer = Customer {
            id: new_id("cus"),
            external_id: new.external_id,
            name: new.name,
            email: new.email,
            metadata: new.metadata,
            created: self.clock.now(),
            parent: new.parent,
        };
        self.store.create_customer(account, customer, key).await
    }

    /// One customer by id or external id.
    pub async fn customer(&self, account: &str, id: &str) -> Result<Customer, InvoicingError> {
        self.store
            .customer(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("customer", id))
    }

    /// A page of customers, or of those matching `query` (a bounded search).
    pub async fn list_customers(
        &self,
        account: &str,
        page: &PageRequest,
        query: Option<&str>,
    ) -> Result<(Vec<Customer>, String), InvoicingError> {
        match query {
            None => self.store.list_customers(account, page).await,
            Some(query) => self.store.search_customers(account, page, query).await,
        }
    }

    /// Changes a customer.
    pub async fn update_customer(
        &self,
        account: &str,
        id: &str,
        changes: CustomerChanges,
        key: Option<&IdempotencyKey>,
    ) -> Result<Customer, InvoicingError> {
        let now = self.clock.now();
        self.store
            .update_customer(account, id, changes, key, now)
            .await
    }

    /// Creates a price after checking its meter (and pricing unit) with the
    /// services that own them.
    pub async fn create_price(
        &self,
        account: &str,
        new: NewPrice,
        key: Option<&IdempotencyKey>,
    ) -> Result<Price, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        self.upstream.check_meter(account, &new.meter).await?;
        let asset = match new.asset {
            PriceAsset::Currency(currency) => Asset::Currency(currency),
            PriceAsset::PricingUnit(id) => {
                let scale = self.upstream.pricing_unit_scale(account, &id).await?;
                Asset::pricing_unit(id, scale)?
            }
        };
        let price = Price {
            id: new_id("price"),
            asset,
            meter: new.meter,
            pricing: new.pricing,
            nickname: new.nickname,
            active: true,
            created: self.clock.now(),
        };
        self.store.create_price(account, price, key).await
    }

    /// One price.
    pub async fn price(&self, account: &str, id: &str) -> Result<Price, InvoicingError> {
        self.store
            .price(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("price", id))
    }

    /// A page of prices.
    pub async fn list_prices(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Price>, String), InvoicingError> {
        self.store.list_prices(account, page).await
    }

    /// Deactivates a price; subscriptions that have it keep billing it.
    pub async fn deactivate_price(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Price, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let price = self.store.deactivate_price(account, id).await?;
        self.remember(account, key, price).await
    }
}
