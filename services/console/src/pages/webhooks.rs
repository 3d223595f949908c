//! Webhook endpoints and their deliveries (the notifier).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use billing_proto::webhooks::v1 as wh;
use maud::{Markup, html};

use crate::app::App;
use crate::error::PageError;
use crate::form::Fields;
use crate::format::{self, enum_name};
use crate::pages::layout::page;
use crate::pages::next_link;

/// Rows per page.
const PAGE_SIZE: i32 = 50;

/// GET /webhooks?page_token=…
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let up = &app.upstreams;
    let request = wh::ListWebhookEndpointsRequest {
        page_size: PAGE_SIZE,
        page_token: Fields::query(&uri)?.get("page_token").to_owned(),
    };
    let answer = up
        .notifier()
        .list_webhook_endpoints(up.request(&session.api_key, request))
        .await?
        .into_inner();
    Ok(page(
        &session,
        "Webhook endpoints",
        html! {
            h1 { "Webhook endpoints" }
            @if answer.webhook_endpoints.is_empty() {
                p { "No webhook endpoints. Create one with " code { "CreateWebhookEndpoint" } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                    tbody { @for e in &answer.webhook_endpoints {
                        tr {
                            td { a href=(format!("/webhooks/{}", e.id)) { (e.url) } }
                            td { (e.enabled_events.join(", ")) }
                            td { (enum_name(e.status().as_str_name(), "WEBHOOK_ENDPOINT_STATUS_")) @if !e.disabled_reason.is_empty() { " (" (e.disabled_reason) ")" } }
                            td { (format::date(&e.created)) }
                        }
                    } }
                }
                @if !answer.next_page_token.is_empty() { (next_link("/webhooks", &[("page_token", &answer.next_page_token)])) }
            }
        },
    ))
}

/// GET /webhooks/{id}?page_token=…
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let up = &app.upstreams;
    let key = &session.api_key;
    let endpoint = up
        .notifier()
        .get_webhook_endpoint(up.request(key, wh::GetWebhookEndpointRequest { id: id.clone() }))
        .await?
        .into_inner()
        .webhook_endpoint
        .ok_or(PageError::NotFound)?;
    let request = wh::ListWebhookDeliveriesRequest {
        webhook_endpoint: endpoint.id.clone(),
        page_size: PAGE_SIZE,
        page_token: Fields::query(&uri)?.get("page_token").to_owned(),
        ..Default::default()
    };
    let deliveries = up
        .notifier()
        .list_webhook_deliveries(up.request(key, request))
        .await?
        .into_inner();
    Ok(page(
        &session,
        "Webhook endpoint",
        html! {
            h1 { "Webhook endpoint" }
            dl class="facts" {
                dt { "URL" } dd { (endpoint.url) }
                dt { "Id" } dd { code { (endpoint.id) } }
                dt { "Events" } dd { (endpoint.enabled_events.join(", ")) }
                dt { "Status" } dd { (enum_name(endpoint.status().as_str_name(), "WEBHOOK_ENDPOINT_STATUS_")) }
                @if !endpoint.description.is_empty() { dt { "Description" } dd { (endpoint.description) } }
                @if endpoint.failing_since.is_some() { dt { "Failing since" } dd { (format::time(&endpoint.failing_since)) } }
            }
            h2 { "Deliveries" }
            @if deliveries.webhook_deliveries.is_empty() {
                p { "No deliveries yet." }
            } @else {
                table {
                    caption { "Newest first" }
                    thead { tr { th scope="col" { "Event" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" class="num" { "Attempts" } th scope="col" { "Last answer" } th scope="col" { "Created" } } }
                    tbody { @for d in &deliveries.webhook_deliveries {
                        tr {
                            td { code { (d.event) } }
                            td { (d.event_type) }
                            td { (enum_name(d.status().as_str_name(), "WEBHOOK_DELIVERY_STATUS_")) }
                            td class="num" { (d.attempts) }
                            td { @if d.last_http_status > 0 { "HTTP " (d.last_http_status) } " " (d.last_error) }
                            td { (format::time(&d.created)) }
                        }
                    } }
                }
                @if !deliveries.next_page_token.is_empty() {
                    (next_link(&format!("/webhooks/{}", endpoint.id), &[("page_token", &deliveries.next_page_token)]))
                }
            }
        },
    ))
}
