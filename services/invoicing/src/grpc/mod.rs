//! `billing.invoicing.v1.InvoicingService` over [`Invoicing`].

pub mod convert;
pub mod status;
pub mod test_clock;

use billing_money::FieldViolation;
use billing_proto::invoicing::v1 as pb;
use billing_proto::invoicing::v1::invoicing_service_server::InvoicingService;
use billing_server::auth::principal;
use billing_server::idempotent::idempotency_key;
use billing_server::page::PageRequest;
use billing_telemetry::record_ids;
use tonic::{Request, Response, Status};

use crate::domain::invoice::EVENT_TYPES;
use crate::error::InvoicingError;
use crate::ops::Invoicing;
use crate::store::{EventFilter, InvoiceFilter};
use status::to_status;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.invoicing.v1.InvoicingService";

/// The fully qualified name of the test clock service.
pub const TEST_CLOCK_SERVICE_NAME: &str = "billing.invoicing.v1.TestClockService";

/// The routes of invoicing's port, behind `auth`, and the services they
/// serve: `InvoicingService`, and `TestClockService` only when the test
/// clock is configured.
pub fn routes(
    state: &crate::State,
    config: &crate::Config,
    auth: billing_server::auth::AuthInterceptor,
) -> (billing_server::host::Routes, Vec<&'static str>) {
    use tonic::service::interceptor::InterceptedService;
    let max = config.service.server.max_message_bytes;
    let service = pb::invoicing_service_server::InvoicingServiceServer::new(InvoicingGrpc::new(
        state.invoicing.clone(),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let mut routes =
        billing_server::host::Routes::new(InterceptedService::new(service, auth.clone()));
    let mut names = vec![SERVICE_NAME];
    if config.test_clock {
        let clock = pb::test_clock_service_server::TestClockServiceServer::new(
            test_clock::TestClockGrpc::new(state.invoicing.clock().clone(), state.worker.clone()),
        );
        routes = routes.add_service(InterceptedService::new(clock, auth));
        names.push(TEST_CLOCK_SERVICE_NAME);
    }
    (routes, names)
}

/// The gRPC face of invoicing.
#[derive(Debug, Clone)]
pub struct InvoicingGrpc {
    invoicing: Invoicing,
}

impl InvoicingGrpc {
    /// Serves `invoicing`.
    pub fn new(invoicing: Invoicing) -> Self {
        Self { invoicing }
    }
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    to_status(InvoicingError::Invalid(violations))
}

fn required_id(value: &str, field: &str) -> Result<(), Status> {
    let mut out = Vec::new();
    convert::required(value, field, &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(invalid(out))
    }
}

fn page(page_size: i32, page_token: &str) -> Result<PageRequest, Status> {
    PageRequest::parse(page_size, page_token).map_err(|v| invalid(vec![v]))
}

fn optional(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

#[tonic::async_trait]
impl InvoicingService for InvoicingGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let new = convert::new_customer(&body).map_err(invalid)?;
        let customer = self
            .invoicing
            .create_customer(&account, new, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(convert::customer(&customer)),
        }))
    }
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        required_id(&body.id, "id")?;
        let customer = self
            .invoicing
            .customer(&account, &body.id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(convert::customer(&customer)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let page = page(body.page_size, &body.page_token)?;
        let (customers, next_page_token) = self
            .invoicing
            .list_customers(&account, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: customers.iter().map(convert::customer).collect(),
            next_page_token,
        }))
    }
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let changes = convert::customer_changes(&body).map_err(invalid)?;
        let customer = self
            .invoicing
            .update_customer(&account, &body.id, changes, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(convert::customer(&customer)),
        }))
    }
    async fn create_price(
        &self,
        request: Request<pb::CreatePriceRequest>,
    ) -> Result<Response<pb::CreatePriceResponse>, Status> {
        record_ids(&[("meter", request.get_ref().meter.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let new = convert::new_price(&body).map_err(invalid)?;
        let price = self
            .invoicing
            .create_price(&account, new, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreatePriceResponse {
            price: Some(convert::price(&price)),
        }))
    }
    async fn get_price(
        &self,
        request: Request<pb::GetPriceRequest>,
    ) -> Result<Response<pb::GetPriceResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        required_id(&body.id, "id")?;
        let price = self
            .invoicing
            .price(&account, &body.id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetPriceResponse {
            price: Some(convert::price(&price)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_prices(
        &self,
        request: Request<pb::ListPricesRequest>,
    ) -> Result<Response<pb::ListPricesResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let page = page(body.page_size, &body.page_token)?;
        let (prices, next_page_token) = self
            .invoicing
            .list_prices(&account, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListPricesResponse {
            prices: prices.iter().map(convert::price).collect(),
            next_page_token,
        }))
    }
    async fn deactivate_price(
        &self,
        request: Request<pb::DeactivatePriceRequest>,
    ) -> Result<Response<pb::DeactivatePriceResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.id, "id")?;
        let price = self
            .invoicing
            .deactivate_price(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeactivatePriceResponse {
            price: Some(convert::price(&price)),
        }))
    }
    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let new = convert::new_subscription(&body).map_err(invalid)?;
        let sub = self
            .invoicing
            .create_subscription(&account, new, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateSubscriptionResponse {
            subscription: Some(convert::subscription(&sub)),
        }))
    }
    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        required_id(&body.id, "id")?;
        let sub = self
            .invoicing
            .subscription(&account, &body.id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetSubscriptionResponse {
            subscription: Some(convert::subscription(&sub)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let page = page(body.page_size, &body.page_token)?;
        let (subs, next_page_token) = self
            .invoicing
            .list_subscriptions(&account, optional(&body.customer), &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: subs.iter().map(convert::subscription).collect(),
            next_page_token,
        }))
    }
    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.id, "id")?;
        let (sub, invoice) = self
            .invoicing
            .cancel_subscription(&account, &body.id, body.at_period_end, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CancelSubscriptionResponse {
            subscription: Some(convert::subscription(&sub)),
            final_invoice: invoice.as_ref().map(convert::invoice),
        }))
    }
    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Result<Response<pb::CreateInvoiceResponse>, Status> {
        record_ids(&[("subscription", request.get_ref().subscription.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.subscription, "subscription")?;
        let invoice = self
            .invoicing
            .create_invoice(&account, &body.subscription, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateInvoiceResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }
    async fn preview_invoice(
        &self,
        request: Request<pb::PreviewInvoiceRequest>,
    ) -> Result<Response<pb::PreviewInvoiceResponse>, Status> {
        record_ids(&[("subscription", request.get_ref().subscription.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        required_id(&body.subscription, "subscription")?;
        let invoice = self
            .invoicing
            .preview(&account, &body.subscription)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PreviewInvoiceResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }
    async fn finalize_invoice(
        &self,
        request: Request<pb::FinalizeInvoiceRequest>,
    ) -> Result<Response<pb::FinalizeInvoiceResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.id, "id")?;
        let invoice = self
            .invoicing
            .finalize(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::FinalizeInvoiceResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }
    async fn void_invoice(
        &self,
        request: Request<pb::VoidInvoiceRequest>,
    ) -> Result<Response<pb::VoidInvoiceResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.id, "id")?;
        let invoice = self
            .invoicing
            .void(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::VoidInvoiceResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }
    async fn mark_invoice_paid(
        &self,
        request: Request<pb::MarkInvoicePaidRequest>,
    ) -> Result<Response<pb::MarkInvoicePaidResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required_id(&body.id, "id")?;
        let invoice = self
            .invoicing
            .mark_paid(&account, &body.id, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MarkInvoicePaidResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }
    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Result<Response<pb::GetInvoiceResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        required_id(&body.id, "id")?;
        let invoice = self
            .invoicing
            .invoice(&account, &body.id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetInvoiceResponse {
            invoice: Some(convert::invoice(&invoice)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let page = page(body.page_size, &body.page_token)?;
        let filter = InvoiceFilter {
            customer: optional(&body.customer).map(str::to_owned),
            subscription: optional(&body.subscription).map(str::to_owned),
            status: convert::status_filter(body.status()),
        };
        let (invoices, next_page_token) = self
            .invoicing
            .list_invoices(&account, &filter, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: invoices.iter().map(convert::invoice).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_invoice_events(
        &self,
        request: Request<pb::ListInvoiceEventsRequest>,
    ) -> Result<Response<pb::ListInvoiceEventsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let page = page(body.page_size, &body.page_token)?;
        let event_type = optional(&body.r#type);
        if let Some(event_type) = event_type
            && !EVENT_TYPES.contains(&event_type)
        {
            return Err(invalid(vec![FieldViolation::new(
                "type",
                format!("must be one of {}", EVENT_TYPES.join(", ")),
            )]));
        }
        let filter = EventFilter {
            invoice: optional(&body.invoice).map(str::to_owned),
            event_type: event_type.map(str::to_owned),
        };
        let (events, next_page_token) = self
            .invoicing
            .list_events(&account, &filter, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListInvoiceEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::InvoiceEvent {
                    id: e.id,
                    r#type: e.event_type,
                    invoice: e.invoice,
                    created: Some(billing_server::time::to_proto(e.created)),
                })
                .collect(),
            next_page_token,
        }))
    }
}
