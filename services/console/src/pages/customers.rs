//! The customers list, with search and paging.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use billing_proto::invoicing::v1 as inv;
use maud::{Markup, html};

use crate::app::App;
use crate::error::PageError;
use crate::form::Fields;
use crate::format;
use crate::pages::layout::page;
use crate::pages::next_link;

/// Customers per page.
const PAGE_SIZE: i32 = 50;

/// GET /customers?q=…&page_token=…
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let query = Fields::query(&uri)?;
    let q = query.get("q");
    let request = inv::ListCustomersRequest {
        page_size: PAGE_SIZE,
        page_token: query.get("page_token").to_owned(),
        query: q.to_owned(),
    };
    let answer = app
        .upstreams
        .invoicing()
        .list_customers(app.upstreams.request(&session.api_key, request))
        .await?
        .into_inner();
    let next = (!answer.next_page_token.is_empty()).then(|| {
        next_link(
            "/customers",
            &[("q", q), ("page_token", &answer.next_page_token)],
        )
    });
    Ok(page(
        &session,
        "Customers",
        html! {
            h1 { "Customers" }
            // A search reads and changes nothing: a GET form without a CSRF
            // token (a token in a URL would leak into logs and history).
            form method="get" action="/customers" role="search" {
                label for="q" { "Search by name, e-mail or external id " }
                input type="search" id="q" name="q" value=(q) maxlength="200";
                " "
                button type="submit" { "Search" }
            }
            @if answer.customers.is_empty() {
                p { @if q.is_empty() { "No customers yet." } @else { "No customer matches “" (q) "”." } }
            } @else {
                table {
                    caption { @if q.is_empty() { "Newest first" } @else { "Matching “" (q) "”" } }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "E-mail" } th scope="col" { "External id" } th scope="col" { "Id" } th scope="col" { "Created" } } }
                    tbody {
                        @for c in &answer.customers {
                            tr {
                                td { a href=(format!("/customers/{}", c.id)) { @if c.name.is_empty() { (c.id) } @else { (c.name) } } }
                                td { (c.email) }
                                td { (c.external_id) }
                                td { code { (c.id) } }
                                td { (format::date(&c.created)) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next { (next) }
        },
    ))
}
