//! What can go wrong while serving a page, and the one place it becomes a
//! response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use tonic::Code;

use crate::pages::layout::bare;
use crate::session::RandomError;

/// Why a page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No session (or it ended): sign in first.
    #[error("not signed in")]
    SignedOut,
    /// A form without this session's CSRF token.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    /// No such page, or not this account's.
    #[error("not found")]
    NotFound,
    /// A request the console cannot read (a malformed form or query).
    #[error("{0}")]
    BadRequest(String),
    /// A service refused or failed.
    #[error("upstream: {0}")]
    Upstream(#[from] tonic::Status),
    /// No randomness for a token.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            Self::SignedOut => return Redirect::to("/sign-in").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form was not sent from this console (its CSRF token is missing or wrong). \
                 Go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page in this account.".to_owned(),
            ),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad request", why.clone()),
            Self::Upstream(status) => match status.code() {
                Code::NotFound => (
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such page in this account.".to_owned(),
                ),
                Code::Unauthenticated => return Redirect::to("/sign-in").into_response(),
                Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => (
                    StatusCode::BAD_REQUEST,
                    "Refused",
                    status.message().to_owned(),
                ),
                Code::PermissionDenied => (
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    status.message().to_owned(),
                ),
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "upstream unavailable");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Unavailable",
                        "A service did not answer. Try again in a moment.".to_owned(),
                    )
                }
                _ => {
                    tracing::error!(code = ?status.code(), message = status.message(), "upstream failed");
                    (
                        StatusCode::BAD_GATEWAY,
                        "Something went wrong",
                        "A service failed; the error is in the console's log.".to_owned(),
                    )
                }
            },
            Self::Random(error) => {
                tracing::error!(%error, "cannot make a token");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The error is in the console's log.".to_owned(),
                )
            }
        };
        let page = bare(
            title,
            html! {
                h1 { (title) }
                p { (detail) }
                p { a href="/customers" { "Back to customers" } }
            },
        );
        (status, page).into_response()
    }
}
