//! The ledger calls of the credit lifecycle: allocation grants, their
//! rollover and their expiry on cancel. Each carries a request id derived
//! from what it does, so a repeated call returns the first one's result.

use std::collections::BTreeMap;

use billing_money::Asset;
use billing_proto::ledger::v1 as ledger;
use billing_server::time::{from_proto, to_proto};
use chrono::{DateTime, Utc};
use tonic::Code;

use super::{LEDGER, Upstream, upstream_error};
use crate::error::InvoicingError;

/// What a subscription's grant is for.
#[derive(Debug, Clone)]
pub struct GrantSource {
    /// Allocation or rollover.
    pub rollover: bool,
    /// `sub_…`
    pub subscription: String,
    /// Position of the allocation.
    pub allocation: u32,
    /// Start of the period.
    pub period_start: DateTime<Utc>,
}

/// A grant invoicing asks the ledger for.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    /// `cus_…`
    pub customer: String,
    /// Shown in lists.
    pub name: String,
    /// What it is in.
    pub asset: Asset,
    /// Smallest units (for a rollover: the cap).
    pub amount: i64,
    /// Prices it pays for; empty: every metered price.
    pub prices: Vec<String>,
    /// 0 to 100.
    pub priority: u32,
    /// Usable from.
    pub effective_at: DateTime<Utc>,
    /// Usable until.
    pub expires_at: Option<DateTime<Utc>>,
    /// Free-form.
    pub metadata: BTreeMap<String, String>,
    /// Where it comes from.
    pub source: GrantSource,
}

impl GrantSpec {
    fn request(&self, request_id: &str) -> ledger::CreateCreditGrantRequest {
        let scope = if self.prices.is_empty() {
            ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: Vec::new(),
            }
        } else {
            ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Unspecified.into(),
                prices: self.prices.clone(),
            }
        };
        ledger::CreateCreditGrantRequest {
            request_id: request_id.to_owned(),
            customer: self.customer.clone(),
            name: self.name.clone(),
            amount: Some(billing_server::amount::to_proto(&self.asset, self.amount)),
            applicability_config: Some(ledger::ApplicabilityConfig { scope: Some(scope) }),
            category: ledger::CreditGrantCategory::Promotional.into(),
            effective_at: Some(to_proto(self.effective_at)),
            expires_at: self.expires_at.map(to_proto),
            priority: Some(self.priority),
            metadata: self.metadata.clone(),
            source: Some(ledger::CreditGrantSource {
                r#type: if self.source.rollover {
                    ledger::CreditGrantSourceType::Rollover
                } else {
                    ledger::CreditGrantSourceType::Allocation
                }
                .into(),
                subscription: self.source.subscription.clone(),
                allocation: self.source.allocation,
                period_start: Some(to_proto(self.source.period_start)),
            }),
        }
    }
}

impl Upstream {
    /// CreateCreditGrant under `request_id`; the grant's id.
    pub async fn create_grant(
        &self,
        account: &str,
        request_id: &str,
        spec: &GrantSpec,
    ) -> Result<String, InvoicingError> {
        let request = self.request(account, spec.request(request_id))?;
        let grant = self
            .ledger
            .clone()
            .create_credit_grant(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner()
            .credit_grant
            .ok_or_else(|| InvoicingError::Corrupt("CreateCreditGrant without a grant".into()))?;
        Ok(grant.id)
    }

    /// RolloverCreditGrants under `request_id`: the carried grant's id, if
    /// anything was left.
    pub async fn rollover_grants(
        &self,
        account: &str,
        request_id: &str,
        grants: Vec<String>,
        carried: &GrantSpec,
    ) -> Result<Option<String>, InvoicingError> {
        let message = ledger::RolloverCreditGrantsRequest {
            request_id: request_id.to_owned(),
            credit_grants: grants,
            carried: Some(carried.request("")),
        };
        let request = self.request(account, message)?;
        let response = self
            .ledger
            .clone()
            .rollover_credit_grants(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner();
        Ok(response.carried.map(|g| g.id))
    }

    /// Moves a grant's expiry to `at` unless it already expires by then
    /// (a voided grant, or one past its expiry, is left alone).
    pub async fn expire_grant_by(
        &self,
        account: &str,
        grant: &str,
        at: DateTime<Utc>,
    ) -> Result<(), InvoicingError> {
        let request = self.request(
            account,
            ledger::GetCreditGrantRequest {
                id: grant.to_owned(),
            },
        )?;
        let found = self
            .ledger
            .clone()
            .get_credit_grant(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner()
            .credit_grant
            .ok_or_else(|| InvoicingError::Corrupt("GetCreditGrant without a grant".into()))?;
        let expires = found
            .expires_at
            .as_ref()
            .and_then(|t| from_proto(t, "expires_at").ok());
        if found.voided_at.is_some() || expires.is_some_and(|e| e <= at) {
            return Ok(());
        }
        let request = self.request(
            account,
            ledger::UpdateCreditGrantRequest {
                request_id: format!("expire-by:{grant}"),
                id: grant.to_owned(),
                name: None,
                expires_at: Some(to_proto(at)),
                clear_expires_at: false,
                metadata: BTreeMap::new(),
            },
        )?;
        match self.ledger.clone().update_credit_grant(request).await {
            Ok(_) => Ok(()),
            // Expired or voided meanwhile: nothing left to expire.
            Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
            Err(status) => Err(upstream_error(LEDGER, status)),
        }
    }
}
