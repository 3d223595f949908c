//! An independent model of the ledger's money rules (DESIGN.md §4 and the
//! pools of §13), for the simulator to check the real service against.
//!
//! Written from the design, not from the service: plain vectors, one
//! account, no I/O, no clock (times are passed in), nothing shared with
//! `services/credit-ledger`. Amounts are integers in the asset's smallest
//! unit; every sum is checked.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A time, in seconds since the epoch.
pub type Time = i64;

/// A grant as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The service's id (the last tie-break of the order).
    pub id: String,
    /// Its customer.
    pub customer: String,
    /// `usd`, `eur`, …
    pub asset: String,
    /// Granted.
    pub amount: i64,
    /// What is left.
    pub available: i64,
    /// Everything ever applied (not net of reversals): a grant once applied
    /// cannot be voided.
    pub applied_total: i64,
    /// 0–100.
    pub priority: u32,
    /// Promotional applies before paid.
    pub promotional: bool,
    /// When it becomes usable.
    pub effective_at: Time,
    /// When it stops; ExpireCreditGrant moves it to "now".
    pub expires_at: Option<Time>,
    /// None: every metered price; else these prices only.
    pub prices: Option<Vec<String>>,
    /// Also pays its customer's descendants.
    pub shared: bool,
    /// Voided.
    pub voided: bool,
    /// Expired by ExpireCreditGrant (its expiry is in the past).
    pub expired: bool,
    /// Bought and not paid yet: pays nothing, counts in no available
    /// balance, until activated.
    pub pending: bool,
    /// Creation order within the account.
    pub created: u64,
}

/// A credit hold (its timeout is longer than any run: it ends by release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The service's id.
    pub id: String,
    /// Its customer.
    pub customer: String,
    /// Its asset.
    pub asset: String,
    /// How much it reserves.
    pub amount: i64,
    /// Released.
    pub released: bool,
}

/// A configured balance alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The service's id.
    pub id: String,
    /// One customer's, or None for every customer of the account.
    pub customer: Option<String>,
    /// The asset watched.
    pub asset: String,
    /// Positive.
    pub threshold: i64,
}

/// A `customer.credit_balance_*` event the model expects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertEvent {
    /// `customer.credit_balance_dropped|depleted|recovered`.
    pub kind: &'static str,
    /// The customer.
    pub customer: String,
    /// The asset.
    pub asset: String,
    /// The configured alert; None for the built-in one.
    pub alert: Option<String>,
    /// The watched balance after the change.
    pub balance: i64,
}

/// The balance fell below a configured threshold.
pub const DROPPED: &str = "customer.credit_balance_dropped";
/// The balance reached 0.
pub const DEPLETED: &str = "customer.credit_balance_depleted";
/// The balance is back above 0, or back at or above a threshold.
pub const RECOVERED: &str = "customer.credit_balance_recovered";

/// One line of an ApplyCredits request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line's id.
    pub id: String,
    /// Its price.
    pub price: String,
    /// Its asset.
    pub asset: String,
    /// Its amount, positive.
    pub amount: i64,
}

/// Credits of one grant on one line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Application {
    /// The line.
    pub line: String,
    /// The grant.
    pub grant: String,
    /// How much.
    pub amount: i64,
}

/// An ApplyCredits request, as its replay check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The customer.
    pub customer: String,
    /// The service period's end.
    pub period_end: Time,
    /// The lines, in order.
    pub lines: Vec<Line>,
}

/// What the model says an operation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Succeeds with this result.
    Ok(T),
    /// INVALID_ARGUMENT naming this field.
    Invalid(&'static str),
    /// FAILED_PRECONDITION with this reason.
    Refused(&'static str),
    /// NOT_FOUND.
    NotFound,
}

/// One account's ledger.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Every grant, in creation order.
    pub grants: Vec<Grant>,
    /// Applied invoices: the request and its applications.
    pub applied: BTreeMap<String, (ApplyRequest, Vec<Application>)>,
    /// Reversed invoices.
    pub reversed: BTreeMap<String, Vec<Application>>,
    /// Every hold.
    pub holds: Vec<Hold>,
    /// Every configured alert.
    pub alerts: Vec<Alert>,
    /// Each (customer, asset) balance as last evaluated; absent: never.
    pub evaluated: BTreeMap<(String, String), i64>,
    /// The alert events, in order.
    pub events: Vec<AlertEvent>,
    created: u64,
}

/// Why a grant request is refused before anything is written.
pub fn check_grant(effective_at: Time, expires_at: Option<Time>) -> Option<&'static str> {
    match expires_at {
        Some(expiry) if expiry <= effective_at => Some("expires_at"),
        _ => None,
    }
}

impl Ledger {
    /// Records a grant the service created (after `check_grant` passed)
    /// and evaluates its customer's balance at `now`.
    pub fn add_grant(&mut self, mut grant: Grant, now: Time) {
        self.created += 1;
        grant.created = self.created;
        grant.available = grant.amount;
        let owner = (grant.customer.clone(), grant.asset.clone());
        self.grants.push(grant);
        self.evaluate(&owner.0, &owner.1, now);
    }

    fn grant_mut(&mut self, id: &str) -> Option<&mut Grant> {
        self.grants.iter_mut().find(|g| g.id == id)
    }

    /// The grant with this id.
    pub fn grant(&self, id: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.id == id)
    }

    /// Forgets the grants, invoices and holds of the customers so far (the
    /// simulator moves on to new customers; alerts and events stay).
    pub fn new_epoch(&mut self) {
        self.grants.clear();
        self.applied.clear();
        self.reversed.clear();
        self.holds.clear();
    }

    /// Whether `grant` may pay `line` of a period ending at `period_end`.
    fn eligible(grant: &Grant, line: &Line, period_end: Time) -> bool {
        grant.asset == line.asset
            && !grant.voided
            && !grant.pending
            && grant.available > 0
            && grant.effective_at <= period_end
            && grant.expires_at.is_none_or(|at| period_end < at)
            && grant
                .prices
                .as_ref()
                .is_none_or(|prices| prices.contains(&line.price))
    }

    /// DESIGN §4's order: priority, expiry (none last), promotional first,
    /// effective, created, id.
    fn order(a: &Grant, b: &Grant) -> Ordering {
        let expiry = |g: &Grant| g.expires_at.map_or((1, 0), |at| (0, at));
        a.priority
            .cmp(&b.priority)
            .then(expiry(a).cmp(&expiry(b)))
            .then(b.promotional.cmp(&a.promotional))
            .then(a.effective_at.cmp(&b.effective_at))
            .then(a.created.cmp(&b.created))
            .then(a.id.cmp(&b.id))
    }

    /// The grants that may pay for `customer`, in payment order: its own,
    /// then each ancestor's shared ones (`pool`, nearest first).
    fn payers(&self, customer: &str, pool: &[String]) -> Vec<usize> {
        let mut out = Vec::new();
        let owners =
            std::iter::once((customer, false)).chain(pool.iter().map(|a| (a.as_str(), true)));
        for (owner, shared_only) in owners {
            let mut level: Vec<usize> = (0..self.grants.len())
                .filter(|&i| {
                    self.grants[i].customer == owner && (!shared_only || self.grants[i].shared)
                })
                .collect();
            level.sort_by(|&a, &b| Self::order(&self.grants[a], &self.grants[b]));
            out.extend(level);
        }
        out
    }

    /// What ApplyCredits does at `now` (`preview`: computes, changes
    /// nothing). Each owner's balance in each asset it paid is evaluated.
    pub fn apply(
        &mut self,
        invoice: &str,
        request: &ApplyRequest,
        pool: &[String],
        preview: bool,
        now: Time,
    ) -> Outcome<Vec<Application>> {
        if let Some((recorded, applications)) = self.applied.get(invoice) {
            if preview {
                // A preview of an applied invoice is not modelled.
                return Outcome::Ok(applications.clone());
            }
            return if recorded == request {
                Outcome::Ok(applications.clone())
            } else {
                Outcome::Refused("INVOICE_ALREADY_APPLIED")
            };
        }
        let mut grants = self.grants.clone();
        let payers = self.payers(&request.customer, pool);
        let mut applications = Vec::new();
        for line in &request.lines {
            let mut left = line.amount;
            for &i in &payers {
                if left == 0 {
                    break;
                }
                let grant = &mut grants[i];
                if !Self::eligible(grant, line, request.period_end) {
                    continue;
                }
                let take = left.min(grant.available);
                grant.available -= take;
                grant.applied_total = grant.applied_total.checked_add(take).unwrap_or(i64::MAX);
                left -= take;
                applications.push(Application {
                    line: line.id.clone(),
                    grant: grant.id.clone(),
                    amount: take,
                });
            }
        }
        if !preview {
            self.grants = grants;
            self.applied
                .insert(invoice.to_owned(), (request.clone(), applications.clone()));
            let mut owners: Vec<(String, String)> = applications
                .iter()
                .filter_map(|a| self.grant(&a.grant))
                .map(|g| (g.customer.clone(), g.asset.clone()))
                .collect();
            // The customer first, then its ancestors by name; assets by name.
            owners.sort_by(|a, b| {
                (a.0 != request.customer, &a.0, &a.1).cmp(&(b.0 != request.customer, &b.0, &b.1))
            });
            owners.dedup();
            for (customer, asset) in owners {
                self.evaluate(&customer, &asset, now);
            }
        }
        Outcome::Ok(applications)
    }

    /// What ReverseCredits does at `now`: every application back to its
    /// grant; a grant already expired expires what comes back at once.
    /// Each owner's balance in each asset of the invoice is evaluated.
    pub fn reverse(&mut self, invoice: &str, now: Time) -> Outcome<Vec<Application>> {
        if let Some(done) = self.reversed.get(invoice) {
            return Outcome::Ok(done.clone());
        }
        let Some((_, applications)) = self.applied.get(invoice).cloned() else {
            return Outcome::NotFound;
        };
        // The balances that move: each grant's owner in the grant's asset
        // (not every owner in every asset of the invoice).
        let mut moved = Vec::new();
        for application in &applications {
            if let Some(grant) = self.grant_mut(&application.grant) {
                if !grant.expired {
                    grant.available += application.amount;
                }
                moved.push((grant.customer.clone(), grant.asset.clone()));
            }
        }
        self.reversed
            .insert(invoice.to_owned(), applications.clone());
        let customer = self
            .applied
            .get(invoice)
            .map(|(r, _)| r.customer.clone())
            .unwrap_or_default();
        moved.sort_by(|a, b| (a.0 != customer, a).cmp(&(b.0 != customer, b)));
        moved.dedup();
        for (owner, asset) in &moved {
            self.evaluate(owner, asset, now);
        }
        Outcome::Ok(applications)
    }

    /// What VoidCreditGrant does at `now`.
    pub fn void(&mut self, id: &str, now: Time) -> Outcome<()> {
        let Some(grant) = self.grant_mut(id) else {
            return Outcome::NotFound;
        };
        if grant.voided {
            return Outcome::Refused("GRANT_VOIDED");
        }
        if grant.applied_total > 0 {
            return Outcome::Refused("GRANT_ALREADY_APPLIED");
        }
        grant.voided = true;
        grant.available = 0;
        let owner = (grant.customer.clone(), grant.asset.clone());
        self.evaluate(&owner.0, &owner.1, now);
        Outcome::Ok(())
    }

    /// What ExpireCreditGrant does at `now`.
    pub fn expire(&mut self, id: &str, now: Time) -> Outcome<()> {
        let Some(grant) = self.grant_mut(id) else {
            return Outcome::NotFound;
        };
        if grant.voided {
            return Outcome::Refused("GRANT_VOIDED");
        }
        if grant.expired && grant.available == 0 {
            return Outcome::Refused("GRANT_ALREADY_EXPIRED");
        }
        grant.expired = true;
        grant.expires_at = Some(grant.expires_at.map_or(now, |at| at.min(now)));
        grant.available = 0;
        let owner = (grant.customer.clone(), grant.asset.clone());
        self.evaluate(&owner.0, &owner.1, now);
        Outcome::Ok(())
    }

    /// What ActivateCreditGrant does (a bought grant's invoice was paid).
    pub fn activate(&mut self, id: &str, now: Time) -> Outcome<()> {
        let Some(grant) = self.grant_mut(id) else {
            return Outcome::NotFound;
        };
        if grant.voided {
            return Outcome::Refused("GRANT_VOIDED");
        }
        grant.pending = false;
        let owner = (grant.customer.clone(), grant.asset.clone());
        self.evaluate(&owner.0, &owner.1, now);
        Outcome::Ok(())
    }

    /// What CreateCreditHold does: it fits in what is available now less
    /// the active holds, or nothing is written.
    pub fn hold(
        &mut self,
        id: &str,
        customer: &str,
        asset: &str,
        amount: i64,
        now: Time,
    ) -> Outcome<()> {
        let free = self
            .available(customer, now)
            .get(asset)
            .copied()
            .unwrap_or(0)
            - self.held(customer, asset);
        if amount > free {
            return Outcome::Refused("INSUFFICIENT_CREDITS");
        }
        self.holds.push(Hold {
            id: id.to_owned(),
            customer: customer.to_owned(),
            asset: asset.to_owned(),
            amount,
            released: false,
        });
        self.evaluate(customer, asset, now);
        Outcome::Ok(())
    }

    /// What ReleaseCreditHold does (a released hold stays as it is).
    pub fn release(&mut self, id: &str, now: Time) -> Outcome<()> {
        let Some(hold) = self.holds.iter_mut().find(|h| h.id == id) else {
            return Outcome::NotFound;
        };
        if hold.released {
            return Outcome::Ok(());
        }
        hold.released = true;
        let owner = (hold.customer.clone(), hold.asset.clone());
        self.evaluate(&owner.0, &owner.1, now);
        Outcome::Ok(())
    }

    /// Active holds of a customer in an asset.
    pub fn held(&self, customer: &str, asset: &str) -> i64 {
        self.holds
            .iter()
            .filter(|h| !h.released && h.customer == customer && h.asset == asset)
            .map(|h| h.amount)
            .sum()
    }

    /// A customer's available balance per asset at `now` (grants effective,
    /// not expired, not voided, not pending payment).
    pub fn available(&self, customer: &str, now: Time) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for g in self.grants.iter().filter(|g| g.customer == customer) {
            let entry = out.entry(g.asset.clone()).or_insert(0);
            if !g.voided
                && !g.pending
                && g.effective_at <= now
                && g.expires_at.is_none_or(|at| at > now)
            {
                *entry += g.available;
            }
        }
        out
    }

    /// A customer's credits waiting for payment per asset (pending grants
    /// not voided).
    pub fn pending(&self, customer: &str) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for g in self.grants.iter().filter(|g| g.customer == customer) {
            let entry = out.entry(g.asset.clone()).or_insert(0);
            if g.pending && !g.voided {
                *entry += g.available;
            }
        }
        out
    }

    /// Re-evaluates a customer's watched balance of one asset (available
    /// less active holds) and records the events of the move (DESIGN §10):
    /// none on a first evaluation; falling passes the highest threshold
    /// first, rising the lowest; the built-in alert is a threshold of 1.
    pub fn evaluate(&mut self, customer: &str, asset: &str, now: Time) {
        let after = self
            .available(customer, now)
            .get(asset)
            .copied()
            .unwrap_or(0)
            - self.held(customer, asset);
        let key = (customer.to_owned(), asset.to_owned());
        let Some(before) = self.evaluated.insert(key, after) else {
            return;
        };
        let mut fired: Vec<(i64, &'static str, Option<String>)> = Vec::new();
        if before > 0 && after <= 0 {
            fired.push((1, DEPLETED, None));
        } else if before <= 0 && after > 0 {
            fired.push((1, RECOVERED, None));
        }
        for alert in self
            .alerts
            .iter()
            .filter(|a| a.asset == asset && a.customer.as_deref().is_none_or(|c| c == customer))
        {
            match (before < alert.threshold, after < alert.threshold) {
                (false, true) => fired.push((alert.threshold, DROPPED, Some(alert.id.clone()))),
                (true, false) => fired.push((alert.threshold, RECOVERED, Some(alert.id.clone()))),
                _ => {}
            }
        }
        if after < before {
            fired.sort_by_key(|f| std::cmp::Reverse(f.0));
        } else {
            fired.sort_by_key(|f| f.0);
        }
        for (_, kind, alert) in fired {
            self.events.push(AlertEvent {
                kind,
                customer: customer.to_owned(),
                asset: asset.to_owned(),
                alert,
                balance: after,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, priority: u32, promotional: bool, expires_at: Option<Time>) -> Grant {
        Grant {
            id: id.into(),
            customer: "cus_a".into(),
            asset: "usd".into(),
            amount: 100,
            available: 100,
            applied_total: 0,
            priority,
            promotional,
            effective_at: 0,
            expires_at,
            prices: None,
            shared: false,
            voided: false,
            expired: false,
            pending: false,
            created: 0,
        }
    }

    #[test]
    fn the_order_is_the_designs() {
        let mut ledger = Ledger::default();
        ledger.add_grant(grant("g_paid_no_expiry", 50, false, None), 5);
        ledger.add_grant(grant("g_paid_expiring", 50, false, Some(1000)), 5);
        ledger.add_grant(grant("g_promo_expiring", 50, true, Some(1000)), 5);
        ledger.add_grant(grant("g_first", 10, false, None), 5);
        let request = ApplyRequest {
            customer: "cus_a".into(),
            period_end: 10,
            lines: vec![Line {
                id: "il_1".into(),
                price: "price_a".into(),
                asset: "usd".into(),
                amount: 350,
            }],
        };
        let Outcome::Ok(applied) = ledger.apply("in_1", &request, &[], false, 10) else {
            panic!("applied");
        };
        let order: Vec<&str> = applied.iter().map(|a| a.grant.as_str()).collect();
        assert_eq!(
            order,
            [
                "g_first",
                "g_promo_expiring",
                "g_paid_expiring",
                "g_paid_no_expiry"
            ]
        );
        assert_eq!(applied[3].amount, 50);
        assert_eq!(
            ledger.void("g_first", 10),
            Outcome::Refused("GRANT_ALREADY_APPLIED")
        );
        assert_eq!(ledger.reverse("in_1", 10), Outcome::Ok(applied));
        assert_eq!(ledger.available("cus_a", 10)["usd"], 400);
        // The grants' first evaluation fired nothing; the application took
        // the balance from 400 to 50, the reversal back to 400.
        assert!(ledger.events.is_empty(), "{:?}", ledger.events);
    }

    /// Found by the long run (seed 20261129, PostgreSQL, account 1, the
    /// customer of epoch 47): a reversal across a pool evaluates each
    /// owner only in the assets of its own grants that moved. The model
    /// had evaluated every owner in every asset of the invoice, so its
    /// first evaluation of (child, unit) came too early and a later grant
    /// fired a `recovered` the service rightly did not.
    #[test]
    fn seed_20261129_a_pooled_reversal_evaluates_only_the_balances_it_moves() {
        let mut ledger = Ledger::default();
        let mut own = grant("g_own", 50, false, None);
        own.customer = "cus_child".into();
        ledger.add_grant(own, 5);
        let mut pooled = grant("g_parent_unit", 50, false, None);
        pooled.customer = "cus_parent".into();
        pooled.asset = "pu_x".into();
        pooled.shared = true;
        ledger.add_grant(pooled, 5);
        let line = |id: &str, asset: &str| Line {
            id: id.into(),
            price: "price_a".into(),
            asset: asset.into(),
            amount: 10,
        };
        let request = ApplyRequest {
            customer: "cus_child".into(),
            period_end: 10,
            lines: vec![line("il_usd", "usd"), line("il_unit", "pu_x")],
        };
        let pool = ["cus_parent".to_owned()];
        assert!(matches!(
            ledger.apply("in_1", &request, &pool, false, 10),
            Outcome::Ok(_)
        ));
        assert!(matches!(ledger.reverse("in_1", 10), Outcome::Ok(_)));
        assert!(
            !ledger
                .evaluated
                .contains_key(&("cus_child".to_owned(), "pu_x".to_owned()))
        );
        assert!(
            !ledger
                .evaluated
                .contains_key(&("cus_parent".to_owned(), "usd".to_owned()))
        );
        // The child's first unit grant is its first evaluation: silent.
        let mut first_unit = grant("g_child_unit", 50, false, None);
        first_unit.customer = "cus_child".into();
        first_unit.asset = "pu_x".into();
        ledger.add_grant(first_unit, 11);
        assert!(ledger.events.is_empty(), "{:?}", ledger.events);
    }

    #[test]
    fn alerts_fire_once_per_crossing_in_threshold_order() {
        let mut ledger = Ledger::default();
        ledger.add_grant(grant("g", 50, false, None), 5);
        ledger.alerts.push(Alert {
            id: "low".into(),
            customer: None,
            asset: "usd".into(),
            threshold: 20,
        });
        ledger.alerts.push(Alert {
            id: "high".into(),
            customer: Some("cus_a".into()),
            asset: "usd".into(),
            threshold: 60,
        });
        assert_eq!(ledger.hold("h", "cus_a", "usd", 100, 6), Outcome::Ok(()));
        assert_eq!(
            ledger.hold("h2", "cus_a", "usd", 1, 6),
            Outcome::Refused("INSUFFICIENT_CREDITS")
        );
        let kinds: Vec<(&str, Option<&str>)> = ledger
            .events
            .iter()
            .map(|e| (e.kind, e.alert.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (DROPPED, Some("high")),
                (DROPPED, Some("low")),
                (DEPLETED, None)
            ]
        );
        assert_eq!(ledger.release("h", 7), Outcome::Ok(()));
        assert_eq!(ledger.release("h", 8), Outcome::Ok(()));
        assert_eq!(ledger.events.len(), 6, "recovered: built-in, low, high");
        assert_eq!(ledger.events[3].kind, RECOVERED);
        assert_eq!(ledger.events[3].alert, None);
    }
}
