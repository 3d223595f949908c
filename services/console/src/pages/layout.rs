//! The page shell: semantic landmarks, a skip link, the navigation and the
//! sign-out form; readable without the style sheet.

use maud::{DOCTYPE, Markup, html};

use crate::session::{RandomError, Session, token};

/// The style sheet, served at `/console.css` (a separate file so the
/// Content-Security-Policy can forbid inline styles and scripts).
pub const STYLE: &str = include_str!("console.css");

/// A page for a signed-in operator.
pub fn page(session: &Session, title: &str, body: Markup) -> Markup {
    shell(
        title,
        html! {
            header {
                nav aria-label="Main" {
                    ul {
                        li { a href="/customers" { "Customers" } }
                        li { a href="/webhooks" { "Webhooks" } }
                    }
                    form method="post" action="/sign-out" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        span { "Key …" (session.key_hint()) " " }
                        button type="submit" { "Sign out" }
                    }
                }
            }
        },
        body,
    )
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    shell(title, html! {}, body)
}

fn shell(title: &str, header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Billing console" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                (header)
                main id="main" { (body) }
            }
        }
    }
}

/// The hidden fields every form carries: the CSRF token and, for forms that
/// create or change something, a request id fixed when the form was shown
/// (so a double submit is one request to the service).
pub fn form_guard(session: &Session, request_id: Option<&str>) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(session.csrf);
        @if let Some(id) = request_id {
            input type="hidden" name="request_id" value=(id);
        }
    }
}

/// A list of errors for a field, linked to its input by `id`.
pub fn field_errors(id: &str, errors: &[String]) -> Markup {
    html! {
        @if !errors.is_empty() {
            ul id=(format!("{id}-error")) class="field-error" role="alert" {
                @for error in errors { li { (error) } }
            }
        }
    }
}

/// The confirmation step of action `name` on the object at `back` (works
/// without JavaScript): a form that posts to `{back}/{name}` with a fresh
/// request id, and a way back.
pub fn confirm(
    session: &Session,
    question: &str,
    detail: Markup,
    back: &str,
    name: &str,
    button: &str,
) -> Result<Markup, RandomError> {
    let request_id = format!("console_{}", token()?);
    Ok(page(
        session,
        question,
        html! {
            h1 { (question) }
            (detail)
            form method="post" action=(format!("{back}/{name}")) class="actions" {
                (form_guard(session, Some(&request_id)))
                button type="submit" class="danger" { (button) }
                a href=(back) { "Cancel" }
            }
        },
    ))
}
