//! Recurring allocations and their rollover under kills (DESIGN.md §11).
//!
//! The rules the run holds the services to, on top of the ledger model:
//! - every period of a subscription, the first included, has exactly one
//!   allocation grant: its amount, its priority, promotional, usable from
//!   the period's start + 1 µs until its end + 1 µs (so it pays exactly the
//!   invoices whose service period ends in the period);
//! - the period's calendar: month after month from the subscription's
//!   start;
//! - once a period's invoice has taken its credits, what is left of the
//!   period's allocation grant and of the grant carried into it, capped at
//!   `rollover_max`, is carried into one grant of the next period's window
//!   (none when nothing is left), and the two remainders expire;
//! - the period's invoice takes its credits as the model says.
//!
//! Usage can only be ingested near the real time (meter-ingest refuses
//! events more than 5 minutes ahead), so the first period's invoice carries
//! usage and later periods' credits are spent by ApplyCredits calls made
//! the way invoicing makes them, with the period's end.

use std::collections::BTreeMap;

use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_proto::meter::v1 as meter;
use billing_testkit::Backend;
use chrono::{DateTime, Months, TimeDelta, Utc};

use super::{Harness, Report, micros, micros_of, model_grant, real_now, timestamp, usd_of};
use crate::authed;
use crate::model::{self, ApplyRequest, Line, Outcome, Time};
use crate::scenario::{Step, customer_named, metered_price, until_settled, usd};

const CUSTOMERS: usize = 3;

/// One subscriber and what the run expects of its allocation.
struct Subscriber {
    customer: String,
    subscription: String,
    amount: i64,
    priority: u32,
    rollover_max: Option<i64>,
    /// Usage units in the first period.
    units: i64,
    /// The current period's allocation grant and the grant carried into it.
    grant: String,
    carried: Option<String>,
}

struct Run {
    h: Harness,
    model: model::Ledger,
    price: String,
    unit_cents: i64,
    subscribers: Vec<Subscriber>,
    /// The subscriptions' common start (they are made at one clock time).
    start: DateTime<Utc>,
}

/// Runs `periods` billing periods of allocations on `backend`; None when
/// PostgreSQL is unavailable locally. Panics with the seed on a violation.
pub async fn run(backend: Backend, seed: u64, periods: u32) -> Option<Report> {
    let mut h = Harness::start(backend, seed).await?;
    let unit_cents = 1 + h.rng.below(9) as i64;
    let (_, price) = metered_price(&mut h.c, "sim_alloc", &unit_cents.to_string()).await;
    // The subscriptions start a little ahead of the real time, so that a
    // process restarted while they are made (its clock back at the real
    // time) can be moved to it; the first period's usage is stamped just
    // after it (meter-ingest takes events up to 5 minutes ahead).
    let start = Utc::now() + TimeDelta::minutes(2);
    h.now = Some(start);
    h.tick(false).await;
    let mut run = Run {
        h,
        model: model::Ledger::default(),
        price,
        unit_cents,
        subscribers: Vec::new(),
        start,
    };
    for i in 0..CUSTOMERS {
        run.subscribe(i).await;
    }
    for period in 0..periods {
        run.period(period).await;
    }
    Some(run.h.finish().await)
}

impl Run {
    /// The end of period `k` (0-based): `k + 1` calendar months after the
    /// start.
    fn end(&self, k: u32) -> DateTime<Utc> {
        self.start.checked_add_months(Months::new(k + 1)).unwrap()
    }

    fn what(&self, period: u32) -> String {
        format!("seed {} period {period}", self.h.seed)
    }

    /// A customer, maybe a paid grant, usage, and a monthly subscription
    /// with one allocation (made while invoicing may be killed).
    async fn subscribe(&mut self, i: usize) {
        let customer = customer_named(&mut self.h.c, &format!("Allocated {i}")).await;
        if self.h.rng.chance(60) {
            let grant = crate::scenario::metered_grant(
                &mut self.h.c,
                &customer,
                1 + self.h.rng.below(5_000) as i64,
            )
            .await;
            self.model.add_grant(model_grant(&grant, false), real_now());
        }
        let amount = 200 + self.h.rng.below(3_000) as i64;
        let priority = [0, 10, 50][self.h.rng.below(3)];
        let rollover_max = self
            .h
            .rng
            .chance(70)
            .then(|| 1 + self.h.rng.below(2 * amount as usize) as i64);
        let request = inv::CreateSubscriptionRequest {
            request_id: format!("subscribe-{i}"),
            customer: customer.clone(),
            items: vec![inv::SubscriptionItemInput {
                price: self.price.clone(),
            }],
            billing_interval: inv::BillingInterval::Month.into(),
            credit_allocations: vec![inv::CreditAllocation {
                amount: usd(amount),
                priority: Some(priority),
                rollover_max_amount: rollover_max.and_then(usd),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.h.count("subscribe");
        let killer = self.h.kill_soon();
        let subscription = self
            .h
            .retry("CreateSubscription", async |c| {
                c.invoicing
                    .create_subscription(authed(request.clone()))
                    .await
                    .map(|r| r.into_inner().subscription.unwrap())
            })
            .await;
        self.h.settle(killer).await;
        // A grant cut by the kill is made by the worker.
        self.h.tick(false).await;
        let what = self.what(0);
        assert_eq!(
            micros_of(&subscription.current_period_start),
            micros(self.start),
            "{what}: {subscription:?}"
        );
        assert_eq!(
            micros_of(&subscription.current_period_end),
            micros(self.end(0)),
            "{what}: a calendar month: {subscription:?}"
        );
        let units = 1 + self.h.rng.below(400) as i64;
        self.usage(&customer, units).await;
        self.subscribers.push(Subscriber {
            customer,
            subscription: subscription.id,
            amount,
            priority,
            rollover_max,
            units,
            grant: String::new(),
            carried: None,
        });
        let i = self.subscribers.len() - 1;
        self.subscribers[i].grant = self.allocation_grant(i, (self.start, self.end(0)), 0).await;
    }

    /// `units` of usage now (in the first period).
    async fn usage(&mut self, customer: &str, units: i64) {
        let accepted = self
            .h
            .c
            .meter
            .ingest_events(authed(meter::IngestEventsRequest {
                events: vec![meter::MeterEvent {
                    event_name: "sim_alloc".into(),
                    identifier: format!("evt_{customer}"),
                    timestamp: timestamp(micros(self.start + TimeDelta::seconds(1))),
                    payload: BTreeMap::from([
                        ("customer".to_owned(), customer.to_owned()),
                        ("value".to_owned(), units.to_string()),
                    ]),
                }],
            }))
            .await
            .unwrap()
            .into_inner()
            .accepted;
        assert_eq!(accepted, 1);
    }

    /// The one grant of `source` type for the period starting at `start`,
    /// checked against what the allocation says, and added to the model.
    async fn source_grant(
        &mut self,
        (customer, priority): (&str, u32),
        kind: ledger::CreditGrantSourceType,
        window: (DateTime<Utc>, DateTime<Utc>),
        amount: i64,
        period: u32,
    ) -> Option<String> {
        let what = self.what(period);
        let grants: Vec<ledger::CreditGrant> = self
            .h
            .grants(customer)
            .await
            .into_iter()
            .filter(|g| {
                g.source.as_ref().is_some_and(|source| {
                    source.r#type() == kind && micros_of(&source.period_start) == micros(window.0)
                })
            })
            .collect();
        if amount == 0 {
            assert!(grants.is_empty(), "{what}: {kind:?} of nothing: {grants:?}");
            return None;
        }
        assert_eq!(grants.len(), 1, "{what}: one {kind:?} grant: {grants:?}");
        let grant = &grants[0];
        let tick = TimeDelta::microseconds(1);
        let want = (
            usd_of(&grant.amount),
            grant.priority,
            grant.category(),
            micros_of(&grant.effective_at),
            micros_of(&grant.expires_at),
        );
        assert_eq!(
            want,
            (
                amount,
                priority,
                ledger::CreditGrantCategory::Promotional,
                micros(window.0 + tick),
                micros(window.1 + tick),
            ),
            "{what}: {kind:?} grant {grant:?}"
        );
        self.model.add_grant(model_grant(grant, false), real_now());
        self.h.note(match kind {
            ledger::CreditGrantSourceType::Rollover => "rollover_grant",
            _ => "allocation_grant",
        });
        Some(grant.id.clone())
    }

    async fn allocation_grant(
        &mut self,
        i: usize,
        window: (DateTime<Utc>, DateTime<Utc>),
        period: u32,
    ) -> String {
        let kind = ledger::CreditGrantSourceType::Allocation;
        let s = &self.subscribers[i];
        let (customer, priority, amount) = (s.customer.clone(), s.priority, s.amount);
        self.source_grant((&customer, priority), kind, window, amount, period)
            .await
            .unwrap()
    }

    /// One period: credits spent, the period closed (the next period's
    /// grant made), its invoice finalized, its remainder rolled over.
    async fn period(&mut self, k: u32) {
        let end = self.end(k);
        for i in 0..self.subscribers.len() {
            for j in 0..self.h.rng.below(3) {
                let amount = 1 + self.h.rng.below(self.subscribers[i].amount as usize) as i64;
                let invoice = format!("in_alloc_{}_{k}_{i}_{j}", self.h.seed);
                self.spend(i, &invoice, micros(end), amount, k).await;
            }
        }
        self.h.count("close_period");
        // Sometimes the worker dies after the ledger's grant (or rollover)
        // and before invoicing records it: the restarted one repeats the
        // keyed call.
        let failpoint = ["after_allocation_grant", "after_rollover"][self.h.rng.below(2)];
        self.h.maybe_arm(failpoint);
        self.h.advance(end + TimeDelta::seconds(1)).await;
        for i in 0..self.subscribers.len() {
            let next = self.allocation_grant(i, (end, self.end(k + 1)), k).await;
            self.invoice(i, k).await;
            self.rollover(i, k).await;
            self.subscribers[i].grant = next;
            let customer = self.subscribers[i].customer.clone();
            let model = self.model.clone();
            let what = self.what(k);
            self.h.compare_grants(&model, &customer, &what).await;
        }
    }

    /// ApplyCredits for one line of `amount`, as invoicing sends it.
    async fn spend(&mut self, i: usize, invoice: &str, period_end: Time, amount: i64, k: u32) {
        self.h.count("apply");
        let customer = self.subscribers[i].customer.clone();
        let line = Line {
            id: format!("il_{invoice}"),
            price: self.price.clone(),
            asset: "usd".into(),
            amount,
        };
        let request = ApplyRequest {
            customer: customer.clone(),
            period_end,
            lines: vec![line.clone()],
        };
        let mut got = self.h.apply_as_invoicing(invoice, &request).await;
        self.expect(invoice, &customer, period_end, vec![line], &mut got, k);
    }

    /// The model's applications for `lines` equal `got`.
    fn expect(
        &mut self,
        invoice: &str,
        customer: &str,
        period_end: Time,
        lines: Vec<Line>,
        got: &mut Vec<model::Application>,
        k: u32,
    ) {
        let request = ApplyRequest {
            customer: customer.into(),
            period_end,
            lines,
        };
        let Outcome::Ok(mut want) = self.model.apply(invoice, &request, &[], false, real_now())
        else {
            panic!("{}: the model refused {invoice}", self.what(k));
        };
        want.sort();
        got.sort();
        assert_eq!(*got, want, "{}: credits on {invoice}", self.what(k));
    }

    /// The period's invoice, finalized while invoicing may be killed: its
    /// credits are the model's.
    async fn invoice(&mut self, i: usize, k: u32) {
        self.h.count("finalize");
        let subscription = self.subscribers[i].subscription.clone();
        let end = micros(self.end(k));
        let invoices = self
            .h
            .retry("ListInvoices", async |c| {
                c.invoicing
                    .list_invoices(authed(inv::ListInvoicesRequest {
                        subscription: subscription.clone(),
                        ..Default::default()
                    }))
                    .await
                    .map(|r| r.into_inner().invoices)
            })
            .await;
        let what = self.what(k);
        let mine: Vec<&inv::Invoice> = invoices
            .iter()
            .filter(|v| micros_of(&v.period_end) == end)
            .collect();
        assert_eq!(mine.len(), 1, "{what}: one invoice: {invoices:?}");
        let id = mine[0].id.clone();
        let killer = self.h.kill_soon();
        let (finalized, _) = until_settled(&mut self.h.c, &id, Step::Finalize).await;
        self.h.settle(killer).await;
        assert_eq!(finalized.lines.len(), 1, "{what}: {finalized:?}");
        let line = &finalized.lines[0];
        let units = if k == 0 { self.subscribers[i].units } else { 0 };
        let amount = units * self.unit_cents;
        assert_eq!(usd_of(&line.amount), amount, "{what}: {line:?}");
        let mut got: Vec<model::Application> = line
            .credit_applications
            .iter()
            .map(|a| model::Application {
                line: line.id.clone(),
                grant: a.credit_grant.clone(),
                amount: usd_of(&a.amount),
            })
            .collect();
        let credited: i64 = got.iter().map(|a| a.amount).sum();
        assert_eq!(usd_of(&line.credits_applied), credited, "{what}");
        assert_eq!(usd_of(&line.amount_due), amount - credited, "{what}");
        let customer = self.subscribers[i].customer.clone();
        let lines = vec![Line {
            id: line.id.clone(),
            price: self.price.clone(),
            asset: "usd".into(),
            amount,
        }];
        self.expect(&id, &customer, end, lines, &mut got, k);
    }

    /// What is left of the period's grants, capped, carried into the next
    /// period (waiting for the worker), the remainders expired.
    async fn rollover(&mut self, i: usize, k: u32) {
        let Some(cap) = self.subscribers[i].rollover_max else {
            self.subscribers[i].carried = None;
            return;
        };
        self.h.count("rollover");
        let mut ids = vec![self.subscribers[i].grant.clone()];
        ids.extend(self.subscribers[i].carried.clone());
        let left: i64 = ids
            .iter()
            .filter_map(|id| self.model.grant(id))
            .map(|g| g.available)
            .sum();
        let carried = left.min(cap);
        let (end, next_end) = (self.end(k), self.end(k + 1));
        let kind = ledger::CreditGrantSourceType::Rollover;
        // The rollover waits for the invoice to be settled: ticks, each
        // maybe killed, until the carried grant is there (with nothing to
        // carry, two ticks, and then nothing may be there).
        let (customer, priority) = (
            self.subscribers[i].customer.clone(),
            self.subscribers[i].priority,
        );
        for _ in 0..if carried == 0 { 2 } else { 20 } {
            let present = self.h.grants(&customer).await.iter().any(|g| {
                g.source.as_ref().is_some_and(|source| {
                    source.r#type() == kind && micros_of(&source.period_start) == micros(end)
                })
            });
            if present {
                break;
            }
            self.h.tick(true).await;
        }
        for id in &ids {
            if let Some(grant) = self.model.grants.iter_mut().find(|g| &g.id == id) {
                grant.available = 0;
                grant.expired = true;
            }
        }
        self.subscribers[i].carried = self
            .source_grant((&customer, priority), kind, (end, next_end), carried, k)
            .await;
    }
}
