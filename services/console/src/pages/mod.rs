//! One module per page; `layout` is the shell they share.

pub mod customer;
pub mod customers;
pub mod grants;
pub mod invoices;
pub mod layout;
pub mod sign_in;
pub mod webhooks;

use maud::{Markup, html};

/// A "Next page" link to `path` with the query `pairs` (empty values left out).
pub fn next_link(path: &str, pairs: &[(&str, &str)]) -> Markup {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish();
    html! { p { a rel="next" href=(format!("{path}?{query}")) { "Next page" } } }
}
