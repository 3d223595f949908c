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
    /// Creation order within the account.
    pub created: u64,
}

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
    /// Records a grant the service created (after `check_grant` passed).
    pub fn add_grant(&mut self, mut grant: Grant) {
        self.created += 1;
        grant.created = self.created;
        grant.available = grant.amount;
        self.grants.push(grant);
    }

    fn grant_mut(&mut self, id: &str) -> Option<&mut Grant> {
        self.grants.iter_mut().find(|g| g.id == id)
    }

    /// The grant with this id.
    pub fn grant(&self, id: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.id == id)
    }

    /// Whether `grant` may pay `line` of a period ending at `period_end`.
    fn eligible(grant: &Grant, line: &Line, period_end: Time) -> bool {
        grant.asset == line.asset
            && !grant.voided
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

    /// What ApplyCredits does (`preview`: computes, changes nothing).
    pub fn apply(
        &mut self,
        invoice: &str,
        request: &ApplyRequest,
        pool: &[String],
        preview: bool,
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
        }
        Outcome::Ok(applications)
    }

    /// What ReverseCredits does: every application back to its grant; a
    /// grant already expired expires what comes back at once.
    pub fn reverse(&mut self, invoice: &str) -> Outcome<Vec<Application>> {
        if let Some(done) = self.reversed.get(invoice) {
            return Outcome::Ok(done.clone());
        }
        let Some((_, applications)) = self.applied.get(invoice).cloned() else {
            return Outcome::NotFound;
        };
        for application in &applications {
            if let Some(grant) = self.grant_mut(&application.grant)
                && !grant.expired
            {
                grant.available += application.amount;
            }
        }
        self.reversed
            .insert(invoice.to_owned(), applications.clone());
        Outcome::Ok(applications)
    }

    /// What VoidCreditGrant does.
    pub fn void(&mut self, id: &str) -> Outcome<()> {
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
        Outcome::Ok(())
    }

    /// A customer's available balance per asset at `now` (grants effective,
    /// not expired, not voided).
    pub fn available(&self, customer: &str, now: Time) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for g in self.grants.iter().filter(|g| g.customer == customer) {
            let entry = out.entry(g.asset.clone()).or_insert(0);
            if !g.voided && g.effective_at <= now && g.expires_at.is_none_or(|at| at > now) {
                *entry += g.available;
            }
        }
        out
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
            created: 0,
        }
    }

    #[test]
    fn the_order_is_the_designs() {
        let mut ledger = Ledger::default();
        ledger.add_grant(grant("g_paid_no_expiry", 50, false, None));
        ledger.add_grant(grant("g_paid_expiring", 50, false, Some(1000)));
        ledger.add_grant(grant("g_promo_expiring", 50, true, Some(1000)));
        ledger.add_grant(grant("g_first", 10, false, None));
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
        let Outcome::Ok(applied) = ledger.apply("in_1", &request, &[], false) else {
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
            ledger.void("g_first"),
            Outcome::Refused("GRANT_ALREADY_APPLIED")
        );
        assert_eq!(ledger.reverse("in_1"), Outcome::Ok(applied));
        assert_eq!(ledger.available("cus_a", 10)["usd"], 400);
    }
}
