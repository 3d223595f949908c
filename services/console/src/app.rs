//! The console's HTTP server: routes, security headers, serve until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use billing_server::clock::Clock;

use crate::config::Config;
use crate::error::PageError;
use crate::form::{FORM_BYTES_MAX, Fields};
use crate::pages::{customer, customers, grants, invoices, layout, sign_in, webhooks};
use crate::session::{SESSION_COOKIE, Session, Sessions, cookie};
use crate::upstream::{UpstreamError, Upstreams};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct App {
    /// Signed-in sessions.
    pub sessions: Sessions,
    /// The services.
    pub upstreams: Upstreams,
    /// Mark cookies `Secure`.
    pub secure_cookies: bool,
    /// Where "now" comes from (the end of the burn-down charts).
    pub clock: Clock,
}

impl App {
    /// The session of a form post and its fields, once its CSRF token is
    /// checked: every handler that changes something starts here.
    pub fn posted(&self, headers: &HeaderMap, body: &[u8]) -> Result<(Session, Fields), PageError> {
        let (_, session) = self.session(headers)?;
        let fields = Fields::parse(body)?;
        fields.check_csrf(&session)?;
        Ok((session, fields))
    }

    /// The signed-in session of this request (and its id).
    pub fn session(&self, headers: &HeaderMap) -> Result<(String, Session), PageError> {
        let id = cookie(headers, SESSION_COOKIE).ok_or(PageError::SignedOut)?;
        let session = self.sessions.get(id).ok_or(PageError::SignedOut)?;
        Ok((id.to_owned(), session))
    }
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An upstream address is unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound, ready-to-serve console.
#[derive(Debug)]
pub struct Console {
    listener: TcpListener,
    router: Router,
}

impl Console {
    /// Binds the listen address (port 0: a free port) and builds the routes.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let app = App {
            sessions: Sessions::new(config.session_idle, config.sessions_max),
            upstreams: Upstreams::new(config)?,
            secure_cookies: config.secure_cookies,
            clock: Clock::system(),
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        Ok(Self {
            listener,
            router: routes(app),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn routes(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/customers") }))
        .route("/console.css", get(style))
        .route("/healthz", get(|| async { "ok" }))
        .route("/sign-in", get(sign_in::show).post(sign_in::submit))
        .route("/sign-out", axum::routing::post(sign_in::sign_out))
        .route("/customers", get(customers::list))
        .route("/customers/{id}", get(customer::show))
        .route("/customers/{id}/grants/new", get(grants::new))
        .route(
            "/customers/{id}/grants",
            axum::routing::post(grants::create),
        )
        .route("/grants/{id}", get(grants::show))
        .route(
            "/grants/{id}/{action}",
            get(grants::confirm).post(grants::act),
        )
        .route("/invoices/{id}", get(invoices::show))
        .route(
            "/invoices/{id}/{action}",
            get(invoices::confirm).post(invoices::act),
        )
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/{id}", get(webhooks::show))
        .fallback(|| async { PageError::NotFound })
        .layer(DefaultBodyLimit::max(FORM_BYTES_MAX))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(app)
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        layout::STYLE,
    )
        .into_response()
}

/// Headers on every answer: no scripts, no framing, no caching of pages
/// that show an account's data, no referrer leaving the console.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
