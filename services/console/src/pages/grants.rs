//! New credit grant (seed 000's form), a grant's page with its balance
//! transactions, and its void / expire actions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::common::v1::{Amount, CustomPricingUnitAmount, MonetaryAmount, amount::Kind};
use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use chrono::NaiveDate;
use maud::{Markup, html};

use crate::app::App;
use crate::error::PageError;
use crate::form::{FieldErrors, Fields};
use crate::format::{self, enum_name};
use crate::pages::layout::{confirm as confirm_page, field_errors, form_guard, page};
use crate::pages::next_link;
use crate::session::{Session, token};
use crate::upstream::Upstreams;

/// Most prices offered for eligibility (the first pages of the account's).
const PRICE_PAGES_MAX: usize = 5;
/// Transactions per page of a grant's history.
const TRANSACTIONS_PAGE_SIZE: i32 = 100;

/// The ledger's field paths, mapped onto the form's fields.
const FIELD_MAP: &[(&str, &str)] = &[
    ("amount", "amount"),
    ("name", "name"),
    ("effective_at", "effective_date"),
    ("expires_at", "expiry_date"),
    ("priority", "priority"),
    ("category", "category"),
    ("applicability_config", "prices"),
    ("shared_with_descendants", "shared"),
];

/// What the form offers: the account's active prices and pricing units.
struct Choices {
    prices: Vec<inv::Price>,
    units: Vec<ledger::PricingUnit>,
}

async fn choices(up: &Upstreams, key: &str) -> Result<Choices, tonic::Status> {
    let units = async {
        let request = ledger::ListPricingUnitsRequest {
            page_size: 100,
            ..Default::default()
        };
        up.ledger()
            .list_pricing_units(up.request(key, request))
            .await
    };
    let prices = async {
        let mut prices = Vec::new();
        let mut page_token = String::new();
        for _ in 0..PRICE_PAGES_MAX {
            let request = inv::ListPricesRequest {
                page_size: 100,
                page_token,
            };
            let page = up
                .invoicing()
                .list_prices(up.request(key, request))
                .await?
                .into_inner();
            prices.extend(page.prices.into_iter().filter(|p| p.active));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok::<_, tonic::Status>(prices)
    };
    let (units, prices) = tokio::try_join!(units, prices)?;
    Ok(Choices {
        prices,
        units: units.into_inner().pricing_units,
    })
}

async fn customer(up: &Upstreams, key: &str, id: &str) -> Result<inv::Customer, PageError> {
    up.invoicing()
        .get_customer(up.request(key, inv::GetCustomerRequest { id: id.to_owned() }))
        .await?
        .into_inner()
        .customer
        .ok_or(PageError::NotFound)
}

/// GET /customers/{id}/grants/new
pub async fn new(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let customer = customer(&app.upstreams, &session.api_key, &id).await?;
    let choices = choices(&app.upstreams, &session.api_key).await?;
    let request_id = format!("console_{}", token()?);
    Ok(grant_form(
        &session,
        &customer,
        &choices,
        &Fields::default(),
        &FieldErrors::default(),
        &request_id,
    ))
}

/// POST /customers/{id}/grants
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let (session, fields) = app.posted(&headers, &body)?;
    let up = &app.upstreams;
    let customer = customer(up, &session.api_key, &id).await?;
    let request_id = fields.get("request_id").to_owned();
    let errors = match grant_request(&customer.id, &fields) {
        Ok(request) => match up
            .ledger()
            .create_credit_grant(up.request(&session.api_key, request))
            .await
        {
            Ok(_) => {
                return Ok(
                    Redirect::to(&format!("/customers/{}#grants", customer.id)).into_response()
                );
            }
            Err(status) => FieldErrors::from_status(&status, FIELD_MAP).ok_or(status)?,
        },
        Err(errors) => errors,
    };
    let choices = choices(up, &session.api_key).await?;
    let page = grant_form(&session, &customer, &choices, &fields, &errors, &request_id);
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

/// The CreateCreditGrant request a filled form asks for, or what is wrong
/// with it before the ledger need be asked.
fn grant_request(
    customer: &str,
    fields: &Fields,
) -> Result<ledger::CreateCreditGrantRequest, FieldErrors> {
    let mut errors = FieldErrors::default();
    let amount = amount(fields.get("asset"), fields.get("amount"))
        .map_err(|e| errors.add("amount", e))
        .ok();
    let mut date = |field: &'static str| {
        let text = fields.get(field);
        if text.is_empty() {
            return None;
        }
        match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(day) => day.and_hms_opt(0, 0, 0).map(|t| prost_types::Timestamp {
                seconds: t.and_utc().timestamp(),
                nanos: 0,
            }),
            Err(_) => {
                errors.add(field, "Enter a date as YYYY-MM-DD.");
                None
            }
        }
    };
    let effective_at = date("effective_date");
    let expires_at = date("expiry_date");
    let priority = match fields.get("priority") {
        "" => None,
        text => text
            .parse::<u32>()
            .map_err(|_| errors.add("priority", "Enter a whole number from 0 to 100."))
            .ok(),
    };
    let category = match fields.get("category") {
        "promotional" => ledger::CreditGrantCategory::Promotional,
        _ => ledger::CreditGrantCategory::Paid,
    };
    let prices: Vec<String> = fields
        .all("prices")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let price_type = if prices.is_empty() {
        ledger::PriceType::Metered
    } else {
        ledger::PriceType::Unspecified
    };
    Ok(ledger::CreateCreditGrantRequest {
        request_id: fields.get("request_id").to_owned(),
        customer: customer.to_owned(),
        name: fields.get("name").to_owned(),
        amount: amount.flatten(),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: price_type.into(),
                prices,
            }),
        }),
        category: category.into(),
        effective_at,
        expires_at,
        priority,
        shared_with_descendants: fields.get("shared") == "on",
        ..Default::default()
    })
}

/// The amount typed in whole units of the asset chosen (`20.00` usd is
/// 2000 cents); more decimals than the currency has are refused, never
/// rounded.
fn amount(asset: &str, text: &str) -> Result<Option<Amount>, String> {
    if text.is_empty() {
        return Err("Enter an amount.".into());
    }
    if asset.starts_with("pu_") {
        return Ok(Some(Amount {
            kind: Some(Kind::CustomPricingUnit(CustomPricingUnitAmount {
                id: asset.to_owned(),
                value: text.to_owned(),
            })),
        }));
    }
    let currency = billing_money::Currency::parse(asset)
        .map_err(|_| format!("Choose a currency or pricing unit (not {asset:?})."))?;
    let value =
        billing_money::parse_value(&text.replace(',', ""), currency.exponent()).map_err(|_| {
            format!(
                "Enter an amount in {} with at most {} decimals, such as 20.00.",
                currency.code().to_ascii_uppercase(),
                currency.exponent()
            )
        })?;
    Ok(Some(Amount {
        kind: Some(Kind::Monetary(MonetaryAmount {
            currency: currency.code().to_owned(),
            value,
        })),
    }))
}

fn grant_form(
    session: &Session,
    customer: &inv::Customer,
    choices: &Choices,
    values: &Fields,
    errors: &FieldErrors,
    request_id: &str,
) -> Markup {
    let mut currencies: Vec<&str> = choices
        .prices
        .iter()
        .map(|p| p.currency.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    currencies.push("usd");
    currencies.sort_unstable();
    currencies.dedup();
    let asset = values.get("asset");
    let checked: Vec<&str> = values.all("prices");
    let input =
        |id: &'static str, label: &'static str, kind: &'static str, hint: Option<&'static str>| {
            let invalid = !errors.of(id).is_empty();
            html! {
                label for=(id) { (label) }
                @if let Some(hint) = hint { p class="hint" id=(format!("{id}-hint")) { (hint) } }
                input type=(kind) id=(id) name=(id) value=(values.get(id))
                    aria-invalid=[invalid.then_some("true")]
                    aria-describedby=[invalid.then(|| format!("{id}-error"))];
                (field_errors(id, errors.of(id)))
            }
        };
    let name = if customer.name.is_empty() {
        &customer.id
    } else {
        &customer.name
    };
    page(
        session,
        "New credit grant",
        html! {
            h1 { "New credit grant" }
            p { "For " a href=(format!("/customers/{}", customer.id)) { (name) } }
            @if !errors.general.is_empty() {
                ul class="errors" role="alert" { @for e in &errors.general { li { (e) } } }
            }
            form class="stacked" method="post" action=(format!("/customers/{}/grants", customer.id)) novalidate {
                (form_guard(session, Some(request_id)))
                (input("name", "Name", "text", Some("Shown to you and on invoices; optional.")))
                (input("amount", "Amount", "text", Some("In whole units, such as 20.00.")))
                label for="asset" { "Currency or pricing unit" }
                select id="asset" name="asset" {
                    @for c in &currencies { option value=(c) selected[asset == *c] { (c.to_ascii_uppercase()) } }
                    @for u in &choices.units { option value=(u.id) selected[asset == u.id] { (u.display_name) " (" (u.id) ")" } }
                }
                (input("effective_date", "Effective date", "date", Some("Optional; today when empty.")))
                (input("expiry_date", "Expiry date", "date", Some("Optional; never when empty.")))
                (input("priority", "Priority", "number", Some("0 to 100; lower is applied first. Default 50.")))
                label for="category" { "Category" }
                select id="category" name="category" {
                    option value="paid" selected[values.get("category") != "promotional"] { "Paid" }
                    option value="promotional" selected[values.get("category") == "promotional"] { "Promotional" }
                }
                fieldset aria-describedby="prices-hint" {
                    legend { "Eligibility (usage-based prices)" }
                    p class="hint" id="prices-hint" { "None checked: every usage-based price." }
                    @for p in &choices.prices {
                        div {
                            input type="checkbox" id=(format!("price-{}", p.id)) name="prices" value=(p.id) checked[checked.contains(&p.id.as_str())];
                            " "
                            label for=(format!("price-{}", p.id)) class="inline" {
                                @if p.nickname.is_empty() { (p.id) } @else { (p.nickname) " (" (p.id) ")" }
                            }
                        }
                    }
                    (field_errors("prices", errors.of("prices")))
                }
                div {
                    input type="checkbox" id="shared" name="shared" checked[values.get("shared") == "on"];
                    " "
                    label for="shared" class="inline" { "Share with child customers (a credit pool)" }
                }
                button type="submit" { "Create grant" }
            }
        },
    )
}

/// GET /grants/{id}?page_token=…
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let up = &app.upstreams;
    let key = &session.api_key;
    let grant = grant(up, key, &id).await?;
    let request = ledger::ListCreditBalanceTransactionsRequest {
        customer: grant.customer.clone(),
        credit_grant: grant.id.clone(),
        page_size: TRANSACTIONS_PAGE_SIZE,
        page_token: Fields::query(&uri)?.get("page_token").to_owned(),
    };
    let page_of = up
        .ledger()
        .list_credit_balance_transactions(up.request(key, request))
        .await?
        .into_inner();
    let title = if grant.name.is_empty() {
        grant.id.clone()
    } else {
        grant.name.clone()
    };
    let state = grant.state();
    let open = !matches!(
        state,
        ledger::CreditGrantState::Voided | ledger::CreditGrantState::Expired
    );
    Ok(page(
        &session,
        &title,
        html! {
            h1 { "Credit grant " (title) }
            dl class="facts" {
                dt { "Id" } dd { code { (grant.id) } }
                dt { "Customer" } dd { a href=(format!("/customers/{}", grant.customer)) { (grant.customer) } }
                dt { "Amount" } dd { (format::amount(&grant.amount)) }
                dt { "Available" } dd { (format::amount(&grant.available)) }
                dt { "State" } dd { (enum_name(state.as_str_name(), "CREDIT_GRANT_STATE_")) }
                dt { "Category" } dd { (enum_name(grant.category().as_str_name(), "CREDIT_GRANT_CATEGORY_")) }
                dt { "Priority" } dd { (grant.priority) }
                dt { "Effective" } dd { (format::time(&grant.effective_at)) }
                dt { "Expiry" } dd { (format::time(&grant.expires_at)) }
            }
            @if open {
                div class="actions" {
                    a href=(format!("/grants/{}/void", grant.id)) { "Void grant…" }
                    a href=(format!("/grants/{}/expire", grant.id)) { "Expire now…" }
                }
            }
            h2 { "Balance transactions" }
            @if page_of.credit_balance_transactions.is_empty() {
                p { "None." }
            } @else {
                table {
                    caption { "Newest first" }
                    thead { tr { th scope="col" { "Effective" } th scope="col" { "Type" } th scope="col" class="num" { "Amount" } th scope="col" { "Invoice" } th scope="col" { "Id" } } }
                    tbody { @for t in &page_of.credit_balance_transactions { (transaction_row(t)) } }
                }
                @if !page_of.next_page_token.is_empty() {
                    (next_link(&format!("/grants/{}", grant.id), &[("page_token", &page_of.next_page_token)]))
                }
            }
        },
    ))
}

fn transaction_row(t: &ledger::CreditBalanceTransaction) -> Markup {
    let (kind, amount, invoice) = match (&t.credit, &t.debit) {
        (Some(c), _) => (
            enum_name(c.r#type().as_str_name(), "CREDIT_TYPE_"),
            format::amount(&c.amount),
            c.invoice.as_str(),
        ),
        (None, Some(d)) => (
            enum_name(d.r#type().as_str_name(), "DEBIT_TYPE_"),
            format!("−{}", format::amount(&d.amount)),
            d.invoice.as_str(),
        ),
        (None, None) => (String::new(), String::new(), ""),
    };
    html! {
        tr {
            td { (format::time(&t.effective_at)) }
            td { (kind) }
            td class="num" { (amount) }
            td { @if !invoice.is_empty() { a href=(format!("/invoices/{invoice}")) { (invoice) } } }
            td { code { (t.id) } }
        }
    }
}

async fn grant(up: &Upstreams, key: &str, id: &str) -> Result<ledger::CreditGrant, PageError> {
    up.ledger()
        .get_credit_grant(up.request(key, ledger::GetCreditGrantRequest { id: id.to_owned() }))
        .await?
        .into_inner()
        .credit_grant
        .ok_or(PageError::NotFound)
}

/// What a grant action asks and does.
fn action(name: &str) -> Result<(&'static str, &'static str), PageError> {
    match name {
        "void" => Ok(("Void this grant?", "Void grant")),
        "expire" => Ok(("Expire this grant now?", "Expire grant")),
        _ => Err(PageError::NotFound),
    }
}

/// GET /grants/{id}/{void|expire}: the confirmation.
pub async fn confirm(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let (_, session) = app.session(&headers)?;
    let (question, button) = action(&name)?;
    let grant = grant(&app.upstreams, &session.api_key, &id).await?;
    let detail = html! {
        p { "Grant " strong { (if grant.name.is_empty() { &grant.id } else { &grant.name }) } " has "
            (format::amount(&grant.available)) " available. Its remaining credits stop paying invoices; credits already applied stay applied." }
    };
    let back = format!("/grants/{}", grant.id);
    Ok(confirm_page(
        &session, question, detail, &back, &name, button,
    )?)
}

/// POST /grants/{id}/{void|expire}
pub async fn act(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    action(&name)?;
    let (session, fields) = app.posted(&headers, &body)?;
    let up = &app.upstreams;
    let request_id = fields.get("request_id").to_owned();
    if name == "void" {
        let request = ledger::VoidCreditGrantRequest {
            request_id,
            id: id.clone(),
        };
        up.ledger()
            .void_credit_grant(up.request(&session.api_key, request))
            .await?;
    } else {
        let request = ledger::ExpireCreditGrantRequest {
            request_id,
            id: id.clone(),
        };
        up.ledger()
            .expire_credit_grant(up.request(&session.api_key, request))
            .await?;
    }
    Ok(Redirect::to(&format!("/grants/{id}")).into_response())
}
