//! Auto top-ups and credit purchases under kills (DESIGN.md §11).
//!
//! The rules the run holds the services to, on top of the ledger model:
//! - a purchase (bought by hand or by a top-up) is a pending grant of its
//!   credits: in no available balance until its invoice is paid, then
//!   available; voided with its unpaid invoice;
//! - a top-up buys on each `customer.credit_balance_dropped` of its alert
//!   (the model's events, one per crossing of its threshold) while it is
//!   enabled, exactly when `available + pending` is then below the
//!   threshold; never twice for one event, however often invoicing dies
//!   between the purchase and its cursor's move;
//! - a top-up's invoice voided unpaid disables it; SetAutoTopUp enables
//!   it again, with a new alert;
//! - a repeated CreateCreditPurchase (same request id) is the same purchase.
//!
//! Besides the random SIGKILLs, invoicing is sometimes restarted with the
//! `after_top_up_purchase` failpoint, so that it dies after a purchase and
//! before its feed cursor moves: the event is delivered again.
//!
//! Invoicing's clock stays where it is (its purchases' grants are effective
//! at once for the ledger's real clock); credits are spent by ApplyCredits
//! calls made the way invoicing makes them.

use std::collections::BTreeMap;

use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::Backend;

use super::{Harness, Report, model_grant, real_now, usd_of};
use crate::authed;
use crate::model::{self, ApplyRequest, DROPPED, Line, Outcome};
use crate::scenario::{Step, customer_named, until_settled, usd};

const CUSTOMERS: usize = 3;

/// A purchase as the run expects it.
#[derive(Debug, Clone)]
struct Purchase {
    id: String,
    customer: String,
    grant: String,
    invoice: String,
    /// The top-up that bought it, if any.
    top_up: Option<String>,
    status: inv::CreditPurchaseStatus,
}

/// A customer's top-up as the run expects it.
#[derive(Debug, Clone)]
struct TopUp {
    id: String,
    alert: String,
    threshold: i64,
    amount: i64,
    enabled: bool,
}

struct Run {
    h: Harness,
    model: model::Ledger,
    customers: Vec<String>,
    top_ups: BTreeMap<String, TopUp>,
    purchases: Vec<Purchase>,
    /// The model's events already decided on.
    decided: usize,
    applied: Vec<(String, ApplyRequest)>,
    done: u64,
}

/// Runs `operations` lifecycle operations on `backend`; None when
/// PostgreSQL is unavailable locally. Panics with the seed on a violation.
pub async fn run(backend: Backend, seed: u64, operations: u64) -> Option<Report> {
    let h = Harness::start(backend, seed).await?;
    let mut run = Run {
        h,
        model: model::Ledger::default(),
        customers: Vec::new(),
        top_ups: BTreeMap::new(),
        purchases: Vec::new(),
        decided: 0,
        applied: Vec::new(),
        done: 0,
    };
    for i in 0..CUSTOMERS {
        let customer = customer_named(&mut run.h.c, &format!("Topped {i}")).await;
        run.grant(&customer).await;
        run.set_top_up(&customer).await;
        run.customers.push(customer);
    }
    while run.done < operations {
        run.done += 1;
        let customer = run.customers[run.h.rng.below(CUSTOMERS)].clone();
        match run.h.rng.below(100) {
            0..40 => run.apply(&customer).await,
            40..45 => run.replay().await,
            45..60 => run.buy(&customer).await,
            60..75 => run.pay().await,
            75..83 => run.void().await,
            83..88 => run.set_top_up(&customer).await,
            88..92 => run.grant(&customer).await,
            _ => {
                // The worker dies between a top-up's purchase and its
                // cursor's move: the event is read again after the restart.
                run.h.maybe_arm("after_top_up_purchase");
                run.h.count("tick");
                run.h.tick(true).await;
            }
        }
        run.check().await;
    }
    Some(run.h.finish().await)
}

impl Run {
    fn what(&self) -> String {
        format!("seed {} operation {}", self.h.seed, self.done)
    }

    /// A paid usd grant for every metered price, effective now.
    async fn grant(&mut self, customer: &str) {
        self.h.count("grant");
        let amount = 500 + self.h.rng.below(4_000) as i64;
        let priority = [0, 10, 50][self.h.rng.below(3)];
        let grant = self
            .h
            .c
            .ledger
            .create_credit_grant(authed(ledger::CreateCreditGrantRequest {
                customer: customer.into(),
                amount: usd(amount),
                applicability_config: Some(ledger::ApplicabilityConfig {
                    scope: Some(ledger::ApplicabilityScope {
                        price_type: ledger::PriceType::Metered.into(),
                        prices: Vec::new(),
                    }),
                }),
                category: ledger::CreditGrantCategory::Paid.into(),
                priority: Some(priority),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .credit_grant
            .unwrap();
        self.model.add_grant(model_grant(&grant, false), real_now());
    }

    /// SetAutoTopUp (first or replacing): a new alert, enabled.
    async fn set_top_up(&mut self, customer: &str) {
        self.h.count("set_top_up");
        let threshold = 1_000 + self.h.rng.below(3_000) as i64;
        let amount = 500 + self.h.rng.below(4_500) as i64;
        let request = inv::SetAutoTopUpRequest {
            request_id: format!("top-up-{}-{customer}", self.done),
            customer: customer.into(),
            threshold: usd(threshold),
            amount: usd(amount),
            currency: "usd".into(),
            unit_amount_decimal: "100".into(),
            ..Default::default()
        };
        let killer = self.h.kill_soon();
        let set = self
            .h
            .retry("SetAutoTopUp", async |c| {
                c.invoicing
                    .set_auto_top_up(authed(request.clone()))
                    .await
                    .map(|r| r.into_inner().auto_top_up.unwrap())
            })
            .await;
        self.h.settle(killer).await;
        let what = self.what();
        assert!(set.enabled, "{what}: {set:?}");
        // The replaced top-up's alert is deleted; its events buy nothing.
        if let Some(old) = self.top_ups.get(customer) {
            self.model.alerts.retain(|a| a.id != old.alert);
        }
        self.model.alerts.push(model::Alert {
            id: set.balance_alert.clone(),
            customer: Some(customer.into()),
            asset: "usd".into(),
            threshold,
        });
        self.top_ups.insert(
            customer.into(),
            TopUp {
                id: set.id,
                alert: set.balance_alert,
                threshold,
                amount,
                enabled: true,
            },
        );
    }

    /// ApplyCredits as invoicing sends it, for one line.
    async fn apply(&mut self, customer: &str) {
        self.h.count("apply");
        let request = ApplyRequest {
            customer: customer.into(),
            period_end: real_now(),
            lines: vec![Line {
                id: format!("il_{}", self.done),
                price: "price_usage".into(),
                asset: "usd".into(),
                amount: 1 + self.h.rng.below(3_000) as i64,
            }],
        };
        let invoice = format!("in_sim_{}_{}", self.h.seed, self.done);
        self.send(&invoice, &request).await;
        self.applied.push((invoice, request));
    }

    /// An applied invoice again: the recorded answer, nothing more.
    async fn replay(&mut self) {
        if self.applied.is_empty() {
            return;
        }
        self.h.count("replay");
        let (invoice, request) = self.applied[self.h.rng.below(self.applied.len())].clone();
        self.send(&invoice, &request).await;
    }

    async fn send(&mut self, invoice: &str, request: &ApplyRequest) {
        let mut got = self.h.apply_as_invoicing(invoice, request).await;
        let Outcome::Ok(mut want) = self.model.apply(invoice, request, &[], false, real_now())
        else {
            panic!("{}: the model refused {invoice}", self.what());
        };
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}: credits on {invoice}", self.what());
    }

    /// CreateCreditPurchase (payment required), sent twice with its
    /// request id: one purchase, one pending grant.
    async fn buy(&mut self, customer: &str) {
        self.h.count("buy");
        let credits = 500 + self.h.rng.below(4_500) as i64;
        let priority = [0, 10, 50][self.h.rng.below(3)];
        let request = inv::CreateCreditPurchaseRequest {
            request_id: format!("buy-{}", self.done),
            customer: customer.into(),
            credits: usd(credits),
            currency: "usd".into(),
            unit_amount_decimal: "100".into(),
            priority: Some(priority),
            ..Default::default()
        };
        let killer = self.h.kill_soon();
        let mut bought = Vec::new();
        for _ in 0..2 {
            bought.push(
                self.h
                    .retry("CreateCreditPurchase", async |c| {
                        c.invoicing
                            .create_credit_purchase(authed(request.clone()))
                            .await
                            .map(|r| r.into_inner().credit_purchase.unwrap())
                    })
                    .await,
            );
        }
        self.h.settle(killer).await;
        let what = self.what();
        assert_eq!(bought[0].id, bought[1].id, "{what}: a replay bought again");
        // A purchase cut by the kill is finished by the worker.
        self.h.tick(false).await;
        let purchase = self.purchase(&bought[0].id).await;
        assert_eq!(
            purchase.status(),
            inv::CreditPurchaseStatus::PendingPayment,
            "{what}: {purchase:?}"
        );
        let grant = self.grant_of(&purchase, priority, credits).await;
        self.model.add_grant(grant, real_now());
        self.purchases.push(Purchase {
            id: purchase.id.clone(),
            customer: customer.into(),
            grant: purchase.credit_grant.clone(),
            invoice: purchase.invoice.clone(),
            top_up: None,
            status: inv::CreditPurchaseStatus::PendingPayment,
        });
    }

    /// The pending grant of `purchase`, checked against what was bought.
    async fn grant_of(
        &mut self,
        purchase: &inv::CreditPurchase,
        priority: u32,
        credits: i64,
    ) -> model::Grant {
        let grant = self
            .h
            .c
            .ledger
            .get_credit_grant(authed(ledger::GetCreditGrantRequest {
                id: purchase.credit_grant.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .credit_grant
            .unwrap();
        let what = self.what();
        assert_eq!(
            grant.state(),
            ledger::CreditGrantState::PendingPayment,
            "{what}"
        );
        assert_eq!(grant.priority, priority, "{what}: {grant:?}");
        assert_eq!(usd_of(&grant.amount), credits, "{what}: {grant:?}");
        assert_eq!(
            grant.category(),
            ledger::CreditGrantCategory::Paid,
            "{what}"
        );
        model_grant(&grant, true)
    }

    async fn purchase(&mut self, id: &str) -> inv::CreditPurchase {
        self.h
            .retry("GetCreditPurchase", async |c| {
                c.invoicing
                    .get_credit_purchase(authed(inv::GetCreditPurchaseRequest { id: id.into() }))
                    .await
                    .map(|r| r.into_inner().credit_purchase.unwrap())
            })
            .await
    }

    fn pending_purchase(&mut self) -> Option<usize> {
        let pending: Vec<usize> = (0..self.purchases.len())
            .filter(|&i| self.purchases[i].status == inv::CreditPurchaseStatus::PendingPayment)
            .collect();
        (!pending.is_empty()).then(|| pending[self.h.rng.below(pending.len())])
    }

    /// MarkInvoicePaid on a pending purchase's invoice: its grant activates.
    async fn pay(&mut self) {
        let Some(i) = self.pending_purchase() else {
            return;
        };
        self.h.count("pay");
        let invoice = self.purchases[i].invoice.clone();
        let killer = self.h.kill_soon();
        until_settled(&mut self.h.c, &invoice, Step::MarkPaid).await;
        self.h.settle(killer).await;
        // An activation cut by the kill is finished by the worker.
        self.h.tick(false).await;
        self.purchases[i].status = inv::CreditPurchaseStatus::Active;
        let grant = self.purchases[i].grant.clone();
        assert_eq!(self.model.activate(&grant, real_now()), Outcome::Ok(()));
    }

    /// VoidInvoice on a pending purchase's invoice: its grant is voided; a
    /// top-up's disables the top-up.
    async fn void(&mut self) {
        let Some(i) = self.pending_purchase() else {
            return;
        };
        self.h.count("void");
        let invoice = self.purchases[i].invoice.clone();
        let killer = self.h.kill_soon();
        until_settled(&mut self.h.c, &invoice, Step::Void).await;
        self.h.settle(killer).await;
        self.h.tick(false).await;
        self.purchases[i].status = inv::CreditPurchaseStatus::Void;
        let grant = self.purchases[i].grant.clone();
        assert_eq!(self.model.void(&grant, real_now()), Outcome::Ok(()));
        let customer = self.purchases[i].customer.clone();
        if let (Some(bought_by), Some(top_up)) =
            (&self.purchases[i].top_up, self.top_ups.get_mut(&customer))
            && *bought_by == top_up.id
        {
            top_up.enabled = false;
        }
    }

    /// The top-up purchases the model's new events call for, by customer,
    /// in order: each event of an enabled top-up's alert buys when the
    /// balance with pending credits is below the threshold.
    fn decide(&mut self) -> BTreeMap<String, Vec<i64>> {
        let mut bought: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let events = self.model.events[self.decided..].to_vec();
        self.decided = self.model.events.len();
        for event in events {
            let Some(top_up) = self.top_ups.get(&event.customer) else {
                continue;
            };
            if event.kind != DROPPED
                || !top_up.enabled
                || event.alert.as_deref() != Some(&top_up.alert)
            {
                continue;
            }
            let available = self.model.available(&event.customer, real_now());
            let pending = self.model.pending(&event.customer);
            let already: i64 = bought.get(&event.customer).into_iter().flatten().sum();
            let balance = available.get("usd").copied().unwrap_or(0)
                + pending.get("usd").copied().unwrap_or(0)
                + already;
            if balance < top_up.threshold {
                bought
                    .entry(event.customer.clone())
                    .or_default()
                    .push(top_up.amount);
            }
        }
        bought
    }

    /// After every operation: the worker runs, every top-up purchase the
    /// model calls for is there (once), and each customer's balances,
    /// purchases, grants and top-up agree with the model.
    async fn check(&mut self) {
        self.h.tick(false).await;
        let bought = self.decide();
        for customer in self.customers.clone() {
            let want = bought.get(&customer).cloned().unwrap_or_default();
            self.top_up_purchases(&customer, &want).await;
            self.compare(&customer).await;
        }
    }

    /// Waits for the top-up purchases `want` (their credits, in order) of
    /// `customer` and adds them to the model; more is a violation.
    async fn top_up_purchases(&mut self, customer: &str, want: &[i64]) {
        let known = self
            .purchases
            .iter()
            .filter(|p| p.customer == customer)
            .count();
        let mut new = Vec::new();
        for attempt in 0..20 {
            let listed = self.list_purchases(customer).await;
            new = listed
                .into_iter()
                .filter(|p| !self.purchases.iter().any(|q| q.id == p.id))
                .collect::<Vec<_>>();
            if new.len() >= want.len() || attempt == 19 {
                break;
            }
            // PostgreSQL serves an event once older transactions end.
            self.h.tick(false).await;
        }
        let what = self.what();
        let credits: Vec<i64> = new.iter().rev().map(|p| usd_of(&p.credits)).collect();
        assert_eq!(
            credits, want,
            "{what}: {customer}'s top-up purchases (after {known} known)"
        );
        for purchase in new.into_iter().rev() {
            let top_up = self.top_ups.get(customer).map(|t| t.id.clone());
            assert_eq!(
                Some(&purchase.auto_top_up),
                top_up.as_ref(),
                "{what}: {purchase:?}"
            );
            let grant = self
                .grant_of(&purchase, 50, usd_of(&purchase.credits))
                .await;
            self.model.add_grant(grant, real_now());
            self.h.note("top_up_bought");
            self.purchases.push(Purchase {
                id: purchase.id,
                customer: customer.into(),
                grant: purchase.credit_grant,
                invoice: purchase.invoice,
                top_up,
                status: inv::CreditPurchaseStatus::PendingPayment,
            });
        }
    }

    async fn list_purchases(&mut self, customer: &str) -> Vec<inv::CreditPurchase> {
        self.h
            .retry("ListCreditPurchases", async |c| {
                c.invoicing
                    .list_credit_purchases(authed(inv::ListCreditPurchasesRequest {
                        customer: customer.into(),
                        page_size: 100,
                        ..Default::default()
                    }))
                    .await
                    .map(|r| r.into_inner().credit_purchases)
            })
            .await
    }

    /// Balances, purchase states, grants and the top-up against the model.
    async fn compare(&mut self, customer: &str) {
        let what = self.what();
        let summary = self
            .h
            .c
            .ledger
            .get_credit_balance_summary(authed(ledger::GetCreditBalanceSummaryRequest {
                customer: customer.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let (available, pending) = summary.balances.iter().fold((0, 0), |(a, p), b| {
            (
                a + usd_of(&b.available_balance),
                p + usd_of(&b.pending_balance),
            )
        });
        let want_available = self.model.available(customer, real_now());
        let want_pending = self.model.pending(customer);
        assert_eq!(
            (available, pending),
            (
                want_available.get("usd").copied().unwrap_or(0),
                want_pending.get("usd").copied().unwrap_or(0)
            ),
            "{what}: {customer}'s (available, pending)"
        );
        let listed = self.list_purchases(customer).await;
        for purchase in &listed {
            let want = self.purchases.iter().find(|p| p.id == purchase.id);
            assert_eq!(
                want.map(|p| p.status),
                Some(purchase.status()),
                "{what}: {purchase:?}"
            );
        }
        let model = self.model.clone();
        self.h.compare_grants(&model, customer, &what).await;
        let Some(top_up) = self.top_ups.get(customer).cloned() else {
            return;
        };
        let got = self
            .h
            .retry("GetAutoTopUp", async |c| {
                c.invoicing
                    .get_auto_top_up(authed(inv::GetAutoTopUpRequest {
                        customer: customer.into(),
                        asset: "usd".into(),
                    }))
                    .await
                    .map(|r| r.into_inner().auto_top_up.unwrap())
            })
            .await;
        assert_eq!(
            (got.id.as_str(), got.enabled),
            (top_up.id.as_str(), top_up.enabled),
            "{what}: {customer}'s top-up"
        );
    }
}
