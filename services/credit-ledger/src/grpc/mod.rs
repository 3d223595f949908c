//! `billing.ledger.v1.LedgerService` over the [`Ledger`].
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each handler calls one use case through
//! the shared handler shape (`billing_server::handler`).

pub mod convert;
pub mod status;

use billing_money::FieldViolation;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_server::{LedgerService, LedgerServiceServer};
use billing_server::auth::{AuthInterceptor, Principal};
use billing_server::handler::{invalid, mutation, optional, page, unary};
use billing_server::host::Routes;
use billing_telemetry::record_ids;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::domain::validate::check_reference;
use crate::error::LedgerError;
use crate::ops::Ledger;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.ledger.v1.LedgerService";

/// The routes of the ledger's port, behind `auth`, and the services they serve.
pub fn routes(ledger: &Ledger, max: usize, auth: AuthInterceptor) -> (Routes, Vec<&'static str>) {
    let service = LedgerServiceServer::new(LedgerGrpc {
        ledger: ledger.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    (
        Routes::new(InterceptedService::new(service, auth)),
        vec![SERVICE_NAME],
    )
}

/// The gRPC face of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerGrpc {
    ledger: Ledger,
}

/// A reference id the ledger keeps (customer, invoice, grant): present and bounded.
fn reference(value: &str, field: &str) -> Result<(), Status> {
    let mut out = Vec::new();
    check_reference(value, field, &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(invalid(out))
    }
}

/// ApplyCredits and ReverseCredits need the `apply_credits` scope.
fn may_apply(caller: &Principal, method: &'static str) -> Result<(), Status> {
    if caller.can_apply_credits {
        Ok(())
    } else {
        Err(LedgerError::PermissionDenied(method).into())
    }
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl LedgerService for LedgerGrpc {
    async fn create_pricing_unit(
        &self,
        request: Request<pb::CreatePricingUnitRequest>,
    ) -> Rpc<pb::CreatePricingUnitResponse> {
        mutation(request, |caller, body, key| async move {
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
                .create_pricing_unit(&caller.account, body.display_name, body.scale, key.as_ref())
                .await?;
            Ok(pb::CreatePricingUnitResponse {
                pricing_unit: Some(convert::pricing_unit(&unit)),
            })
        })
        .await
    }

    async fn get_pricing_unit(
        &self,
        request: Request<pb::GetPricingUnitRequest>,
    ) -> Rpc<pb::GetPricingUnitResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            reference(&body.id, "id")?;
            let unit = self.ledger.pricing_unit(&caller.account, &body.id).await?;
            Ok(pb::GetPricingUnitResponse {
                pricing_unit: Some(convert::pricing_unit(&unit)),
            })
        })
        .await
    }

    async fn list_pricing_units(
        &self,
        request: Request<pb::ListPricingUnitsRequest>,
    ) -> Rpc<pb::ListPricingUnitsResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let (units, next_page_token) = self
                .ledger
                .list_pricing_units(&caller.account, &page)
                .await?;
            let pricing_units = units.iter().map(convert::pricing_unit).collect();
            Ok(pb::ListPricingUnitsResponse {
                pricing_units,
                next_page_token,
            })
        })
        .await
    }

    async fn create_credit_grant(
        &self,
        request: Request<pb::CreateCreditGrantRequest>,
    ) -> Rpc<pb::CreateCreditGrantResponse> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        mutation(request, |caller, body, key| async move {
            let input = convert::grant_input(&body).map_err(invalid)?;
            let grant = self
                .ledger
                .create_grant(&caller.account, input, key.as_ref())
                .await?;
            Ok(pb::CreateCreditGrantResponse {
                credit_grant: Some(self.grant(&grant)),
            })
        })
        .await
    }

    async fn get_credit_grant(
        &self,
        request: Request<pb::GetCreditGrantRequest>,
    ) -> Rpc<pb::GetCreditGrantResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            reference(&body.id, "id")?;
            let grant = self.ledger.grant(&caller.account, &body.id).await?;
            Ok(pb::GetCreditGrantResponse {
                credit_grant: Some(self.grant(&grant)),
            })
        })
        .await
    }

    async fn list_credit_grants(
        &self,
        request: Request<pb::ListCreditGrantsRequest>,
    ) -> Rpc<pb::ListCreditGrantsResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let customer = optional(&body.customer);
            let (grants, next_page_token) = self
                .ledger
                .list_grants(&caller.account, customer, &page)
                .await?;
            let credit_grants = grants.iter().map(|g| self.grant(g)).collect();
            Ok(pb::ListCreditGrantsResponse {
                credit_grants,
                next_page_token,
            })
        })
        .await
    }

    async fn update_credit_grant(
        &self,
        request: Request<pb::UpdateCreditGrantRequest>,
    ) -> Rpc<pb::UpdateCreditGrantResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            reference(&body.id, "id")?;
            let changes = convert::grant_changes(&body).map_err(invalid)?;
            let grant = self
                .ledger
                .update_grant(&caller.account, &body.id, changes, key.as_ref())
                .await?;
            Ok(pb::UpdateCreditGrantResponse {
                credit_grant: Some(self.grant(&grant)),
            })
        })
        .await
    }

    async fn void_credit_grant(
        &self,
        request: Request<pb::VoidCreditGrantRequest>,
    ) -> Rpc<pb::VoidCreditGrantResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            reference(&body.id, "id")?;
            let grant = self
                .ledger
                .void_grant(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::VoidCreditGrantResponse {
                credit_grant: Some(self.grant(&grant)),
            })
        })
        .await
    }

    async fn expire_credit_grant(
        &self,
        request: Request<pb::ExpireCreditGrantRequest>,
    ) -> Rpc<pb::ExpireCreditGrantResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            reference(&body.id, "id")?;
            let grant = self
                .ledger
                .expire_grant(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::ExpireCreditGrantResponse {
                credit_grant: Some(self.grant(&grant)),
            })
        })
        .await
    }

    async fn get_credit_balance_summary(
        &self,
        request: Request<pb::GetCreditBalanceSummaryRequest>,
    ) -> Rpc<pb::GetCreditBalanceSummaryResponse> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        unary(request, |caller, body| async move {
            reference(&body.customer, "customer")?;
            let filter = convert::balance_filter(body.filter.as_ref()).map_err(invalid)?;
            let balances = self
                .ledger
                .balance_summary(&caller.account, &body.customer, &filter)
                .await?;
            let balances = convert::balances(&balances);
            Ok(pb::GetCreditBalanceSummaryResponse {
                customer: body.customer,
                balances,
            })
        })
        .await
    }

    async fn list_credit_balance_transactions(
        &self,
        request: Request<pb::ListCreditBalanceTransactionsRequest>,
    ) -> Rpc<pb::ListCreditBalanceTransactionsResponse> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        unary(request, |caller, body| async move {
            reference(&body.customer, "customer")?;
            let page = page(body.page_size, &body.page_token)?;
            let grant = optional(&body.credit_grant);
            let (items, next_page_token) = self
                .ledger
                .list_transactions(&caller.account, &body.customer, grant, &page)
                .await?;
            let credit_balance_transactions = items.iter().map(convert::transaction).collect();
            Ok(pb::ListCreditBalanceTransactionsResponse {
                credit_balance_transactions,
                next_page_token,
            })
        })
        .await
    }

    async fn apply_credits(
        &self,
        request: Request<pb::ApplyCreditsRequest>,
    ) -> Rpc<pb::ApplyCreditsResponse> {
        record_ids(&[
            ("invoice", request.get_ref().invoice.as_str()),
            ("customer", request.get_ref().customer.as_str()),
        ]);
        unary(request, |caller, body| async move {
            may_apply(&caller, "ApplyCredits")?;
            let input = convert::apply_input(&body).map_err(invalid)?;
            let outcome = self.ledger.apply_credits(&caller.account, input).await?;
            Ok(convert::apply_response(&outcome))
        })
        .await
    }

    async fn reverse_credits(
        &self,
        request: Request<pb::ReverseCreditsRequest>,
    ) -> Rpc<pb::ReverseCreditsResponse> {
        record_ids(&[("invoice", request.get_ref().invoice.as_str())]);
        unary(request, |caller, body| async move {
            may_apply(&caller, "ReverseCredits")?;
            reference(&body.invoice, "invoice")?;
            let reversal = self
                .ledger
                .reverse_credits(&caller.account, &body.invoice)
                .await?;
            Ok(convert::reverse_response(&reversal))
        })
        .await
    }

    async fn audit_ledger(
        &self,
        request: Request<pb::AuditLedgerRequest>,
    ) -> Rpc<pb::AuditLedgerResponse> {
        unary(request, |caller, _| async move {
            let report = self.ledger.audit(&caller.account).await?;
            Ok(convert::audit_response(&report))
        })
        .await
    }
}

impl LedgerGrpc {
    /// A grant as the API shows it (its state derived at the clock's now).
    fn grant(&self, grant: &crate::domain::grant::Grant) -> pb::CreditGrant {
        convert::grant(grant, self.ledger.clock().now())
    }
}
