//! `billing.webhooks.v1.WebhookService` over the [`Notifier`], and the
//! notifier's own event feed.
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], each handler calls one use case.

pub mod convert;
pub mod events;
pub mod status;

use billing_money::FieldViolation;
use billing_proto::webhooks::v1 as pb;
use billing_proto::webhooks::v1::webhook_service_server::{WebhookService, WebhookServiceServer};
use billing_server::events::{EVENT_SERVICE_NAME, EventFeed};
use billing_server::handler::{Call, Reply, invalid, optional, page, required};
use billing_server::host::{Routes, Served, Serving};
use billing_telemetry::record_ids;
use tonic::service::interceptor::InterceptedService;

use crate::ops::Notifier;
use crate::store::DeliveryFilter;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.webhooks.v1.WebhookService";

/// The gRPC face of the notifier.
#[derive(Debug, Clone)]
pub struct WebhookGrpc {
    notifier: Notifier,
}

/// The routes of the notifier's port, behind the port's auth.
pub fn routes(notifier: &Notifier, max: usize, serving: &Serving) -> Served {
    let service = WebhookServiceServer::new(WebhookGrpc {
        notifier: notifier.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let feed = EventFeed::new(
        notifier.store().db().clone(),
        events::NotifierEvents,
        "notifier",
        serving.draining.clone(),
    )
    .server(max);
    (
        Routes::new(InterceptedService::new(service, serving.auth.clone()))
            .add_service(InterceptedService::new(feed, serving.auth.clone())),
        vec![SERVICE_NAME, EVENT_SERVICE_NAME],
    )
}

/// An id the request must carry (present, at most 100 characters).
fn id<'a>(value: &'a str, field: &'static str) -> Reply<&'a str> {
    record_ids(&[(field, value)]);
    required(value, field)?;
    if value.len() > 100 {
        return Err(invalid(vec![FieldViolation::new(
            field,
            "at most 100 characters",
        )]));
    }
    Ok(value)
}

billing_server::unary_service! {
    impl WebhookService for WebhookGrpc, pb {
        get_webhook_endpoint list_webhook_endpoints delete_webhook_endpoint
        list_webhook_deliveries retry_webhook_delivery send_test_webhook
    } mutations {
        create_webhook_endpoint update_webhook_endpoint rotate_webhook_endpoint_secret
    };
}

impl WebhookGrpc {
    async fn create_webhook_endpoint(
        &self,
        call: Call<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::CreateWebhookEndpointResponse> {
        let new = convert::new_endpoint(&call.body).map_err(invalid)?;
        let (endpoint, secret) = self
            .notifier
            .create_endpoint(call.account(), new, call.key())
            .await?;
        Ok(pb::CreateWebhookEndpointResponse {
            webhook_endpoint: Some(convert::endpoint(&endpoint)),
            secret,
        })
    }

    async fn get_webhook_endpoint(
        &self,
        call: Call<pb::GetWebhookEndpointRequest>,
    ) -> Reply<pb::GetWebhookEndpointResponse> {
        let id = id(&call.body.id, "id")?;
        let endpoint = self.notifier.endpoint(call.account(), id).await?;
        Ok(pb::GetWebhookEndpointResponse {
            webhook_endpoint: Some(convert::endpoint(&endpoint)),
        })
    }

    async fn list_webhook_endpoints(
        &self,
        call: Call<pb::ListWebhookEndpointsRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (found, next_page_token) = self.notifier.list_endpoints(call.account(), &page).await?;
        Ok(pb::ListWebhookEndpointsResponse {
            webhook_endpoints: found.iter().map(convert::endpoint).collect(),
            next_page_token,
        })
    }

    async fn update_webhook_endpoint(
        &self,
        call: Call<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::UpdateWebhookEndpointResponse> {
        let id = id(&call.body.id, "id")?;
        let (url, change) = convert::endpoint_changes(&call.body).map_err(invalid)?;
        let endpoint = self
            .notifier
            .update_endpoint(call.account(), id, (url.as_deref(), change), call.key())
            .await?;
        Ok(pb::UpdateWebhookEndpointResponse {
            webhook_endpoint: Some(convert::endpoint(&endpoint)),
        })
    }

    async fn delete_webhook_endpoint(
        &self,
        call: Call<pb::DeleteWebhookEndpointRequest>,
    ) -> Reply<pb::DeleteWebhookEndpointResponse> {
        let id = id(&call.body.id, "id")?;
        let endpoint = self.notifier.delete_endpoint(call.account(), id).await?;
        Ok(pb::DeleteWebhookEndpointResponse {
            webhook_endpoint: Some(convert::endpoint(&endpoint)),
        })
    }

    async fn rotate_webhook_endpoint_secret(
        &self,
        call: Call<pb::RotateWebhookEndpointSecretRequest>,
    ) -> Reply<pb::RotateWebhookEndpointSecretResponse> {
        let id = id(&call.body.id, "id")?;
        let (endpoint, secret) = self
            .notifier
            .rotate_secret(call.account(), id, call.key())
            .await?;
        Ok(pb::RotateWebhookEndpointSecretResponse {
            webhook_endpoint: Some(convert::endpoint(&endpoint)),
            secret,
        })
    }

    async fn list_webhook_deliveries(
        &self,
        call: Call<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let status = convert::delivery_status(call.body.status).map_err(|v| invalid(vec![v]))?;
        let filter = DeliveryFilter {
            endpoint: optional(&call.body.webhook_endpoint).map(str::to_owned),
            event: optional(&call.body.event).map(str::to_owned),
            status,
        };
        let (found, next_page_token) = self
            .notifier
            .list_deliveries(call.account(), &filter, &page)
            .await?;
        Ok(pb::ListWebhookDeliveriesResponse {
            webhook_deliveries: found.iter().map(convert::delivery).collect(),
            next_page_token,
        })
    }

    async fn retry_webhook_delivery(
        &self,
        call: Call<pb::RetryWebhookDeliveryRequest>,
    ) -> Reply<pb::RetryWebhookDeliveryResponse> {
        let id = id(&call.body.id, "id")?;
        let delivery = self.notifier.retry(call.account(), id).await?;
        Ok(pb::RetryWebhookDeliveryResponse {
            webhook_delivery: Some(convert::delivery(&delivery)),
        })
    }

    async fn send_test_webhook(
        &self,
        call: Call<pb::SendTestWebhookRequest>,
    ) -> Reply<pb::SendTestWebhookResponse> {
        let endpoint = id(&call.body.webhook_endpoint, "webhook_endpoint")?;
        let (event, created) = self.notifier.test_event();
        let body = crate::upstream::test_body(&event, created).map_err(|error| {
            tracing::error!(%error, "test event not rendered");
            tonic::Status::internal("internal error")
        })?;
        let delivery = self
            .notifier
            .send_test(call.account(), endpoint, (&event, &body))
            .await?;
        Ok(pb::SendTestWebhookResponse {
            webhook_delivery: Some(convert::delivery(&delivery)),
        })
    }
}
