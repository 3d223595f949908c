//! The credit lifecycle under the simulator (issue 18): auto top-ups and
//! credit purchases ([`top_ups`]), recurring allocations and their
//! rollover ([`allocations`]), driven through real credit-ledger,
//! meter-ingest and invoicing processes while invoicing is killed with
//! SIGKILL at random moments and started again. What the services do is
//! compared with the independent model (`crate::model`) plus the few
//! lifecycle rules each part writes down from DESIGN.md §11.
//!
//! Invoicing's test clock is not kept across a restart (it starts at the
//! real time again), so the harness moves it back to the simulated time
//! before any call after a kill.

pub mod allocations;
pub mod top_ups;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billing_proto::common::v1::Amount;
use billing_proto::ledger::v1 as ledger;
use billing_server::time::{from_proto, to_proto};
use billing_testkit::Backend;
use billing_testkit::fuzz::Rng;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::model::{self, Time};
use crate::scenario::{Clients, try_clock_now};
use crate::{Databases, Restartable, Service, authed, invoicing_env, ledger, meter};

/// What a lifecycle run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Operations checked.
    pub operations: u64,
    /// SIGKILLs of invoicing.
    pub kills: u64,
    /// Calls sent again after a kill cut them.
    pub retries: u64,
    /// Operations by kind.
    pub kinds: BTreeMap<&'static str, u64>,
}

/// Three real processes, invoicing restartable, and the run's seed.
pub struct Harness {
    dbs: Databases,
    _ledger: Service,
    _meter: Service,
    invoicing: Arc<Restartable>,
    /// Clients of the three.
    pub c: Clients,
    /// The run's random numbers.
    pub rng: Rng,
    /// The run's seed (printed with every violation).
    pub seed: u64,
    /// Where invoicing's clock is kept; None: where it is.
    pub now: Option<DateTime<Utc>>,
    restarts_seen: u64,
    /// What the run did.
    pub report: Report,
}

/// A kill cut the call; sending it again is safe (it carries its request
/// id, or it is a read).
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

impl Harness {
    /// Fresh databases and the three processes; None when PostgreSQL is
    /// unavailable locally.
    pub async fn start(backend: Backend, seed: u64) -> Option<Self> {
        let dbs = Databases::new(backend).await?;
        let ledger_process = ledger(&dbs.ledger, "127.0.0.1:0");
        let meter_process = meter(&dbs.meter);
        let env = invoicing_env(
            &dbs.invoicing,
            ledger_process.addr,
            meter_process.addr,
            None,
        );
        let invoicing = Restartable::start("invoicing", env);
        let c = Clients::new(
            ledger_process.channel(),
            meter_process.channel(),
            invoicing.channel(),
        );
        Some(Self {
            dbs,
            _ledger: ledger_process,
            _meter: meter_process,
            invoicing,
            c,
            rng: Rng::new(seed),
            seed,
            now: None,
            restarts_seen: 0,
            report: Report::default(),
        })
    }

    /// Counts an operation of `kind`.
    pub fn count(&mut self, kind: &'static str) {
        self.report.operations += 1;
        *self.report.kinds.entry(kind).or_insert(0) += 1;
    }

    /// Counts something the services did by themselves (not an operation).
    pub fn note(&mut self, kind: &'static str) {
        *self.report.kinds.entry(kind).or_insert(0) += 1;
    }

    /// Kills invoicing within the next 30 ms, 3 times in 10.
    pub fn kill_soon(&mut self) -> Option<JoinHandle<()>> {
        crate::kill_soon(&self.invoicing, &mut self.rng, 30, 30)
    }

    /// Restarts invoicing with `INVOICING_FAILPOINT=name`, 1 time in 10:
    /// it aborts at that point of its next such step (and is started
    /// again, without it, by the next call that finds it gone).
    pub fn maybe_arm(&mut self, name: &str) {
        if self.rng.chance(10) {
            self.invoicing
                .restart_with(&[("INVOICING_FAILPOINT", name.to_owned())]);
            self.note("failpoint_armed");
        }
    }

    /// Waits for a kill started by [`Self::kill_soon`] to be over.
    pub async fn settle(&mut self, killer: Option<JoinHandle<()>>) {
        if let Some(killer) = killer {
            killer.await.unwrap();
            self.report.kills += 1;
        }
        self.restore_clock().await;
    }

    /// After a restart, moves invoicing's clock back to the simulated time.
    async fn restore_clock(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.invoicing.restarts() != self.restarts_seen {
            let seen = self.invoicing.restarts();
            let moved = match self.now {
                Some(to) => crate::scenario::try_advance(&mut self.c, to).await,
                None => Ok(()),
            };
            match moved {
                Ok(()) => self.restarts_seen = seen,
                Err(status) if transient(&status) => {
                    assert!(Instant::now() < deadline, "invoicing did not come back");
                    if self.invoicing.revive() {
                        self.note("failpoint_crash");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("seed {}: restoring the clock: {status:?}", self.seed),
            }
        }
    }

    /// Calls `op` until it is answered: a call cut by a kill is sent again
    /// (after the clock is restored); any other error is a violation.
    pub async fn retry<T>(
        &mut self,
        what: &str,
        mut op: impl AsyncFnMut(&mut Clients) -> Result<T, Status>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.restore_clock().await;
            match op(&mut self.c).await {
                Ok(answer) => return answer,
                Err(status) if transient(&status) && Instant::now() < deadline => {
                    self.report.retries += 1;
                    if self.invoicing.revive() {
                        self.note("failpoint_crash");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("seed {}: {what}: {status:?}", self.seed),
            }
        }
    }

    /// Runs invoicing's worker once at the simulated time (or its own),
    /// with a kill 3 times in 10; retried until one run completes.
    pub async fn tick(&mut self, kills: bool) {
        let killer = if kills { self.kill_soon() } else { None };
        self.tick_once().await;
        if killer.is_some() {
            self.settle(killer).await;
            // The kill may have come after the tick's answer, cutting the
            // start-up tick short: one whole tick more.
            self.tick_once().await;
        }
    }

    async fn tick_once(&mut self) {
        let to = self.now;
        self.retry("tick", async |c| {
            let to = match to {
                Some(to) => to,
                None => try_clock_now(c).await?,
            };
            crate::scenario::try_advance(c, to).await
        })
        .await;
    }

    /// Moves the simulated time (and invoicing's clock) to `to`; the
    /// worker runs there, maybe killed.
    pub async fn advance(&mut self, to: DateTime<Utc>) {
        self.now = Some(to);
        self.tick(true).await;
    }

    /// Every grant of `customer`, oldest first.
    pub async fn grants(&mut self, customer: &str) -> Vec<ledger::CreditGrant> {
        let mut grants = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .c
                .ledger
                .list_credit_grants(authed(ledger::ListCreditGrantsRequest {
                    customer: customer.into(),
                    page_size: 100,
                    page_token,
                }))
                .await
                .unwrap()
                .into_inner();
            grants.extend(page.credit_grants);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        grants.reverse();
        grants
    }

    /// Each grant's available amount in the ledger equals the model's.
    pub async fn compare_grants(&mut self, model: &model::Ledger, customer: &str, what: &str) {
        let got: BTreeMap<String, i64> = self
            .grants(customer)
            .await
            .iter()
            .map(|g| (g.id.clone(), usd_of(&g.available)))
            .collect();
        let want: BTreeMap<String, i64> = model
            .grants
            .iter()
            .filter(|g| g.customer == customer)
            .map(|g| (g.id.clone(), if g.voided { 0 } else { g.available }))
            .collect();
        assert_eq!(got, want, "seed {}: {what}: {customer}'s grants", self.seed);
    }

    /// ApplyCredits as invoicing sends it (its internal key, acting for the
    /// account) for `request`'s lines: the applications, as the model
    /// writes them.
    pub async fn apply_as_invoicing(
        &mut self,
        invoice: &str,
        request: &model::ApplyRequest,
    ) -> Vec<model::Application> {
        let mut message = billing_testkit::authed(
            crate::INTERNAL_KEY,
            ledger::ApplyCreditsRequest {
                pool: Vec::new(),
                customer: request.customer.clone(),
                invoice: invoice.into(),
                period_end: timestamp(request.period_end),
                lines: request
                    .lines
                    .iter()
                    .map(|l| ledger::InvoiceLine {
                        invoice_line_item: l.id.clone(),
                        price: l.price.clone(),
                        amount: crate::scenario::usd(l.amount),
                    })
                    .collect(),
                preview: false,
            },
        );
        message
            .metadata_mut()
            .insert("x-billing-account", "acct_e2e".parse().unwrap());
        let answer = self.c.ledger.apply_credits(message).await;
        let mut got: Vec<model::Application> = answer
            .unwrap()
            .into_inner()
            .applications
            .iter()
            .map(|a| model::Application {
                line: a.invoice_line_item.clone(),
                grant: a.credit_grant.clone(),
                amount: usd_of(&a.amount),
            })
            .collect();
        got.sort();
        got
    }

    /// Stops the processes and drops the databases.
    pub async fn finish(self) -> Report {
        self.invoicing.stop();
        let report = self.report;
        drop(self._ledger);
        drop(self._meter);
        self.dbs.drop_all().await;
        report
    }
}

/// Microseconds since the epoch (the model's time in the lifecycle runs:
/// allocation windows are one microsecond past the period's bounds).
pub fn micros(at: DateTime<Utc>) -> Time {
    at.timestamp_micros()
}

/// The real time, in microseconds (the ledger's clock).
pub fn real_now() -> Time {
    micros(Utc::now())
}

/// A timestamp's microseconds.
pub fn micros_of(at: &Option<prost_types::Timestamp>) -> Time {
    at.as_ref()
        .and_then(|t| from_proto(t, "at").ok())
        .map_or(0, micros)
}

/// A timestamp at `micros`.
pub fn timestamp(micros: Time) -> Option<prost_types::Timestamp> {
    DateTime::from_timestamp_micros(micros).map(to_proto)
}

/// The usd cents of an amount (0 when unset).
pub fn usd_of(amount: &Option<Amount>) -> i64 {
    billing_testkit::fixtures::asset_value(amount, 0).1
}

/// The model's view of a grant the service made.
pub fn model_grant(grant: &ledger::CreditGrant, pending: bool) -> model::Grant {
    let promotional = grant.category() == ledger::CreditGrantCategory::Promotional;
    let prices = grant
        .applicability_config
        .as_ref()
        .and_then(|c| c.scope.as_ref())
        .filter(|s| !s.prices.is_empty())
        .map(|s| s.prices.clone());
    let amount = usd_of(&grant.amount);
    model::Grant {
        id: grant.id.clone(),
        customer: grant.customer.clone(),
        asset: "usd".into(),
        amount,
        available: amount,
        applied_total: 0,
        priority: grant.priority,
        promotional,
        effective_at: micros_of(&grant.effective_at),
        expires_at: grant
            .expires_at
            .is_some()
            .then(|| micros_of(&grant.expires_at)),
        prices,
        shared: false,
        voided: false,
        expired: false,
        pending,
        created: 0,
    }
}
