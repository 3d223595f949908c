//! The invoicing operations, over the store and the other services.
//!
//! - [`catalog`]: customers and prices.
//! - [`subscriptions`]: subscriptions, closing periods into drafts, cancel.
//! - [`saga`]: finalize, void, mark paid, preview (DESIGN.md section 6).

mod allocations;
mod catalog;
mod claims;
mod purchases;
mod realtime;
mod saga;
mod subscriptions;
mod thresholds;
mod top_ups;

use billing_db::idempotency::IdempotencyKey;
use billing_server::clock::Clock;
use billing_server::metrics::{Labels, Metrics, labels};
use billing_server::page::PageRequest;
use billing_server::time::to_micros;
use chrono::TimeDelta;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use allocations::{AllocationInput, AmountInput, Progress};
pub use catalog::{NewCustomer, NewPrice, PriceAsset};
use claims::Claims;
pub use purchases::NewPurchase;
pub use realtime::{AccessInput, AccessTarget, ControlsInput, OverageInput};
pub use subscriptions::NewSubscription;
pub use top_ups::TopUpInput;

use crate::domain::invoice::InvoiceEvent;
use crate::error::InvoicingError;
use crate::store::{EventFilter, Store};
use crate::upstream::Upstream;

/// Invoicing: the store, the clients of the other services, the clock.
#[derive(Debug, Clone)]
pub struct Invoicing {
    store: Store,
    upstream: Upstream,
    clock: Clock,
    grace: TimeDelta,
    counters: Option<Counters>,
    /// Prices by `account:id` for real-time reads: a price's pricing never
    /// changes (only `active` does, which pricing existing lines ignores).
    prices: realtime::PriceCache,
    /// The invoices whose sagas this process runs (`claims`).
    claims: Claims,
}

/// Business counters.
#[derive(Debug, Clone)]
struct Counters {
    finalizes: Family<Labels, Counter>,
    recoveries: Family<Labels, Counter>,
    step_failures: Family<Labels, Counter>,
}

impl Invoicing {
    /// Drafts finalize by themselves `grace` after they are created.
    pub fn new(store: Store, upstream: Upstream, clock: Clock, grace: TimeDelta) -> Self {
        Self {
            store,
            upstream,
            clock,
            grace,
            counters: None,
            prices: realtime::PriceCache::default(),
            claims: Claims::new("local"),
        }
    }

    /// Claims invoices under `instance` (this replica's name).
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.claims = Claims::new(instance);
        self
    }

    /// The instance name this process claims work under.
    pub fn instance(&self) -> &str {
        self.claims.instance()
    }

    /// Counts finalizes (`invoicing_finalizes_total{status}`) and saga
    /// recoveries (`invoicing_saga_recoveries_total{saga}`) in `metrics`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.counters = Some(Counters {
            finalizes: metrics.counter_family(
                "invoicing_finalizes",
                "Invoices finalized, by resulting status (open, paid)",
            ),
            recoveries: metrics.counter_family(
                "invoicing_saga_recoveries",
                "Invoices the worker completed after they were left mid-saga (finalize, void)",
            ),
            step_failures: metrics.counter_family(
                "invoicing_saga_step_failures",
                "Failed attempts at completing a finalize or void, by saga and upstream code",
            ),
        });
        self
    }

    pub(crate) fn count_finalize(&self, status: &str) {
        if let Some(counters) = &self.counters {
            counters
                .finalizes
                .get_or_create(&labels(&[("status", status)]))
                .inc();
        }
    }

    pub(crate) fn count_recovery(&self, saga: &str) {
        if let Some(counters) = &self.counters {
            counters
                .recoveries
                .get_or_create(&labels(&[("saga", saga)]))
                .inc();
        }
    }

    pub(crate) fn count_step_failure(&self, saga: &str, code: &str) {
        if let Some(counters) = &self.counters {
            counters
                .step_failures
                .get_or_create(&labels(&[("saga", saga), ("code", code)]))
                .inc();
        }
    }

    /// A page of the account's invoice events, newest first.
    pub async fn list_events(
        &self,
        account: &str,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<(Vec<InvoiceEvent>, String), InvoicingError> {
        self.store.list_events(account, filter, page).await
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The stored response of an earlier request with this key, for the
    /// RPCs that are state transitions (their effect is idempotent by state;
    /// the key makes the response idempotent too).
    async fn replay<T: serde::de::DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<T>, InvoicingError> {
        self.store.replay(account, key).await
    }

    /// Records the response under the key (the first recorded one wins).
    async fn remember<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
        value: T,
    ) -> Result<T, InvoicingError> {
        let now_us = to_micros(self.clock.now());
        self.store.remember(account, key, now_us, value).await
    }
}

/// Crash injection for the saga tests: in debug builds (what `cargo test`
/// runs) or with the `failpoints` feature, the process aborts (like
/// `kill -9`) at the point named by `INVOICING_FAILPOINT`. Release builds
/// without the feature (the images) compile it out.
pub(crate) fn failpoint(name: &str) {
    #[cfg(any(feature = "failpoints", debug_assertions))]
    if std::env::var("INVOICING_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(any(feature = "failpoints", debug_assertions)))]
    let _ = name;
}
