//! Proto ⇄ domain conversions; requests are checked field by field.

use billing_money::FieldViolation;
use billing_money::field::check_metadata;
use billing_proto::webhooks::v1 as pb;
use billing_server::time::to_proto;

use crate::domain::endpoint::{Endpoint, check_description, check_events};
use crate::ops::NewEndpoint;
use crate::store::{Delivery, EndpointChanges};

/// An endpoint for a response (never with its secret).
pub fn endpoint(endpoint: &Endpoint) -> pb::WebhookEndpoint {
    let status = if endpoint.enabled() {
        pb::WebhookEndpointStatus::Enabled
    } else {
        pb::WebhookEndpointStatus::Disabled
    };
    pb::WebhookEndpoint {
        id: endpoint.id.clone(),
        url: endpoint.url.clone(),
        enabled_events: endpoint.enabled_events.clone(),
        description: endpoint.description.clone(),
        metadata: endpoint.metadata.clone(),
        status: status.into(),
        disabled_reason: endpoint.disabled_reason.clone().unwrap_or_default(),
        failing_since: endpoint.failing_since.map(to_proto),
        created: Some(to_proto(endpoint.created)),
        updated: Some(to_proto(endpoint.updated)),
    }
}

/// A delivery for a response.
pub fn delivery(delivery: &Delivery) -> pb::WebhookDelivery {
    let status = match delivery.status.as_str() {
        "pending" => pb::WebhookDeliveryStatus::Pending,
        "delivered" => pb::WebhookDeliveryStatus::Delivered,
        _ => pb::WebhookDeliveryStatus::Failed,
    };
    pb::WebhookDelivery {
        id: delivery.id.clone(),
        webhook_endpoint: delivery.endpoint.clone(),
        event: delivery.event.clone(),
        event_type: delivery.event_type.clone(),
        status: status.into(),
        attempts: u32::try_from(delivery.attempts).unwrap_or(u32::MAX),
        last_http_status: u32::try_from(delivery.last_http_status).unwrap_or(0),
        last_error: delivery.last_error.clone(),
        next_attempt: delivery
            .next_attempt
            .filter(|_| delivery.status == "pending")
            .map(to_proto),
        created: Some(to_proto(delivery.created)),
        delivered: delivery.delivered.map(to_proto),
    }
}

/// A checked CreateWebhookEndpoint (the URL is checked by ops).
pub fn new_endpoint(
    request: &pb::CreateWebhookEndpointRequest,
) -> Result<NewEndpoint, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_events(&request.enabled_events, "enabled_events", &mut out);
    check_description(&request.description, &mut out);
    check_metadata(&request.metadata, "metadata", &mut out);
    if !out.is_empty() {
        return Err(out);
    }
    Ok(NewEndpoint {
        url: request.url.trim().to_owned(),
        enabled_events: request.enabled_events.clone(),
        description: request.description.clone(),
        metadata: request.metadata.clone(),
    })
}

/// A checked UpdateWebhookEndpoint: the new URL (checked by ops) and the
/// other changes.
pub fn endpoint_changes(
    request: &pb::UpdateWebhookEndpointRequest,
) -> Result<(Option<String>, EndpointChanges), Vec<FieldViolation>> {
    let mut out = Vec::new();
    if let Some(events) = &request.enabled_events {
        check_events(&events.types, "enabled_events.types", &mut out);
    }
    if let Some(description) = &request.description {
        check_description(description, &mut out);
    }
    if let Some(metadata) = &request.metadata {
        check_metadata(&metadata.values, "metadata.values", &mut out);
    }
    if !out.is_empty() {
        return Err(out);
    }
    let events = request.enabled_events.as_ref().map(|e| e.types.clone());
    let description = request.description.clone();
    let metadata = request.metadata.as_ref().map(|m| m.values.clone());
    let disabled = request.disabled;
    let change: EndpointChanges = Box::new(move |endpoint: &mut Endpoint| {
        if let Some(events) = events {
            endpoint.enabled_events = events;
        }
        if let Some(description) = description {
            endpoint.description = description;
        }
        if let Some(metadata) = metadata {
            endpoint.metadata = metadata;
        }
        match disabled {
            Some(true) if endpoint.enabled() => {
                endpoint.disabled_reason = Some("disabled by a request".into());
            }
            Some(false) => endpoint.disabled_reason = None,
            _ => {}
        }
    });
    Ok((request.url.as_ref().map(|u| u.trim().to_owned()), change))
}

/// The storage form of a delivery status filter.
pub fn delivery_status(status: i32) -> Result<Option<&'static str>, FieldViolation> {
    match pb::WebhookDeliveryStatus::try_from(status) {
        Ok(pb::WebhookDeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::WebhookDeliveryStatus::Pending) => Ok(Some("pending")),
        Ok(pb::WebhookDeliveryStatus::Delivered) => Ok(Some("delivered")),
        Ok(pb::WebhookDeliveryStatus::Failed) => Ok(Some("failed")),
        Err(_) => Err(FieldViolation::new(
            "status",
            "must be PENDING, DELIVERED or FAILED",
        )),
    }
}
