//! The meter service's operations: what the gRPC layer calls.

mod batch;

pub use batch::{RANGES_MAX, UsageRange};

use std::collections::HashMap;

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_server::clock::Clock;
use billing_server::metrics::{Labels, Metrics, labels};
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::domain::event::{self, EventInput, Outcome};
use crate::domain::meter::{Aggregation, Meter};
use crate::domain::usage::{self, Grouping, WINDOWS_MAX, Window};
use crate::error::MeterError;
use crate::store::Store;

/// CreateMeter after field checks.
#[derive(Debug, Clone)]
pub struct NewMeter {
    /// Event name.
    pub event_name: String,
    /// Display name.
    pub display_name: String,
    /// Aggregation.
    pub aggregation: Aggregation,
    /// Payload key of the customer.
    pub customer_key: String,
    /// Payload key of the value.
    pub value_key: String,
}

/// A usage answer.
#[derive(Debug, Clone)]
pub struct Usage {
    /// The meter's aggregation.
    pub aggregation: Aggregation,
    /// Over the whole range.
    pub total: Window,
    /// Per grouping window (one when ungrouped).
    pub windows: Vec<Window>,
}

/// Meters, events and usage.
#[derive(Debug, Clone)]
pub struct Metering {
    store: Store,
    clock: Clock,
    events: Option<Family<Labels, Counter>>,
    cache: batch::UsageCache,
}

impl Metering {
    /// The database, for the event feed (which reads the outbox directly).
    pub fn db(&self) -> &billing_db::Db {
        self.store.db()
    }

    /// Over a store, reading time from `clock`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self {
            store,
            clock,
            events: None,
            cache: batch::UsageCache::default(),
        }
    }

    /// Counts event outcomes in `metrics` (`meter_events_total{outcome}`).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.events = Some(metrics.counter_family(
            "meter_events",
            "Ingested events by outcome: accepted, duplicate, rejected",
        ));
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Creates a meter.
    pub async fn create_meter(
        &self,
        account: &str,
        new: NewMeter,
        key: Option<&IdempotencyKey>,
    ) -> Result<Meter, MeterError> {
        let now = self.clock.now();
        let meter = Meter {
            id: billing_server::ids::new_id("mtr"),
            event_name: new.event_name,
            display_name: new.display_name,
            aggregation: new.aggregation,
            customer_key: new.customer_key,
            value_key: new.value_key,
            active: true,
            created: now,
            updated: now,
        };
        self.store.create_meter(account, meter, key).await
    }

    /// One meter.
    pub async fn meter(&self, account: &str, id: &str) -> Result<Meter, MeterError> {
        self.store
            .meter(account, id)
            .await?
            .ok_or_else(|| MeterError::not_found("meter", id))
    }

    /// A page of meters.
    pub async fn list_meters(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Meter>, String), MeterError> {
        self.store.list_meters(account, page).await
    }

    /// Renames a meter.
    pub async fn rename(
        &self,
        account: &str,
        id: &str,
        display_name: String,
        key: Option<&IdempotencyKey>,
    ) -> Result<Meter, MeterError> {
        self.store
            .change_meter(account, id, key, self.clock.now(), move |meter| {
                meter.display_name = display_name;
                Ok(())
            })
            .await
    }

    /// Activates or deactivates a meter.
    pub async fn set_active(
        &self,
        account: &str,
        id: &str,
        active: bool,
        key: Option<&IdempotencyKey>,
    ) -> Result<Meter, MeterError> {
        self.store
            .change_meter(account, id, key, self.clock.now(), move |meter| {
                if meter.active == active {
                    let state = if active { "active" } else { "inactive" };
                    return Err(MeterError::conflict(
                        if active {
                            "METER_ALREADY_ACTIVE"
                        } else {
                            "METER_ALREADY_INACTIVE"
                        },
                        format!("the meter is already {state}"),
                    ));
                }
                meter.active = active;
                Ok(())
            })
            .await
    }

    /// Validates and stores a batch; one outcome per input, in order.
    pub async fn ingest(
        &self,
        account: &str,
        inputs: &[EventInput],
    ) -> Result<Vec<Outcome>, MeterError> {
        let now = self.clock.now();
        // Only names a meter could have are looked up: the others are
        // rejected per event below, and a NUL would not even reach
        // PostgreSQL as a query parameter.
        let mut names: Vec<&str> = inputs
            .iter()
            .map(|e| e.event_name.as_str())
            .filter(|name| event::could_be_event_name(name))
            .collect();
        names.sort_unstable();
        names.dedup();
        let meters: HashMap<String, Meter> = self
            .store
            .active_meters(account, &names)
            .await?
            .into_iter()
            .map(|m| (m.event_name.clone(), m))
            .collect();
        let batch = event::check_batch(inputs, &meters, now);
        let mut outcomes = batch.outcomes;
        let positions: Vec<(usize, String)> = batch
            .valid
            .iter()
            .map(|(i, e)| (*i, e.identifier.clone()))
            .collect();
        let mut events: Vec<_> = batch.valid.into_iter().map(|(_, e)| e).collect();
        let accepted = self.store.ingest(account, &mut events, now).await?;
        for (index, identifier) in positions {
            outcomes[index] = Some(if accepted.contains(&identifier) {
                Outcome::Accepted
            } else {
                Outcome::Duplicate
            });
        }
        // check_batch decided every invalid or repeated event, the store every valid one.
        let outcomes = outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| MeterError::Corrupt("an event was left without an outcome".into()))?;
        if let Some(events) = &self.events {
            let mut counts = [0_u64; 3];
            for outcome in &outcomes {
                let slot = match outcome {
                    Outcome::Accepted => 0,
                    Outcome::Duplicate => 1,
                    Outcome::Rejected(_) => 2,
                };
                counts[slot] += 1;
            }
            for (name, count) in ["accepted", "duplicate", "rejected"].iter().zip(counts) {
                if count > 0 {
                    events
                        .get_or_create(&labels(&[("outcome", name)]))
                        .inc_by(count);
                }
            }
        }
        Ok(outcomes)
    }

    /// Cancels an accepted event.
    pub async fn cancel(
        &self,
        account: &str,
        identifier: &str,
    ) -> Result<DateTime<Utc>, MeterError> {
        self.store
            .cancel(account, identifier, self.clock.now())
            .await
    }

    /// Usage of one customer on one meter over `[start, end)`.
    pub async fn usage(
        &self,
        account: &str,
        meter_id: &str,
        customer: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        grouping: Grouping,
    ) -> Result<Usage, MeterError> {
        if end <= start {
            return Err(MeterError::fields(vec![FieldViolation::new(
                "end_time",
                "must be after start_time",
            )]));
        }
        // Refused from the arithmetic, before building any window: a range
        // to year 9999 by the hour used to cost seconds of CPU to refuse.
        if usage::window_count(start, end, grouping) > WINDOWS_MAX {
            return Err(MeterError::fields(vec![FieldViolation::new(
                "grouping_window",
                format!("the range has more than {WINDOWS_MAX} windows; narrow it or group by day"),
            )]));
        }
        let bounds = usage::window_bounds(start, end, grouping);
        let aggregation = self.aggregation(account, meter_id).await?;
        let plan = usage::plan_range(start.timestamp_micros(), end.timestamp_micros());
        let needs_last = aggregation == Aggregation::Last;
        let data = self
            .store
            .usage(
                account,
                meter_id,
                customer,
                &plan,
                grouping.width_us(),
                needs_last,
            )
            .await?;
        let overflow = |e: usage::AggregateOverflow| MeterError::Corrupt(e.to_string());
        let windows = usage::fold(&bounds, &data.buckets, &data.edge_events).map_err(overflow)?;
        let mut total = Window {
            start,
            end,
            aggregate: usage::Aggregate::empty(),
        };
        for window in &windows {
            total.aggregate.merge(&window.aggregate).map_err(overflow)?;
        }
        Ok(Usage {
            aggregation,
            total,
            windows,
        })
    }
}
