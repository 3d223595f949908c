//! The ledger calls of the credit lifecycle: allocation grants, their
//! rollover and their expiry on cancel. Each carries a request id derived
//! from what it does, so a repeated call returns the first one's result.

use std::collections::BTreeMap;

use billing_money::{Asset, Currency, Decimal};
use billing_proto::ledger::v1 as ledger;
use billing_server::time::{from_proto, to_proto};
use chrono::{DateTime, Utc};
use tonic::Code;
use tonic_types::StatusExt;

use super::{LEDGER, Upstream, upstream_error};
use crate::error::InvoicingError;

/// What created a grant invoicing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A period's allocation.
    Allocation,
    /// A period's rollover.
    Rollover,
    /// A credit purchase.
    Purchase,
}

/// Where a grant invoicing asks for comes from.
#[derive(Debug, Clone)]
pub struct GrantSource {
    /// What created it.
    pub kind: GrantKind,
    /// `sub_…` (allocation, rollover).
    pub subscription: String,
    /// Position of the allocation.
    pub allocation: u32,
    /// Start of the period (allocation, rollover).
    pub period_start: Option<DateTime<Utc>>,
    /// `cpur_…` (purchase).
    pub credit_purchase: String,
    /// The purchase's invoice.
    pub invoice: String,
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
    /// Paid (a purchase) rather than promotional.
    pub paid: bool,
    /// The currency and minor units per whole credit of bought credits.
    pub cost_basis: Option<(Currency, Decimal)>,
    /// Usable only once activated.
    pub pending_payment: bool,
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
            shared_with_descendants: false,
            request_id: request_id.to_owned(),
            customer: self.customer.clone(),
            name: self.name.clone(),
            amount: Some(billing_server::amount::to_proto(&self.asset, self.amount)),
            applicability_config: Some(ledger::ApplicabilityConfig { scope: Some(scope) }),
            category: if self.paid {
                ledger::CreditGrantCategory::Paid
            } else {
                ledger::CreditGrantCategory::Promotional
            }
            .into(),
            effective_at: Some(to_proto(self.effective_at)),
            expires_at: self.expires_at.map(to_proto),
            priority: Some(self.priority),
            metadata: self.metadata.clone(),
            source: Some(ledger::CreditGrantSource {
                r#type: match self.source.kind {
                    GrantKind::Allocation => ledger::CreditGrantSourceType::Allocation,
                    GrantKind::Rollover => ledger::CreditGrantSourceType::Rollover,
                    GrantKind::Purchase => ledger::CreditGrantSourceType::Purchase,
                }
                .into(),
                subscription: self.source.subscription.clone(),
                allocation: self.source.allocation,
                period_start: self.source.period_start.map(to_proto),
                credit_purchase: self.source.credit_purchase.clone(),
                invoice: self.source.invoice.clone(),
            }),
            cost_basis: self
                .cost_basis
                .as_ref()
                .map(|(currency, unit_amount)| ledger::CostBasis {
                    currency: currency.code().to_owned(),
                    unit_amount_decimal: unit_amount.normalize().to_string(),
                }),
            pending_payment: self.pending_payment,
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

    /// ActivateCreditGrant under `request_id`.
    pub async fn activate_grant(
        &self,
        account: &str,
        request_id: &str,
        grant: &str,
    ) -> Result<(), InvoicingError> {
        let request = self.request(
            account,
            ledger::ActivateCreditGrantRequest {
                request_id: request_id.to_owned(),
                id: grant.to_owned(),
            },
        )?;
        self.ledger
            .clone()
            .activate_credit_grant(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?;
        Ok(())
    }

    /// Voids a grant under `request_id`; one whose credits were already
    /// applied (net-terms credits, usable before payment) has its remainder
    /// expired instead. A grant already voided is left as it is.
    pub async fn void_grant(
        &self,
        account: &str,
        request_id: &str,
        grant: &str,
    ) -> Result<(), InvoicingError> {
        let request = self.request(
            account,
            ledger::VoidCreditGrantRequest {
                request_id: request_id.to_owned(),
                id: grant.to_owned(),
            },
        )?;
        let refused = match self.ledger.clone().void_credit_grant(request).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == Code::FailedPrecondition => status,
            Err(status) => return Err(upstream_error(LEDGER, status)),
        };
        let reason = refused
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
            .unwrap_or_default();
        if reason == "GRANT_VOIDED" {
            return Ok(());
        }
        let request = self.request(
            account,
            ledger::ExpireCreditGrantRequest {
                request_id: format!("{request_id}:expire"),
                id: grant.to_owned(),
            },
        )?;
        match self.ledger.clone().expire_credit_grant(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
            Err(status) => Err(upstream_error(LEDGER, status)),
        }
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
