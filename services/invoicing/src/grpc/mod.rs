//! `billing.invoicing.v1.InvoicingService` over [`Invoicing`] (and the test
//! clock).
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each handler calls one use case through
//! the shared handler shape (`billing_server::handler`).

mod allocations;
pub mod convert;
pub mod events;
mod purchases;
mod realtime;
pub mod status;
pub mod test_clock;
mod top_ups;

use billing_money::FieldViolation;
use billing_proto::invoicing::v1 as pb;
use billing_proto::invoicing::v1::invoicing_service_server::{
    InvoicingService, InvoicingServiceServer,
};
use billing_proto::invoicing::v1::test_clock_service_server::TestClockServiceServer;
use billing_server::events::{EVENT_SERVICE_NAME, EventFeed};
use billing_server::handler::{Call, Reply, invalid, optional, page};
use billing_server::host::{Routes, Served, Serving};
use billing_telemetry::record_ids;
use tonic::service::interceptor::InterceptedService;

use crate::domain::invoice::{EVENT_TYPES, Invoice};
use crate::ops::Invoicing;
use crate::store::{EventFilter, InvoiceFilter};

/// The longest customer search (`ListCustomersRequest.query`).
const SEARCH_CHARS_MAX: usize = 200;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.invoicing.v1.InvoicingService";

/// The fully qualified name of the test clock service.
pub const TEST_CLOCK_SERVICE_NAME: &str = "billing.invoicing.v1.TestClockService";

/// The routes of invoicing's port, behind the port's auth, and the services
/// they serve: `InvoicingService`, its `EventService`, and
/// `TestClockService` only when the test clock is configured.
pub fn routes(state: &crate::State, config: &crate::Config, serving: &Serving) -> Served {
    let max = config.service.server.max_message_bytes;
    let auth = serving.auth.clone();
    let service = InvoicingServiceServer::new(InvoicingGrpc {
        invoicing: state.invoicing.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let feed = EventFeed::new(
        state.invoicing.store().db().clone(),
        events::InvoicingEvents,
        "invoicing",
        serving.draining.clone(),
    )
    .server(max);
    let mut routes = Routes::new(InterceptedService::new(service, auth.clone()))
        .add_service(InterceptedService::new(feed, auth.clone()));
    let mut names = vec![SERVICE_NAME, EVENT_SERVICE_NAME];
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

/// An id the request must carry (present, at most 255 characters);
/// recorded on the RPC's span under `field`.
fn id<'a>(value: &'a str, field: &'static str) -> Reply<&'a str> {
    record_ids(&[(field, value)]);
    let mut out = Vec::new();
    convert::required(value, field, &mut out);
    if out.is_empty() {
        Ok(value)
    } else {
        Err(invalid(out))
    }
}

/// The invoice as the API shows it.
fn invoice(invoice: &Invoice) -> Reply<Option<pb::Invoice>> {
    Ok(Some(convert::invoice(invoice)?))
}

billing_server::unary_service! {
    impl InvoicingService for InvoicingGrpc, pb {
        get_customer list_customers get_price list_prices get_subscription list_subscriptions
        preview_invoice get_invoice list_invoices list_invoice_events
        get_credit_purchase list_credit_purchases get_auto_top_up
        get_customer_balance check_access
    } mutations {
        create_customer update_customer create_price deactivate_price
        create_subscription cancel_subscription
        create_invoice finalize_invoice void_invoice mark_invoice_paid
        create_credit_purchase set_auto_top_up disable_auto_top_up
    };
}

impl InvoicingGrpc {
    async fn create_customer(
        &self,
        call: Call<pb::CreateCustomerRequest>,
    ) -> Reply<pb::CreateCustomerResponse> {
        let new = convert::new_customer(&call.body).map_err(invalid)?;
        let customer = self
            .invoicing
            .create_customer(call.account(), new, call.key());
        Ok(pb::CreateCustomerResponse {
            customer: Some(convert::customer(&customer.await?)),
        })
    }

    async fn get_customer(
        &self,
        call: Call<pb::GetCustomerRequest>,
    ) -> Reply<pb::GetCustomerResponse> {
        let customer = self
            .invoicing
            .customer(call.account(), id(&call.body.id, "id")?)
            .await?;
        Ok(pb::GetCustomerResponse {
            customer: Some(convert::customer(&customer)),
        })
    }

    async fn list_customers(
        &self,
        call: Call<pb::ListCustomersRequest>,
    ) -> Reply<pb::ListCustomersResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let query = optional(call.body.query.trim());
        if query.is_some_and(|q| q.chars().count() > SEARCH_CHARS_MAX) {
            return Err(invalid(vec![FieldViolation::new(
                "query",
                format!("must be at most {SEARCH_CHARS_MAX} characters"),
            )]));
        }
        let (customers, next_page_token) = self
            .invoicing
            .list_customers(call.account(), &page, query)
            .await?;
        let customers = customers.iter().map(convert::customer).collect();
        Ok(pb::ListCustomersResponse {
            customers,
            next_page_token,
        })
    }

    async fn update_customer(
        &self,
        call: Call<pb::UpdateCustomerRequest>,
    ) -> Reply<pb::UpdateCustomerResponse> {
        record_ids(&[("id", call.body.id.as_str())]);
        let changes = convert::customer_changes(&call.body);
        let changes = changes.map_err(invalid)?;
        let updated =
            self.invoicing
                .update_customer(call.account(), &call.body.id, changes, call.key());
        Ok(pb::UpdateCustomerResponse {
            customer: Some(convert::customer(&updated.await?)),
        })
    }

    async fn create_price(
        &self,
        call: Call<pb::CreatePriceRequest>,
    ) -> Reply<pb::CreatePriceResponse> {
        let new = convert::new_price(&call.body).map_err(invalid)?;
        record_ids(&[("meter", call.body.meter.as_str())]);
        let created = self.invoicing.create_price(call.account(), new, call.key());
        Ok(pb::CreatePriceResponse {
            price: Some(convert::price(&created.await?)),
        })
    }

    async fn get_price(&self, call: Call<pb::GetPriceRequest>) -> Reply<pb::GetPriceResponse> {
        let price = Some(convert::price(
            &self
                .invoicing
                .price(call.account(), id(&call.body.id, "id")?)
                .await?,
        ));
        Ok(pb::GetPriceResponse { price })
    }

    async fn list_prices(
        &self,
        call: Call<pb::ListPricesRequest>,
    ) -> Reply<pb::ListPricesResponse> {
        let (prices, next_page_token) = self
            .invoicing
            .list_prices(
                call.account(),
                &page(call.body.page_size, &call.body.page_token)?,
            )
            .await?;
        Ok(pb::ListPricesResponse {
            prices: prices.iter().map(convert::price).collect(),
            next_page_token,
        })
    }

    async fn deactivate_price(
        &self,
        call: Call<pb::DeactivatePriceRequest>,
    ) -> Reply<pb::DeactivatePriceResponse> {
        let price = id(&call.body.id, "id")?;
        let deactivated = self
            .invoicing
            .deactivate_price(call.account(), price, call.key());
        let price = Some(convert::price(&deactivated.await?));
        Ok(pb::DeactivatePriceResponse { price })
    }

    async fn create_subscription(
        &self,
        call: Call<pb::CreateSubscriptionRequest>,
    ) -> Reply<pb::CreateSubscriptionResponse> {
        let new = convert::new_subscription(&call.body).map_err(invalid)?;
        record_ids(&[("customer", call.body.customer.as_str())]);
        let created = self
            .invoicing
            .create_subscription(call.account(), new, call.key());
        let subscription = Some(convert::subscription(&created.await?));
        Ok(pb::CreateSubscriptionResponse { subscription })
    }

    async fn get_subscription(
        &self,
        call: Call<pb::GetSubscriptionRequest>,
    ) -> Reply<pb::GetSubscriptionResponse> {
        let found = self
            .invoicing
            .subscription(call.account(), id(&call.body.id, "id")?);
        let subscription = found.await.map(|sub| convert::subscription(&sub))?;
        Ok(pb::GetSubscriptionResponse {
            subscription: Some(subscription),
        })
    }

    async fn list_subscriptions(
        &self,
        call: Call<pb::ListSubscriptionsRequest>,
    ) -> Reply<pb::ListSubscriptionsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (subs, next_page_token) = self
            .invoicing
            .list_subscriptions(call.account(), optional(&call.body.customer), &page)
            .await?;
        let subscriptions = subs.iter().map(convert::subscription).collect();
        Ok(pb::ListSubscriptionsResponse {
            subscriptions,
            next_page_token,
        })
    }

    async fn cancel_subscription(
        &self,
        call: Call<pb::CancelSubscriptionRequest>,
    ) -> Reply<pb::CancelSubscriptionResponse> {
        let sub = id(&call.body.id, "id")?;
        let cancel = self.invoicing.cancel_subscription(
            call.account(),
            sub,
            call.body.at_period_end,
            call.key(),
        );
        let (sub, final_invoice) = cancel.await?;
        let final_invoice = final_invoice.as_ref().map(convert::invoice).transpose()?;
        Ok(pb::CancelSubscriptionResponse {
            subscription: Some(convert::subscription(&sub)),
            final_invoice,
        })
    }

    async fn create_invoice(
        &self,
        call: Call<pb::CreateInvoiceRequest>,
    ) -> Reply<pb::CreateInvoiceResponse> {
        let subscription = id(&call.body.subscription, "subscription")?;
        let created = self
            .invoicing
            .create_invoice(call.account(), subscription, call.key());
        Ok(pb::CreateInvoiceResponse {
            invoice: invoice(&created.await?)?,
        })
    }

    async fn preview_invoice(
        &self,
        call: Call<pb::PreviewInvoiceRequest>,
    ) -> Reply<pb::PreviewInvoiceResponse> {
        let upcoming = self
            .invoicing
            .preview(call.account(), id(&call.body.subscription, "subscription")?);
        Ok(pb::PreviewInvoiceResponse {
            invoice: invoice(&upcoming.await?)?,
        })
    }

    async fn finalize_invoice(
        &self,
        call: Call<pb::FinalizeInvoiceRequest>,
    ) -> Reply<pb::FinalizeInvoiceResponse> {
        // Finalizing is the saga (DESIGN.md §6): it may answer UNAVAILABLE
        // with the invoice saved mid-saga; a retry with the same key is safe.
        let finalized =
            self.invoicing
                .finalize(call.account(), id(&call.body.id, "id")?, call.key());
        Ok(pb::FinalizeInvoiceResponse {
            invoice: invoice(&finalized.await?)?,
        })
    }

    async fn void_invoice(
        &self,
        call: Call<pb::VoidInvoiceRequest>,
    ) -> Reply<pb::VoidInvoiceResponse> {
        let voided = self
            .invoicing
            .void(call.account(), id(&call.body.id, "id")?, call.key());
        Ok(pb::VoidInvoiceResponse {
            invoice: invoice(&voided.await?)?,
        })
    }

    async fn mark_invoice_paid(
        &self,
        call: Call<pb::MarkInvoicePaidRequest>,
    ) -> Reply<pb::MarkInvoicePaidResponse> {
        let paid = invoice(
            &self
                .invoicing
                .mark_paid(call.account(), id(&call.body.id, "id")?, call.key())
                .await?,
        )?;
        Ok(pb::MarkInvoicePaidResponse { invoice: paid })
    }

    async fn get_invoice(
        &self,
        call: Call<pb::GetInvoiceRequest>,
    ) -> Reply<pb::GetInvoiceResponse> {
        Ok(pb::GetInvoiceResponse {
            invoice: invoice(
                &self
                    .invoicing
                    .invoice(call.account(), id(&call.body.id, "id")?)
                    .await?,
            )?,
        })
    }

    async fn list_invoices(
        &self,
        call: Call<pb::ListInvoicesRequest>,
    ) -> Reply<pb::ListInvoicesResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let filter = InvoiceFilter {
            customer: optional(&call.body.customer).map(str::to_owned),
            subscription: optional(&call.body.subscription).map(str::to_owned),
            status: convert::status_filter(call.body.status).map_err(invalid)?,
        };
        let (invoices, next_page_token) = self
            .invoicing
            .list_invoices(call.account(), &filter, &page)
            .await?;
        let invoices = invoices
            .iter()
            .map(convert::invoice)
            .collect::<Result<_, _>>()?;
        Ok(pb::ListInvoicesResponse {
            invoices,
            next_page_token,
        })
    }

    async fn list_invoice_events(
        &self,
        call: Call<pb::ListInvoiceEventsRequest>,
    ) -> Reply<pb::ListInvoiceEventsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let event_type = optional(&call.body.r#type);
        if let Some(event_type) = event_type
            && !EVENT_TYPES.contains(&event_type)
        {
            let expected = format!("must be one of {}", EVENT_TYPES.join(", "));
            return Err(invalid(vec![FieldViolation::new("type", expected)]));
        }
        let filter = EventFilter {
            invoice: optional(&call.body.invoice).map(str::to_owned),
            event_type: event_type.map(str::to_owned),
        };
        let (events, next_page_token) = self
            .invoicing
            .list_events(call.account(), &filter, &page)
            .await?;
        let events = events.into_iter().map(convert::invoice_event).collect();
        Ok(pb::ListInvoiceEventsResponse {
            events,
            next_page_token,
        })
    }
}
