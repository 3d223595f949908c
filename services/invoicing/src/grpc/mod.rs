//! `billing.invoicing.v1.InvoicingService` over [`Invoicing`] (and the test
//! clock).
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each handler calls one use case through
//! the shared handler shape (`billing_server::handler`).

pub mod convert;
pub mod status;
pub mod test_clock;

use billing_money::FieldViolation;
use billing_proto::invoicing::v1 as pb;
use billing_proto::invoicing::v1::invoicing_service_server::{
    InvoicingService, InvoicingServiceServer,
};
use billing_proto::invoicing::v1::test_clock_service_server::TestClockServiceServer;
use billing_server::auth::AuthInterceptor;
use billing_server::handler::{invalid, mutation, optional, page, unary};
use billing_server::host::Routes;
use billing_telemetry::record_ids;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::domain::invoice::{EVENT_TYPES, Invoice};
use crate::ops::Invoicing;
use crate::store::{EventFilter, InvoiceFilter};

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
    auth: AuthInterceptor,
) -> (Routes, Vec<&'static str>) {
    let max = config.service.server.max_message_bytes;
    let service = InvoicingServiceServer::new(InvoicingGrpc {
        invoicing: state.invoicing.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let mut routes = Routes::new(InterceptedService::new(service, auth.clone()));
    let mut names = vec![SERVICE_NAME];
    if config.test_clock {
        let clock = state.invoicing.clock().clone();
        let clock = test_clock::TestClockGrpc::new(clock, state.worker.clone());
        let clock = TestClockServiceServer::new(clock);
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

/// An id the request must carry (present, at most 255 characters).
fn id(value: &str, field: &str) -> Result<(), Status> {
    let mut out = Vec::new();
    convert::required(value, field, &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(invalid(out))
    }
}

/// The invoice as the API shows it.
fn invoice(invoice: &Invoice) -> Option<pb::Invoice> {
    Some(convert::invoice(invoice))
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl InvoicingService for InvoicingGrpc {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Rpc<pb::CreateCustomerResponse> {
        mutation(request, |caller, body, key| async move {
            let new = convert::new_customer(&body).map_err(invalid)?;
            let customer = self
                .invoicing
                .create_customer(&caller.account, new, key.as_ref())
                .await?;
            Ok(pb::CreateCustomerResponse {
                customer: Some(convert::customer(&customer)),
            })
        })
        .await
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Rpc<pb::GetCustomerResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            id(&body.id, "id")?;
            let customer = self.invoicing.customer(&caller.account, &body.id).await?;
            Ok(pb::GetCustomerResponse {
                customer: Some(convert::customer(&customer)),
            })
        })
        .await
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Rpc<pb::ListCustomersResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let (customers, next_page_token) = self
                .invoicing
                .list_customers(&caller.account, &page)
                .await?;
            let customers = customers.iter().map(convert::customer).collect();
            Ok(pb::ListCustomersResponse {
                customers,
                next_page_token,
            })
        })
        .await
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Rpc<pb::UpdateCustomerResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            let changes = convert::customer_changes(&body).map_err(invalid)?;
            let customer = self
                .invoicing
                .update_customer(&caller.account, &body.id, changes, key.as_ref())
                .await?;
            Ok(pb::UpdateCustomerResponse {
                customer: Some(convert::customer(&customer)),
            })
        })
        .await
    }

    async fn create_price(
        &self,
        request: Request<pb::CreatePriceRequest>,
    ) -> Rpc<pb::CreatePriceResponse> {
        record_ids(&[("meter", request.get_ref().meter.as_str())]);
        mutation(request, |caller, body, key| async move {
            let new = convert::new_price(&body).map_err(invalid)?;
            let price = self
                .invoicing
                .create_price(&caller.account, new, key.as_ref())
                .await?;
            Ok(pb::CreatePriceResponse {
                price: Some(convert::price(&price)),
            })
        })
        .await
    }

    async fn get_price(&self, request: Request<pb::GetPriceRequest>) -> Rpc<pb::GetPriceResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            id(&body.id, "id")?;
            let price = self.invoicing.price(&caller.account, &body.id).await?;
            Ok(pb::GetPriceResponse {
                price: Some(convert::price(&price)),
            })
        })
        .await
    }

    async fn list_prices(
        &self,
        request: Request<pb::ListPricesRequest>,
    ) -> Rpc<pb::ListPricesResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let (prices, next_page_token) =
                self.invoicing.list_prices(&caller.account, &page).await?;
            let prices = prices.iter().map(convert::price).collect();
            Ok(pb::ListPricesResponse {
                prices,
                next_page_token,
            })
        })
        .await
    }

    async fn deactivate_price(
        &self,
        request: Request<pb::DeactivatePriceRequest>,
    ) -> Rpc<pb::DeactivatePriceResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.id, "id")?;
            let price = self
                .invoicing
                .deactivate_price(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::DeactivatePriceResponse {
                price: Some(convert::price(&price)),
            })
        })
        .await
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Rpc<pb::CreateSubscriptionResponse> {
        record_ids(&[("customer", request.get_ref().customer.as_str())]);
        mutation(request, |caller, body, key| async move {
            let new = convert::new_subscription(&body).map_err(invalid)?;
            let sub = self
                .invoicing
                .create_subscription(&caller.account, new, key.as_ref())
                .await?;
            Ok(pb::CreateSubscriptionResponse {
                subscription: Some(convert::subscription(&sub)),
            })
        })
        .await
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Rpc<pb::GetSubscriptionResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            id(&body.id, "id")?;
            let sub = self
                .invoicing
                .subscription(&caller.account, &body.id)
                .await?;
            Ok(pb::GetSubscriptionResponse {
                subscription: Some(convert::subscription(&sub)),
            })
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Rpc<pb::ListSubscriptionsResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let customer = optional(&body.customer);
            let (subs, next_page_token) = self
                .invoicing
                .list_subscriptions(&caller.account, customer, &page)
                .await?;
            let subscriptions = subs.iter().map(convert::subscription).collect();
            Ok(pb::ListSubscriptionsResponse {
                subscriptions,
                next_page_token,
            })
        })
        .await
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Rpc<pb::CancelSubscriptionResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.id, "id")?;
            let at_period_end = body.at_period_end;
            let (sub, final_invoice) = self
                .invoicing
                .cancel_subscription(&caller.account, &body.id, at_period_end, key.as_ref())
                .await?;
            let subscription = Some(convert::subscription(&sub));
            Ok(pb::CancelSubscriptionResponse {
                subscription,
                final_invoice: final_invoice.as_ref().and_then(invoice),
            })
        })
        .await
    }

    async fn create_invoice(
        &self,
        request: Request<pb::CreateInvoiceRequest>,
    ) -> Rpc<pb::CreateInvoiceResponse> {
        record_ids(&[("subscription", request.get_ref().subscription.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.subscription, "subscription")?;
            let created = self
                .invoicing
                .create_invoice(&caller.account, &body.subscription, key.as_ref())
                .await?;
            Ok(pb::CreateInvoiceResponse {
                invoice: invoice(&created),
            })
        })
        .await
    }

    async fn preview_invoice(
        &self,
        request: Request<pb::PreviewInvoiceRequest>,
    ) -> Rpc<pb::PreviewInvoiceResponse> {
        record_ids(&[("subscription", request.get_ref().subscription.as_str())]);
        unary(request, |caller, body| async move {
            id(&body.subscription, "subscription")?;
            let upcoming = self
                .invoicing
                .preview(&caller.account, &body.subscription)
                .await?;
            Ok(pb::PreviewInvoiceResponse {
                invoice: invoice(&upcoming),
            })
        })
        .await
    }

    async fn finalize_invoice(
        &self,
        request: Request<pb::FinalizeInvoiceRequest>,
    ) -> Rpc<pb::FinalizeInvoiceResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.id, "id")?;
            let finalized = self
                .invoicing
                .finalize(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::FinalizeInvoiceResponse {
                invoice: invoice(&finalized),
            })
        })
        .await
    }

    async fn void_invoice(
        &self,
        request: Request<pb::VoidInvoiceRequest>,
    ) -> Rpc<pb::VoidInvoiceResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.id, "id")?;
            let voided = self
                .invoicing
                .void(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::VoidInvoiceResponse {
                invoice: invoice(&voided),
            })
        })
        .await
    }

    async fn mark_invoice_paid(
        &self,
        request: Request<pb::MarkInvoicePaidRequest>,
    ) -> Rpc<pb::MarkInvoicePaidResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            id(&body.id, "id")?;
            let paid = self
                .invoicing
                .mark_paid(&caller.account, &body.id, key.as_ref())
                .await?;
            Ok(pb::MarkInvoicePaidResponse {
                invoice: invoice(&paid),
            })
        })
        .await
    }

    async fn get_invoice(
        &self,
        request: Request<pb::GetInvoiceRequest>,
    ) -> Rpc<pb::GetInvoiceResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            id(&body.id, "id")?;
            let found = self.invoicing.invoice(&caller.account, &body.id).await?;
            Ok(pb::GetInvoiceResponse {
                invoice: invoice(&found),
            })
        })
        .await
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Rpc<pb::ListInvoicesResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let filter = InvoiceFilter {
                customer: optional(&body.customer).map(str::to_owned),
                subscription: optional(&body.subscription).map(str::to_owned),
                status: convert::status_filter(body.status()),
            };
            let (invoices, next_page_token) = self
                .invoicing
                .list_invoices(&caller.account, &filter, &page)
                .await?;
            let invoices = invoices.iter().map(convert::invoice).collect();
            Ok(pb::ListInvoicesResponse {
                invoices,
                next_page_token,
            })
        })
        .await
    }

    async fn list_invoice_events(
        &self,
        request: Request<pb::ListInvoiceEventsRequest>,
    ) -> Rpc<pb::ListInvoiceEventsResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let event_type = optional(&body.r#type);
            if let Some(event_type) = event_type
                && !EVENT_TYPES.contains(&event_type)
            {
                let expected = format!("must be one of {}", EVENT_TYPES.join(", "));
                return Err(invalid(vec![FieldViolation::new("type", expected)]));
            }
            let filter = EventFilter {
                invoice: optional(&body.invoice).map(str::to_owned),
                event_type: event_type.map(str::to_owned),
            };
            let (events, next_page_token) = self
                .invoicing
                .list_events(&caller.account, &filter, &page)
                .await?;
            let events = events.into_iter().map(convert::invoice_event).collect();
            Ok(pb::ListInvoiceEventsResponse {
                events,
                next_page_token,
            })
        })
        .await
    }
}
