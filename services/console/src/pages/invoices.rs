//! An invoice: its lines, a "Credit grant applied" line per grant under the
//! subtotal, the amount due, and the finalize / void / mark-paid actions.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::common::v1::Amount;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use maud::{Markup, html};
use rust_decimal::Decimal;

use crate::app::App;
use crate::error::PageError;
use crate::format::{self, asset_value, enum_name};
use crate::pages::layout::{confirm as confirm_page, page};
use crate::upstream::Upstreams;

/// Most grant names looked up for one invoice (others show their id).
const GRANT_NAMES_MAX: usize = 50;

/// Credits one grant applied to the invoice, in one asset.
struct Applied {
    grant: String,
    asset: String,
    total: Decimal,
    /// The first application's amount, for its asset and scale.
    sample: Option<Amount>,
}

async fn invoice(up: &Upstreams, key: &str, id: &str) -> Result<inv::Invoice, PageError> {
    up.invoicing()
        .get_invoice(up.request(key, inv::GetInvoiceRequest { id: id.to_owned() }))
        .await?
        .into_inner()
        .invoice
        .ok_or(PageError::NotFound)
}

/// Each grant's credits on the invoice, in application order.
fn applied(invoice: &inv::Invoice) -> Vec<Applied> {
    let mut by_grant: Vec<Applied> = Vec::new();
    for application in invoice.lines.iter().flat_map(|l| &l.credit_applications) {
        let Some((asset, value)) = asset_value(&application.amount) else {
            continue;
        };
        match by_grant
            .iter_mut()
            .find(|a| a.grant == application.credit_grant && a.asset == asset)
        {
            Some(found) => found.total += value,
            None => by_grant.push(Applied {
                grant: application.credit_grant.clone(),
                asset,
                total: value,
                sample: application.amount.clone(),
            }),
        }
    }
    by_grant
}

/// `total` in the asset of `sample`, formatted like any amount.
fn in_asset(total: Decimal, sample: &Option<Amount>) -> String {
    match asset_value(sample) {
        Some((asset, _)) => format!("{} {asset}", format::group(&total.to_string())),
        None => format::group(&total.to_string()),
    }
}

/// The names of the grants that paid (a failed lookup shows the id).
async fn grant_names(up: &Upstreams, key: &str, applied: &[Applied]) -> BTreeMap<String, String> {
    let ids: std::collections::BTreeSet<&str> = applied
        .iter()
        .map(|a| a.grant.as_str())
        .take(GRANT_NAMES_MAX)
        .collect();
    let calls = ids.into_iter().map(|id| async move {
        let request = ledger::GetCreditGrantRequest { id: id.to_owned() };
        let name = up
            .ledger()
            .get_credit_grant(up.request(key, request))
            .await
            .ok()
            .and_then(|a| a.into_inner().credit_grant)
            .map(|g| g.name)
            .filter(|n| !n.is_empty());
        (id.to_owned(), name.unwrap_or_else(|| id.to_owned()))
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}

/// GET /invoices/{id}
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let up = &app.upstreams;
    let invoice = invoice(up, &session.api_key, &id).await?;
    let applied = applied(&invoice);
    let names = grant_names(up, &session.api_key, &applied).await;
    let status = invoice.status();
    let actions: &[(&str, &str)] = match status {
        inv::InvoiceStatus::Draft => {
            &[("finalize", "Finalize invoice…"), ("void", "Void invoice…")]
        }
        inv::InvoiceStatus::Open => &[("mark-paid", "Mark paid…"), ("void", "Void invoice…")],
        _ => &[],
    };
    Ok(page(
        &session,
        &format!("Invoice {}", invoice.id),
        html! {
            h1 { "Invoice " (invoice.id) }
            dl class="facts" {
                dt { "Status" } dd id="invoice-status" { (enum_name(status.as_str_name(), "INVOICE_STATUS_")) }
                dt { "Customer" } dd { a href=(format!("/customers/{}", invoice.customer)) { (invoice.customer) } }
                dt { "Period" } dd { (format::time(&invoice.period_start)) " – " (format::time(&invoice.period_end)) }
                dt { "Reason" } dd { (enum_name(invoice.billing_reason().as_str_name(), "BILLING_REASON_")) }
                @if invoice.finalized_at.is_some() { dt { "Finalized" } dd { (format::time(&invoice.finalized_at)) } }
                @if invoice.paid_at.is_some() { dt { "Paid" } dd { (format::time(&invoice.paid_at)) } }
                @if invoice.voided_at.is_some() { dt { "Voided" } dd { (format::time(&invoice.voided_at)) } }
            }
            @if let Some(error) = invoice.last_finalization_error.as_ref().or(invoice.last_void_error.as_ref()) {
                p role="alert" class="errors" { "Last attempt failed (" (error.code) "): " (error.message) }
            }
            @if !actions.is_empty() {
                div class="actions" { @for (action, label) in actions { a href=(format!("/invoices/{}/{action}", invoice.id)) { (label) } } }
            }
            table id="invoice-lines" {
                caption { "Lines" }
                thead { tr { th scope="col" { "Description" } th scope="col" class="num" { "Quantity" } th scope="col" class="num" { "Unit price (minor units)" } th scope="col" class="num" { "Amount" } } }
                tbody { @for line in &invoice.lines {
                    tr {
                        td { @if line.description.is_empty() { (line.price) } @else { (line.description) } }
                        td class="num" { (line.quantity) }
                        td class="num" { (line.unit_amount_decimal) }
                        td class="num" { (format::amount(&line.amount)) }
                    }
                } }
                @for total in &invoice.totals { (total_rows(total, &applied, &names)) }
            }
        },
    ))
}

/// Subtotal, a "Credit grant applied" row per grant in this asset, what was
/// converted, and the amount due.
fn total_rows(
    total: &inv::InvoiceTotal,
    applied: &[Applied],
    names: &BTreeMap<String, String>,
) -> Markup {
    let asset = asset_value(&total.subtotal)
        .map(|a| a.0)
        .unwrap_or_default();
    html! {
        tbody class="totals" {
            tr { th scope="row" colspan="3" { "Subtotal" } td class="num" { (format::amount(&total.subtotal)) } }
            @for a in applied.iter().filter(|a| a.asset == asset) {
                tr class="applied" {
                    th scope="row" colspan="3" {
                        "Credit grant applied — "
                        a href=(format!("/grants/{}", a.grant)) { (names.get(&a.grant).unwrap_or(&a.grant)) }
                    }
                    td class="num" { "−" (in_asset(a.total, &a.sample)) }
                }
            }
            @if nonzero(&total.converted) {
                tr { th scope="row" colspan="3" { "Converted to money" } td class="num" { "−" (format::amount(&total.converted)) } }
            }
            @if nonzero(&total.from_conversions) {
                tr { th scope="row" colspan="3" { "From converted units" } td class="num" { (format::amount(&total.from_conversions)) } }
            }
            tr { th scope="row" colspan="3" { "Amount due" } td class="num" { strong { (format::amount(&total.amount_due)) } } }
        }
    }
}

fn nonzero(amount: &Option<Amount>) -> bool {
    asset_value(amount).is_some_and(|(_, value)| !value.is_zero())
}

/// What an invoice action asks and does.
fn action(name: &str) -> Result<(&'static str, &'static str, &'static str), PageError> {
    match name {
        "finalize" => Ok((
            "Finalize this invoice?",
            "Its lines freeze and credits are applied.",
            "Finalize invoice",
        )),
        "void" => Ok((
            "Void this invoice?",
            "Credits it took are given back to their grants.",
            "Void invoice",
        )),
        "mark-paid" => Ok((
            "Mark this invoice paid?",
            "Record that what was due was paid outside.",
            "Mark paid",
        )),
        _ => Err(PageError::NotFound),
    }
}

/// GET /invoices/{id}/{finalize|void|mark-paid}: the confirmation.
pub async fn confirm(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let (question, detail, button) = action(&name)?;
    let invoice = invoice(&app.upstreams, &session.api_key, &id).await?;
    let detail = html! { p { "Invoice " (invoice.id) ". " (detail) } };
    let back = format!("/invoices/{}", invoice.id);
    Ok(confirm_page(
        &session, question, detail, &back, &name, button,
    )?)
}

/// POST /invoices/{id}/{finalize|void|mark-paid}
pub async fn act(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    action(&name)?;
    let (session, fields) = app.posted(&headers, &body)?;
    let up = &app.upstreams;
    let key = &session.api_key;
    let request_id = fields.get("request_id").to_owned();
    match name.as_str() {
        "finalize" => {
            let request = inv::FinalizeInvoiceRequest {
                request_id,
                id: id.clone(),
            };
            up.invoicing()
                .finalize_invoice(up.request(key, request))
                .await?;
        }
        "void" => {
            let request = inv::VoidInvoiceRequest {
                request_id,
                id: id.clone(),
            };
            up.invoicing()
                .void_invoice(up.request(key, request))
                .await?;
        }
        _ => {
            let request = inv::MarkInvoicePaidRequest {
                request_id,
                id: id.clone(),
            };
            up.invoicing()
                .mark_invoice_paid(up.request(key, request))
                .await?;
        }
    }
    Ok(Redirect::to(&format!("/invoices/{id}")).into_response())
}
