//! notifier: follows the services' event feeds and delivers them as signed
//! webhooks (Standard Webhooks), at least once, with retries; optionally
//! publishes every event to NATS JetStream.
//!
//! Layout (the same floors in every service; see ARCHITECTURE.md):
//! - [`grpc`]: `billing.webhooks.v1.WebhookService` and the notifier's own
//!   event feed; transport only.
//! - [`upstream`]: the services' `EventService` feeds (tonic clients).
//! - [`ops`]: the use cases ([`Notifier`]) and the URL policy.
//! - [`domain`]: endpoints, the retry schedule, refused addresses; no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence; the only sqlx user.
//! - [`jobs`]: the followers (one per account and feed), the delivery
//!   worker and its HTTP sender, the JetStream sink.
//! - [`config`], [`error`]: configuration and the service's error.

pub mod config;
pub(crate) mod domain;
pub(crate) mod error;
pub(crate) mod grpc;
pub mod jobs;
pub(crate) mod ops;
pub(crate) mod store;
pub(crate) mod upstream;

use std::sync::Arc;

use billing_server::app::AppError;
use billing_server::host::{Host, Job, Parts, Served, Service, Serving, Stop};

pub use config::Config;
pub use domain::schedule::RetrySchedule;
pub use error::NotifierError;
pub use grpc::SERVICE_NAME;
pub use ops::Notifier;
pub use store::MIGRATIONS;

use jobs::Wakers;
use jobs::deliver::Deliverer;
use jobs::follow::Follower;
use jobs::sender::Sender;

/// The notifier, as the host runs it.
pub type App = Host<NotifierService>;

/// What the handlers and jobs share.
#[derive(Debug, Clone)]
pub struct State {
    /// The use cases.
    pub notifier: Notifier,
    /// The delivery worker (also ticked directly by tests).
    pub deliverer: Deliverer,
    feeds: Option<Arc<upstream::Feeds>>,
    wakers: Arc<Wakers>,
}

/// What the notifier adds to the shared host.
#[derive(Debug)]
pub struct NotifierService;

impl Service for NotifierService {
    type Config = Config;
    type State = State;
    const NAME: &'static str = "notifier";
    const MIGRATIONS: &'static billing_db::Migrations = &store::MIGRATIONS;

    fn warnings(config: &Config) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if config.internal_api_key.is_empty() {
            warnings.push("NOTIFIER_INTERNAL_API_KEY is empty: no feed is followed");
        }
        if config.accounts.is_empty() {
            warnings.push("no account to follow: BILLING_API_KEYS has no account key");
        }
        if config.allow_insecure_urls {
            warnings.push("NOTIFIER_ALLOW_INSECURE_URLS is on: webhooks may go over plain http");
        }
        if config.allow_private_urls {
            warnings
                .push("NOTIFIER_ALLOW_PRIVATE_URLS is on: webhooks may reach private addresses");
        }
        warnings
    }

    fn state(config: &Config, parts: Parts) -> Result<State, AppError> {
        let urls = ops::UrlPolicy {
            allow_insecure: config.allow_insecure_urls,
            allow_private: config.allow_private_urls,
        };
        let notifier = Notifier::new(store::Store::new(parts.db), parts.clock, urls);
        let sender = Sender::new(config.allow_private_urls, config.allow_insecure_urls)
            .map_err(|e| AppError::Config(e.to_string()))?;
        let feeds = if config.internal_api_key.is_empty() {
            None
        } else {
            let feeds = upstream::Feeds::new(&config.sources, &config.internal_api_key)
                .map_err(|e| AppError::Config(e.to_string()))?;
            Some(Arc::new(feeds))
        };
        let wakers = Arc::new(Wakers::default());
        let deliverer = Deliverer {
            notifier: notifier.clone(),
            sender,
            schedule: config.retry_schedule.clone(),
            concurrency: config.delivery_concurrency,
            wakers: Arc::clone(&wakers),
        };
        Ok(State {
            notifier,
            deliverer,
            feeds,
            wakers,
        })
    }

    fn routes(state: &State, config: &Config, serving: &Serving) -> Served {
        let max = config.service.server.max_message_bytes;
        grpc::routes(&state.notifier, max, serving)
    }

    /// A follower per account and feed, the delivery worker, the sink.
    fn jobs(state: &State, config: &Config, stop: &Stop) -> Vec<Job> {
        let mut jobs: Vec<Job> = Vec::new();
        if let Some(feeds) = &state.feeds {
            for account in &config.accounts {
                for index in 0..feeds.names().len() {
                    let follower = Follower {
                        notifier: state.notifier.clone(),
                        feeds: Arc::clone(feeds),
                        index,
                        account: account.clone(),
                        sink: config.nats_url.is_some(),
                        wakers: Arc::clone(&state.wakers),
                    };
                    jobs.push(Box::pin(follower.run(stop.clone())));
                }
            }
        }
        let deliverer = state.deliverer.clone();
        jobs.push(Box::pin(
            deliverer.run(config.delivery_interval, stop.clone()),
        ));
        if let Some(url) = &config.nats_url {
            jobs.push(Box::pin(jobs::sink::run(
                state.notifier.clone(),
                url.clone(),
                Arc::clone(&state.wakers),
                stop.clone(),
            )));
        }
        jobs
    }
}
