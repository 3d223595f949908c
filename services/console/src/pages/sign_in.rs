//! Signing in with an API key, and out.
//!
//! The sign-in form has no session yet, so its CSRF token is a double
//! submit: the same random value in a short-lived HttpOnly, SameSite=Strict
//! cookie and in the form.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::invoicing::v1 as inv;
use maud::{Markup, html};
use tonic::Code;

use crate::app::App;
use crate::error::PageError;
use crate::form::{FieldErrors, Fields};
use crate::pages::layout::{bare, field_errors};
use crate::session::{SESSION_COOKIE, SIGN_IN_COOKIE, cookie, same, set_cookie, token};

/// How long the sign-in form may stay open, in seconds.
const SIGN_IN_FORM_SECONDS: u64 = 600;

/// GET /sign-in (also when signed in: a key revoked meanwhile sends its
/// session here, and signing in again replaces it).
pub async fn show(State(app): State<App>) -> Result<Response, PageError> {
    form(&app, StatusCode::OK, &FieldErrors::default())
}

fn form(app: &App, status: StatusCode, errors: &FieldErrors) -> Result<Response, PageError> {
    let csrf = token()?;
    let cookie = set_cookie(
        SIGN_IN_COOKIE,
        &csrf,
        Some(SIGN_IN_FORM_SECONDS),
        app.secure_cookies,
    );
    let page = bare("Sign in", sign_in_form(&csrf, errors));
    Ok((status, [(SET_COOKIE, cookie)], page).into_response())
}

fn sign_in_form(csrf: &str, errors: &FieldErrors) -> Markup {
    let described = (!errors.of("api_key").is_empty()).then_some("api_key-error");
    html! {
        h1 { "Sign in" }
        p { "Sign in with one of your account's API keys. The key stays on the console's server; your browser only gets a session cookie." }
        form class="stacked" method="post" action="/sign-in" {
            input type="hidden" name="csrf" value=(csrf);
            label for="api_key" { "API key" }
            input type="password" id="api_key" name="api_key" autocomplete="off" required
                aria-describedby=[described] aria-invalid=[described.map(|_| "true")];
            (field_errors("api_key", errors.of("api_key")))
            button type="submit" { "Sign in" }
        }
    }
}

/// POST /sign-in
pub async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let fields = Fields::parse(&body)?;
    let expected = cookie(&headers, SIGN_IN_COOKIE).ok_or(PageError::Csrf)?;
    if !same(fields.get("csrf"), expected) {
        return Err(PageError::Csrf);
    }
    let key = fields.get("api_key");
    let mut errors = FieldErrors::default();
    if key.is_empty() {
        errors.add("api_key", "Enter an API key.");
        return form(&app, StatusCode::BAD_REQUEST, &errors);
    }
    // Any call proves the key: the smallest read of the account.
    let probe = inv::ListCustomersRequest {
        page_size: 1,
        ..Default::default()
    };
    match app
        .upstreams
        .invoicing()
        .list_customers(app.upstreams.request(key, probe))
        .await
    {
        Ok(_) => {}
        Err(status) if status.code() == Code::Unauthenticated => {
            errors.add("api_key", "This key is not valid.");
            return form(&app, StatusCode::BAD_REQUEST, &errors);
        }
        Err(status) => return Err(status.into()),
    }
    if let Ok((old, _)) = app.session(&headers) {
        app.sessions.remove(&old);
    }
    let id = app.sessions.create(key.to_owned())?;
    let mut response = Redirect::to("/customers").into_response();
    let set = response.headers_mut();
    for cookie in [
        set_cookie(SESSION_COOKIE, &id, None, app.secure_cookies),
        set_cookie(SIGN_IN_COOKIE, "", Some(0), app.secure_cookies),
    ] {
        if let Ok(value) = cookie.parse() {
            set.append(SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// POST /sign-out
pub async fn sign_out(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let (id, session) = app.session(&headers)?;
    Fields::parse(&body)?.check_csrf(&session)?;
    app.sessions.remove(&id);
    let cookie = set_cookie(SESSION_COOKIE, "", Some(0), app.secure_cookies);
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/sign-in")).into_response())
}
