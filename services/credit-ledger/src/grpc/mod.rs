//! `billing.ledger.v1.LedgerService` over the [`Ledger`].
//!
//! The only module that sees generated proto types: requests are converted
//! and checked in [`convert`], errors mapped in [`status`].

pub mod convert;
pub mod status;

use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_server::LedgerService;
use billing_server::auth::principal;
use billing_server::idempotent::idempotency_key;
use billing_server::page::PageRequest;
use billing_server::status::FieldViolation;
use billing_telemetry::record_ids;
use tonic::{Request, Response, Status};

use crate::domain::LedgerError;
use crate::domain::validate::check_reference;
use crate::ledger::Ledger;
use status::to_status;

/// The gRPC face of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerGrpc {
    ledger: Ledger,
}

impl LedgerGrpc {
    /// Serves `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    to_status(LedgerError::Invalid(violations))
}

fn page(page_size: i32, page_token: &str) -> Result<PageRequest, Status> {
    PageRequest::parse(page_size, page_token).map_err(|v| invalid(vec![v]))
}

fn required(value: &str, field: &str) -> Result<(), Status> {
    let mut out = Vec::new();
    check_reference(value, field, &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(invalid(out))
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_pricing_unit(
        &self,
        request: Request<pb::CreatePricingUnitRequest>,
    ) -> Result<Response<pb::CreatePricingUnitResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let mut out = Vec::new();
        crate::domain::validate::check_name(&body.display_name, "display_name", true, &mut out);
        if body.scale > billing_money::PRICING_UNIT_SCALE_MAX {
            out.push(FieldViolation::new("scale", "must be between 0 and 9"));
        }
        if !out.is_empty() {
            return Err(invalid(out));
        }
        let unit = self
            .ledger
            .create_pricing_unit(&account, body.display_name, body.scale, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreatePricingUnitResponse {
            pricing_unit: Some(convert::pricing_unit(&unit)),
        }))
    }
    async fn get_pricing_unit(
        &self,
        request: Request<pb::GetPricingUnitRequest>,
    ) -> Result<Response<pb::GetPricingUnitResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        required(&request.get_ref().id, "id")?;
        let unit = self
            .ledger
            .pricing_unit(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetPricingUnitResponse {
            pricing_unit: Some(convert::pricing_unit(&unit)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_pricing_units(
        &self,
        request: Request<pb::ListPricingUnitsRequest>,
    ) -> Result<Response<pb::ListPricingUnitsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.get_ref();
        let page = page(body.page_size, &body.page_token)?;
        let (units, next_page_token) = self
            .ledger
            .list_pricing_units(&account, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListPricingUnitsResponse {
            pricing_units: units.iter().map(convert::pricing_unit).collect(),
            next_page_token,
        }))
    }
    async fn create_credit_grant(
        &self,
        request: Request<pb::CreateCreditGrantRequest>,
    ) -> Result<Response<pb::CreateCreditGrantResponse>, Status> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let input = convert::grant_input(&body).map_err(invalid)?;
        let grant = self
            .ledger
            .create_grant(&account, input, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateCreditGrantResponse {
            credit_grant: Some(convert::grant(&grant, self.ledger.clock().now())),
        }))
    }
    async fn get_credit_grant(
        &self,
        request: Request<pb::GetCreditGrantRequest>,
    ) -> Result<Response<pb::GetCreditGrantResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        required(&request.get_ref().id, "id")?;
        let grant = self
            .ledger
            .grant(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetCreditGrantResponse {
            credit_grant: Some(convert::grant(&grant, self.ledger.clock().now())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_credit_grants(
        &self,
        request: Request<pb::ListCreditGrantsRequest>,
    ) -> Result<Response<pb::ListCreditGrantsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.get_ref();
        let page = page(body.page_size, &body.page_token)?;
        let customer = (!body.customer.is_empty()).then_some(body.customer.as_str());
        let (grants, next_page_token) = self
            .ledger
            .list_grants(&account, customer, &page)
            .await
            .map_err(to_status)?;
        let now = self.ledger.clock().now();
        Ok(Response::new(pb::ListCreditGrantsResponse {
            credit_grants: grants.iter().map(|g| convert::grant(g, now)).collect(),
            next_page_token,
        }))
    }
    async fn update_credit_grant(
        &self,
        request: Request<pb::UpdateCreditGrantRequest>,
    ) -> Result<Response<pb::UpdateCreditGrantResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let changes = convert::grant_changes(&body).map_err(invalid)?;
        let grant = self
            .ledger
            .update_grant(&account, &body.id, changes, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateCreditGrantResponse {
            credit_grant: Some(convert::grant(&grant, self.ledger.clock().now())),
        }))
    }
    async fn void_credit_grant(
        &self,
        request: Request<pb::VoidCreditGrantRequest>,
    ) -> Result<Response<pb::VoidCreditGrantResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let grant = self
            .ledger
            .void_grant(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::VoidCreditGrantResponse {
            credit_grant: Some(convert::grant(&grant, self.ledger.clock().now())),
        }))
    }
    async fn expire_credit_grant(
        &self,
        request: Request<pb::ExpireCreditGrantRequest>,
    ) -> Result<Response<pb::ExpireCreditGrantResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let grant = self
            .ledger
            .expire_grant(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ExpireCreditGrantResponse {
            credit_grant: Some(convert::grant(&grant, self.ledger.clock().now())),
        }))
    }
    async fn get_credit_balance_summary(
        &self,
        request: Request<pb::GetCreditBalanceSummaryRequest>,
    ) -> Result<Response<pb::GetCreditBalanceSummaryResponse>, Status> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        let account = principal(&request)?.account;
        let body = request.get_ref();
        required(&body.customer, "customer")?;
        let filter = convert::balance_filter(body.filter.as_ref()).map_err(invalid)?;
        let balances = self
            .ledger
            .balance_summary(&account, &body.customer, &filter)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetCreditBalanceSummaryResponse {
            customer: body.customer.clone(),
            balances: convert::balances(&balances),
        }))
    }
    async fn list_credit_balance_transactions(
        &self,
        request: Request<pb::ListCreditBalanceTransactionsRequest>,
    ) -> Result<Response<pb::ListCreditBalanceTransactionsResponse>, Status> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        let account = principal(&request)?.account;
        let body = request.get_ref();
        required(&body.customer, "customer")?;
        let page = page(body.page_size, &body.page_token)?;
        let grant = (!body.credit_grant.is_empty()).then_some(body.credit_grant.as_str());
        let (items, next_page_token) = self
            .ledger
            .list_transactions(&account, &body.customer, grant, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCreditBalanceTransactionsResponse {
            credit_balance_transactions: items.iter().map(convert::transaction).collect(),
            next_page_token,
        }))
    }

    async fn apply_credits(
        &self,
        request: Request<pb::ApplyCreditsRequest>,
    ) -> Result<Response<pb::ApplyCreditsResponse>, Status> {
        record_ids(&[
            ("invoice", request.get_ref().invoice.as_str()),
            ("customer", request.get_ref().customer.as_str()),
        ]);
        let principal = principal(&request)?;
        if !principal.can_apply_credits {
            return Err(to_status(LedgerError::PermissionDenied("ApplyCredits")));
        }
        let input = convert::apply_input(request.get_ref()).map_err(invalid)?;
        let outcome = self
            .ledger
            .apply_credits(&principal.account, input)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::apply_response(&outcome)))
    }
    async fn reverse_credits(
        &self,
        request: Request<pb::ReverseCreditsRequest>,
    ) -> Result<Response<pb::ReverseCreditsResponse>, Status> {
        record_ids(&[("invoice", request.get_ref().invoice.as_str())]);
        let principal = principal(&request)?;
        if !principal.can_apply_credits {
            return Err(to_status(LedgerError::PermissionDenied("ReverseCredits")));
        }
        required(&request.get_ref().invoice, "invoice")?;
        let reversal = self
            .ledger
            .reverse_credits(&principal.account, &request.get_ref().invoice)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::reverse_response(&reversal)))
    }

    #[tracing::instrument(skip_all)]
    async fn audit_ledger(
        &self,
        request: Request<pb::AuditLedgerRequest>,
    ) -> Result<Response<pb::AuditLedgerResponse>, Status> {
        let account = principal(&request)?.account;
        let report = self.ledger.audit(&account).await.map_err(to_status)?;
        Ok(Response::new(convert::audit_response(&report)))
    }
}
