//! A customer's page: balances with the burn-down chart, credit grants with
//! the Available column, invoices, balance alerts and auto top-ups.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use billing_proto::common::v1::Amount;
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use chrono::Utc;
use maud::{Markup, html};
use rust_decimal::Decimal;
use tonic::Code;

use crate::app::App;
use crate::chart::{Step, burn_down, running};
use crate::error::PageError;
use crate::form::Fields;
use crate::format::{self, asset_value, enum_name};
use crate::pages::layout::page;
use crate::pages::next_link;
use crate::upstream::Upstreams;

/// Grants per page of the grants table.
const GRANTS_PAGE_SIZE: i32 = 100;
/// Transactions per upstream page, and at most this many pages for the chart
/// (the newest 2,000 transactions; older ones are summed into its start).
const HISTORY_PAGE_SIZE: i32 = 100;
const HISTORY_PAGES_MAX: usize = 20;
/// Invoices shown (newest first).
const INVOICES_SHOWN: i32 = 20;

/// What the page shows, read from three services.
struct Customer {
    customer: inv::Customer,
    balances: Vec<ledger::CreditBalance>,
    grants: ledger::ListCreditGrantsResponse,
    invoices: Vec<inv::Invoice>,
    history: History,
    top_ups: Vec<inv::AutoTopUp>,
}

/// The newest balance transactions, and whether there are older ones.
struct History {
    transactions: Vec<ledger::CreditBalanceTransaction>,
    truncated: bool,
}

/// GET /customers/{id}?grants_page=…
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let grants_page = Fields::query(&uri)?.get("grants_page").to_owned();
    let data = load(&app.upstreams, &session.api_key, &id, grants_page).await?;
    let title = if data.customer.name.is_empty() {
        data.customer.id.clone()
    } else {
        data.customer.name.clone()
    };
    Ok(page(
        &session,
        &title,
        render(&data, &title, app.clock.now()),
    ))
}

async fn load(
    up: &Upstreams,
    key: &str,
    id: &str,
    grants_page: String,
) -> Result<Customer, PageError> {
    // First the customer (an id or external id; another account's is
    // NOT_FOUND, so the page is a 404), then everything else at once.
    let customer = up
        .invoicing()
        .get_customer(up.request(key, inv::GetCustomerRequest { id: id.to_owned() }))
        .await?
        .into_inner()
        .customer
        .ok_or(PageError::NotFound)?;
    let cus = customer.id.clone();
    let summary = async {
        let request = ledger::GetCreditBalanceSummaryRequest {
            customer: cus.clone(),
            ..Default::default()
        };
        up.ledger()
            .get_credit_balance_summary(up.request(key, request))
            .await
    };
    let grants = async {
        let request = ledger::ListCreditGrantsRequest {
            customer: cus.clone(),
            page_size: GRANTS_PAGE_SIZE,
            page_token: grants_page,
        };
        up.ledger()
            .list_credit_grants(up.request(key, request))
            .await
    };
    let invoices = async {
        let request = inv::ListInvoicesRequest {
            customer: cus.clone(),
            page_size: INVOICES_SHOWN,
            ..Default::default()
        };
        up.invoicing().list_invoices(up.request(key, request)).await
    };
    let (summary, grants, invoices, history) =
        tokio::try_join!(summary, grants, invoices, history(up, key, &cus))?;
    let balances = summary.into_inner().balances;
    let top_ups = top_ups(up, key, &cus, &balances).await?;
    Ok(Customer {
        customer,
        balances,
        grants: grants.into_inner(),
        invoices: invoices.into_inner().invoices,
        history,
        top_ups,
    })
}

async fn history(up: &Upstreams, key: &str, customer: &str) -> Result<History, tonic::Status> {
    let mut transactions = Vec::new();
    let mut page_token = String::new();
    for _ in 0..HISTORY_PAGES_MAX {
        let request = ledger::ListCreditBalanceTransactionsRequest {
            customer: customer.to_owned(),
            page_size: HISTORY_PAGE_SIZE,
            page_token,
            ..Default::default()
        };
        let page = up
            .ledger()
            .list_credit_balance_transactions(up.request(key, request))
            .await?
            .into_inner();
        transactions.extend(page.credit_balance_transactions);
        if page.next_page_token.is_empty() {
            return Ok(History {
                transactions,
                truncated: false,
            });
        }
        page_token = page.next_page_token;
    }
    Ok(History {
        transactions,
        truncated: true,
    })
}

/// The auto top-up of each asset the customer has a balance in.
async fn top_ups(
    up: &Upstreams,
    key: &str,
    customer: &str,
    balances: &[ledger::CreditBalance],
) -> Result<Vec<inv::AutoTopUp>, tonic::Status> {
    let calls = balances
        .iter()
        .filter_map(|b| asset_key(&b.available_balance))
        .map(|asset| {
            let request = inv::GetAutoTopUpRequest {
                customer: customer.to_owned(),
                asset,
            };
            async move {
                up.invoicing()
                    .get_auto_top_up(up.request(key, request))
                    .await
            }
        });
    let mut found = Vec::new();
    for answer in futures_util::future::join_all(calls).await {
        match answer {
            Ok(answer) => found.extend(answer.into_inner().auto_top_up),
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => return Err(status),
        }
    }
    Ok(found)
}

/// The asset of an amount as the APIs name it (`usd`, `pu_…`).
fn asset_key(amount: &Option<Amount>) -> Option<String> {
    use billing_proto::common::v1::amount::Kind;
    match amount.as_ref()?.kind.as_ref()? {
        Kind::Monetary(m) => Some(m.currency.clone()),
        Kind::CustomPricingUnit(p) => Some(p.id.clone()),
    }
}

/// Each asset's running balance, oldest first, ending at its ledger balance.
fn burn_downs(data: &Customer) -> BTreeMap<String, Vec<(chrono::DateTime<Utc>, Decimal)>> {
    let mut steps: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    for t in data.history.transactions.iter().rev() {
        let (amount, sign) = match (&t.credit, &t.debit) {
            (Some(c), _) => (&c.amount, Decimal::ONE),
            (None, Some(d)) => (&d.amount, Decimal::NEGATIVE_ONE),
            (None, None) => continue,
        };
        let (Some((asset, value)), Some(at)) =
            (asset_value(amount), format::to_utc(&t.effective_at))
        else {
            continue;
        };
        steps.entry(asset).or_default().push(Step {
            at,
            delta: value * sign,
        });
    }
    let ledger_balances: BTreeMap<String, Decimal> = data
        .balances
        .iter()
        .filter_map(|b| asset_value(&b.ledger_balance))
        .collect();
    steps
        .into_iter()
        .map(|(asset, mut steps)| {
            steps.sort_by_key(|s| s.at);
            // With older transactions left out, start where they left the
            // balance: the ledger balance less the changes shown.
            let start = match (data.history.truncated, ledger_balances.get(&asset)) {
                (true, Some(total)) => *total - steps.iter().map(|s| s.delta).sum::<Decimal>(),
                _ => Decimal::ZERO,
            };
            let points = running(start, &steps);
            (asset, points)
        })
        .collect()
}

fn render(data: &Customer, title: &str, now: chrono::DateTime<Utc>) -> Markup {
    let c = &data.customer;
    html! {
        h1 { (title) }
        dl class="facts" {
            dt { "Id" } dd { code { (c.id) } }
            @if !c.external_id.is_empty() { dt { "External id" } dd { (c.external_id) } }
            @if !c.email.is_empty() { dt { "E-mail" } dd { (c.email) } }
            @if !c.parent.is_empty() { dt { "Parent" } dd { a href=(format!("/customers/{}", c.parent)) { (c.parent) } } }
            dt { "Created" } dd { (format::time(&c.created)) }
        }
        section aria-labelledby="balance" {
            h2 id="balance" { "Balance" }
            @if data.balances.is_empty() {
                p { "No credits yet." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Asset" } th scope="col" class="num" { "Available" }
                        th scope="col" class="num" { "Pending payment" } th scope="col" class="num" { "Held" }
                        th scope="col" class="num" { "Ledger balance" } th scope="col" { "Depleted" }
                    } }
                    tbody { @for b in &data.balances {
                        tr {
                            th scope="row" { (asset_value(&b.available_balance).map(|a| a.0).unwrap_or_default()) }
                            td class="num" { (format::amount(&b.available_balance)) }
                            td class="num" { (format::amount(&b.pending_balance)) }
                            td class="num" { (format::amount(&b.held_balance)) }
                            td class="num" { (format::amount(&b.ledger_balance)) }
                            td { @if b.alerts.as_ref().is_some_and(|a| a.depleted) { "yes" } @else { "no" } }
                        }
                    } }
                }
                @for (asset, points) in burn_downs(data) {
                    h3 { "Burn-down, " (asset) }
                    (burn_down(&asset, &points, now))
                }
                @if data.history.truncated {
                    p class="hint" { "The charts show the newest " (HISTORY_PAGE_SIZE as usize * HISTORY_PAGES_MAX) " transactions." }
                }
            }
        }
        (grants_section(data))
        (invoices_section(data))
        (alerts_section(data))
        (top_ups_section(data))
    }
}

fn grants_section(data: &Customer) -> Markup {
    let c = &data.customer;
    html! {
        section aria-labelledby="grants" {
            div class="actions" {
                h2 id="grants" { "Credit grants" }
                a id="new-grant" href=(format!("/customers/{}/grants/new", c.id)) aria-label="New credit grant" title="New credit grant" { "+" }
            }
            @if data.grants.credit_grants.is_empty() {
                p { "No credit grants yet." }
            } @else {
                table id="grants-table" {
                    caption { "Newest first" }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Category" } th scope="col" class="num" { "Priority" }
                        th scope="col" { "Effective" } th scope="col" { "Expiry" } th scope="col" class="num" { "Amount" }
                        th scope="col" class="num" { "Available" } th scope="col" { "State" }
                    } }
                    tbody { @for g in &data.grants.credit_grants {
                        tr {
                            td { a href=(format!("/grants/{}", g.id)) { @if g.name.is_empty() { (g.id) } @else { (g.name) } } }
                            td { (enum_name(g.category().as_str_name(), "CREDIT_GRANT_CATEGORY_")) }
                            td class="num" { (g.priority) }
                            td { (format::date(&g.effective_at)) }
                            td { (format::date(&g.expires_at)) }
                            td class="num" { (format::amount(&g.amount)) }
                            td class="num" { (format::amount(&g.available)) }
                            td { (enum_name(g.state().as_str_name(), "CREDIT_GRANT_STATE_")) }
                        }
                    } }
                }
                @if !data.grants.next_page_token.is_empty() {
                    (next_link(&format!("/customers/{}", c.id), &[("grants_page", &data.grants.next_page_token)]))
                }
            }
        }
    }
}

fn invoices_section(data: &Customer) -> Markup {
    html! {
        section aria-labelledby="invoices" {
            h2 id="invoices" { "Invoices" }
            @if data.invoices.is_empty() {
                p { "No invoices yet." }
            } @else {
                table {
                    caption { "The newest " (INVOICES_SHOWN) }
                    thead { tr { th scope="col" { "Invoice" } th scope="col" { "Status" } th scope="col" { "Period" } th scope="col" class="num" { "Amount due" } } }
                    tbody { @for i in &data.invoices {
                        tr {
                            td { a href=(format!("/invoices/{}", i.id)) { (i.id) } }
                            td { (enum_name(i.status().as_str_name(), "INVOICE_STATUS_")) }
                            td { (format::date(&i.period_start)) " – " (format::date(&i.period_end)) }
                            td class="num" { @for t in &i.totals { div { (format::amount(&t.amount_due)) } } }
                        }
                    } }
                }
            }
        }
    }
}

fn alerts_section(data: &Customer) -> Markup {
    let states: Vec<&ledger::BalanceAlertState> = data
        .balances
        .iter()
        .filter_map(|b| b.alerts.as_ref())
        .flat_map(|a| &a.balance_alerts)
        .collect();
    html! {
        section aria-labelledby="alerts" {
            h2 id="alerts" { "Balance alerts" }
            @if states.is_empty() {
                p { "No balance alerts watch this customer." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Title" } th scope="col" class="num" { "Threshold" } th scope="col" { "Watches" } th scope="col" { "State" } } }
                    tbody { @for s in states { @if let Some(a) = &s.balance_alert {
                        tr {
                            td { (a.title) }
                            td class="num" { (format::amount(&a.threshold)) }
                            td { @if a.customer.is_empty() { "every customer" } @else { "this customer" } }
                            td { @if s.triggered { "triggered (balance below)" } @else { "armed" } }
                        }
                    } } }
                }
            }
        }
    }
}

fn top_ups_section(data: &Customer) -> Markup {
    html! {
        section aria-labelledby="top-ups" {
            h2 id="top-ups" { "Auto top-up" }
            @if data.top_ups.is_empty() {
                p { "No auto top-up is set." }
            } @else {
                table {
                    thead { tr { th scope="col" { "When the balance falls to" } th scope="col" { "Buys" } th scope="col" { "Price per credit" } th scope="col" { "Enabled" } } }
                    tbody { @for t in &data.top_ups {
                        tr {
                            td { (format::amount(&t.threshold)) }
                            td { @if t.recharge_to.is_some() { "up to " (format::amount(&t.recharge_to)) } @else { (format::amount(&t.amount)) } }
                            td { (t.unit_amount_decimal) " " (t.currency.to_ascii_uppercase()) " minor units" }
                            td { @if t.enabled { "yes" } @else { "no" } }
                        }
                    } }
                }
            }
        }
    }
}
