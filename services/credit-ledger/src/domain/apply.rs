//! Planning an application of credits to an invoice's lines.
//!
//! Lines are taken in request order; each takes from its eligible grants in
//! [`application_order`] until it is covered or they are empty. Each
//! grant/line pair used is one `credits_applied` debit.

use std::collections::{BTreeMap, HashMap};

use billing_money::Asset;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::RuleError;
use super::grant::{Grant, add, application_order, subtract};
use super::transaction::{BalanceTransaction, NewId, TransactionKind};

/// The most lines one ApplyCredits may carry.
pub const LINES_MAX: usize = 1_000;

/// One invoice line, validated and with its asset resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unique within the invoice.
    pub invoice_line_item: String,
    /// Price id, matched against grant scopes.
    pub price: String,
    /// The line's asset.
    pub asset: Asset,
    /// Positive amount in smallest units.
    pub amount: i64,
}

/// A validated ApplyCredits request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The customer.
    pub customer: String,
    /// The invoice (idempotency key of the application).
    pub invoice: String,
    /// The invoice's service period end.
    pub period_end: DateTime<Utc>,
    /// 1 to [`LINES_MAX`] lines with distinct ids.
    pub lines: Vec<Line>,
    /// The customer's ancestors, nearest first: their shared grants pay
    /// after the customer's own (a credit pool). Not in [`Self::canonical`].
    pub pool: Vec<String>,
}

impl ApplyRequest {
    /// A canonical description of what is applied; the store hashes it to
    /// detect a replay with different lines.
    pub fn canonical(&self) -> String {
        let mut canonical = format!(
            "{}\n{}\n",
            self.customer,
            self.period_end.timestamp_micros()
        );
        for line in &self.lines {
            canonical.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                line.invoice_line_item,
                line.price,
                line.asset.key(),
                line.asset.scale(),
                line.amount
            ));
        }
        canonical
    }

    /// Distinct assets of the lines.
    pub fn assets(&self) -> Vec<Asset> {
        let mut assets: Vec<Asset> = self.lines.iter().map(|l| l.asset.clone()).collect();
        assets.sort();
        assets.dedup();
        assets
    }
}

/// Credits of one grant for one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// The line.
    pub invoice_line_item: String,
    /// The grant.
    pub credit_grant: String,
    /// The asset (the line's and the grant's).
    pub asset: Asset,
    /// Positive amount.
    pub amount: i64,
    /// The debit's id; empty in a preview.
    pub credit_balance_transaction: String,
}

/// What credits did for one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCredits {
    /// The line.
    pub invoice_line_item: String,
    /// Its asset.
    pub asset: Asset,
    /// Its amount.
    pub amount: i64,
    /// Credits applied.
    pub applied: i64,
}

/// Totals of one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetCredits {
    /// The asset.
    pub asset: Asset,
    /// Σ line amounts.
    pub amount: i64,
    /// Σ credits applied.
    pub applied: i64,
}

/// The result of ApplyCredits; stored as the idempotent response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// The invoice.
    pub invoice: String,
    /// Applications in the order they were made.
    pub applications: Vec<Application>,
    /// Per line, in request order.
    pub lines: Vec<LineCredits>,
    /// Per asset, by asset.
    pub totals: Vec<AssetCredits>,
    /// Nothing was written.
    pub preview: bool,
}

/// Plans the application over `grants` (any order; ineligible ones are skipped).
///
/// Never takes more from a grant than its `available`, nor more for a line
/// than its amount.
pub fn plan(request: &ApplyRequest, grants: &[Grant]) -> Result<ApplyOutcome, RuleError> {
    // The customer's own grants first, then each ancestor's shared ones,
    // nearest first; each group in the standard order. Another customer's
    // grant outside the pool, or not shared, pays nothing.
    let level = |grant: &Grant| {
        if grant.customer == request.customer {
            Some(0)
        } else if grant.shared {
            request
                .pool
                .iter()
                .position(|c| *c == grant.customer)
                .map(|i| i + 1)
        } else {
            None
        }
    };
    let mut ordered: Vec<(usize, &Grant)> = grants
        .iter()
        .filter_map(|g| level(g).map(|l| (l, g)))
        .collect();
    ordered.sort_by(|(la, a), (lb, b)| la.cmp(lb).then_with(|| application_order(a, b)));
    let ordered: Vec<&Grant> = ordered.into_iter().map(|(_, g)| g).collect();
    let mut left: HashMap<&str, i64> = ordered
        .iter()
        .map(|g| (g.id.as_str(), g.available))
        .collect();

    let mut applications = Vec::new();
    let mut lines = Vec::with_capacity(request.lines.len());
    for line in &request.lines {
        let mut due = line.amount;
        for grant in &ordered {
            if due == 0 {
                break;
            }
            if !grant.is_eligible(&line.asset, &line.price, request.period_end) {
                continue;
            }
            let Some(remaining) = left.get_mut(grant.id.as_str()) else {
                continue;
            };
            let take = (*remaining).min(due);
            if take <= 0 {
                continue;
            }
            *remaining = subtract(*remaining, take, "grant remainder")?;
            due = subtract(due, take, "line remainder")?;
            applications.push(Application {
                invoice_line_item: line.invoice_line_item.clone(),
                credit_grant: grant.id.clone(),
                asset: line.asset.clone(),
                amount: take,
                credit_balance_transaction: String::new(),
            });
        }
        lines.push(LineCredits {
            invoice_line_item: line.invoice_line_item.clone(),
            asset: line.asset.clone(),
            amount: line.amount,
            applied: subtract(line.amount, due, "line applied")?,
        });
    }
    Ok(ApplyOutcome {
        invoice: request.invoice.clone(),
        applications,
        totals: totals(&lines)?,
        lines,
        preview: false,
    })
}

fn totals(lines: &[LineCredits]) -> Result<Vec<AssetCredits>, RuleError> {
    let mut by_asset: BTreeMap<Asset, (i64, i64)> = BTreeMap::new();
    for line in lines {
        let entry = by_asset.entry(line.asset.clone()).or_default();
        entry.0 = add(entry.0, line.amount, "invoice amount per asset")?;
        entry.1 = add(entry.1, line.applied, "credits applied per asset")?;
    }
    Ok(by_asset
        .into_iter()
        .map(|(asset, (amount, applied))| AssetCredits {
            asset,
            amount,
            applied,
        })
        .collect())
}

/// The locked grant an application names. A plan only names grants it was
/// given, so a miss is a bug: it stops the operation instead of skipping.
fn locked<'g>(grants: &'g mut [Grant], id: &str) -> Result<&'g mut Grant, RuleError> {
    grants
        .iter_mut()
        .find(|g| g.id == id)
        .ok_or_else(|| RuleError::NotLocked(id.to_owned()))
}

/// Books a planned outcome onto the (locked) grants: debits each grant and
/// returns one `credits_applied` transaction per application, whose ids are
/// written into the outcome.
pub fn book(
    outcome: &mut ApplyOutcome,
    grants: &mut [Grant],
    now: DateTime<Utc>,
    new_id: NewId<'_>,
) -> Result<Vec<BalanceTransaction>, RuleError> {
    let mut appended = Vec::with_capacity(outcome.applications.len());
    for application in &mut outcome.applications {
        let grant = locked(grants, &application.credit_grant)?;
        grant.available = subtract(grant.available, application.amount, "grant available")?;
        grant.totals.applied = add(grant.totals.applied, application.amount, "applied total")?;
        grant.updated = now;
        let mut debit = grant.transaction(
            new_id(),
            TransactionKind::CreditsApplied,
            application.amount,
            now,
            now,
        );
        debit.invoice = Some(outcome.invoice.clone());
        debit.invoice_line_item = Some(application.invoice_line_item.clone());
        application.credit_balance_transaction = debit.id.clone();
        appended.push(debit);
    }
    Ok(appended)
}

/// Credits given back to one grant when an invoice is voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalEntry {
    /// The line they had paid.
    pub invoice_line_item: String,
    /// The grant.
    pub credit_grant: String,
    /// The asset.
    pub asset: Asset,
    /// How much.
    pub amount: i64,
    /// The reinstating credit.
    pub credit_balance_transaction: String,
    /// The immediate expiry debit, when the grant had expired.
    pub expired_balance_transaction: Option<String>,
}

/// The result of ReverseCredits; stored as the idempotent response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    /// The invoice.
    pub invoice: String,
    /// One entry per application.
    pub reversals: Vec<ReversalEntry>,
}

/// Gives every application of `outcome` back to its (locked) grant. Credits
/// going back to a grant already past `expires_at` expire at once.
pub fn reverse(
    outcome: &ApplyOutcome,
    grants: &mut [Grant],
    now: DateTime<Utc>,
    new_id: NewId<'_>,
) -> Result<(Reversal, Vec<BalanceTransaction>), RuleError> {
    let mut appended = Vec::new();
    let mut reversals = Vec::with_capacity(outcome.applications.len());
    for application in &outcome.applications {
        let grant = locked(grants, &application.credit_grant)?;
        grant.available = add(grant.available, application.amount, "grant available")?;
        grant.totals.reinstated = add(
            grant.totals.reinstated,
            application.amount,
            "reinstated total",
        )?;
        grant.updated = now;
        let mut credit = grant.transaction(
            new_id(),
            TransactionKind::CreditsApplicationInvoiceVoided,
            application.amount,
            now,
            now,
        );
        credit.invoice = Some(outcome.invoice.clone());
        credit.invoice_line_item = Some(application.invoice_line_item.clone());
        let mut entry = ReversalEntry {
            invoice_line_item: application.invoice_line_item.clone(),
            credit_grant: grant.id.clone(),
            asset: application.asset.clone(),
            amount: application.amount,
            credit_balance_transaction: credit.id.clone(),
            expired_balance_transaction: None,
        };
        appended.push(credit);
        if grant.expires_at.is_some_and(|at| at <= now) {
            let debit = grant.transaction(
                new_id(),
                TransactionKind::CreditsExpired,
                application.amount,
                now,
                now,
            );
            grant.available = subtract(grant.available, application.amount, "grant available")?;
            grant.totals.expired = add(grant.totals.expired, application.amount, "expired total")?;
            entry.expired_balance_transaction = Some(debit.id.clone());
            appended.push(debit);
        }
        reversals.push(entry);
    }
    Ok((
        Reversal {
            invoice: outcome.invoice.clone(),
            reversals,
        },
        appended,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use billing_money::Currency;
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::grant::{Category, GrantTotals, Scope};

    fn usd() -> Asset {
        Asset::Currency(Currency::parse("usd").unwrap())
    }

    fn one_grant(amount: i64, available: i64) -> Grant {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Grant {
            id: "credgr_1".into(),
            customer: "cus".into(),
            name: String::new(),
            asset: usd(),
            amount,
            available,
            totals: GrantTotals::default(),
            scope: Scope::Metered,
            category: Category::Paid,
            priority: 50,
            effective_at: t0,
            expires_at: None,
            voided_at: None,
            metadata: BTreeMap::new(),
            created: t0,
            updated: t0,
            source: None,
            cost_basis: None,
            pending_payment: false,
            shared: false,
        }
    }

    fn request(amount: i64) -> ApplyRequest {
        ApplyRequest {
            customer: "cus".into(),
            pool: Vec::new(),
            invoice: "in".into(),
            period_end: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
            lines: vec![Line {
                invoice_line_item: "il_1".into(),
                price: "price_1".into(),
                asset: usd(),
                amount,
            }],
        }
    }

    #[test]
    fn booking_a_grant_the_transaction_did_not_lock_is_an_error_not_a_skip() {
        let grants = vec![one_grant(100, 100)];
        let mut outcome = plan(&request(40), &grants).unwrap();
        let now = grants[0].created;
        let mut ids = || "cbtxn_1".to_owned();
        let booked = book(&mut outcome, &mut [], now, &mut ids);
        assert_eq!(booked, Err(RuleError::NotLocked("credgr_1".into())));
        let reversed = reverse(&outcome, &mut [], now, &mut ids);
        assert_eq!(reversed, Err(RuleError::NotLocked("credgr_1".into())));
    }

    #[test]
    fn money_that_would_overflow_is_an_error_not_a_wrap() {
        // A reinstatement that would push the available balance past i64.
        let mut grants = vec![one_grant(i64::MAX, i64::MAX - 10)];
        let mut outcome = plan(&request(10), &grants).unwrap();
        let now = grants[0].created;
        let mut ids = || "cbtxn_1".to_owned();
        book(&mut outcome, &mut grants, now, &mut ids).unwrap();
        grants[0].available = i64::MAX - 5;
        let reversed = reverse(&outcome, &mut grants, now, &mut ids);
        assert_eq!(reversed, Err(RuleError::Overflow("grant available")));
        // Two lines whose sum per asset passes i64.
        let mut two = request(i64::MAX);
        two.lines.push(Line {
            invoice_line_item: "il_2".into(),
            ..two.lines[0].clone()
        });
        assert_eq!(
            plan(&two, &[]),
            Err(RuleError::Overflow("invoice amount per asset"))
        );
    }

    /// Distinct, increasing grant ids across a test run.
    static NEXT_GRANT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn grant_strategy() -> impl Strategy<Value = Grant> {
        (
            1_i64..500,
            0_u32..3,
            any::<bool>(),
            proptest::option::of(-2_i64..48),
            -48_i64..2,
            proptest::option::of(0_usize..3),
            any::<bool>(),
        )
            .prop_map(
                |(amount, priority, promo, expires_h, effective_h, scoped, eur)| {
                    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
                    let effective_at = t0 + TimeDelta::hours(effective_h);
                    Grant {
                        id: format!(
                            "credgr_{:06}",
                            NEXT_GRANT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        ),
                        customer: "cus".into(),
                        name: String::new(),
                        asset: if eur {
                            Asset::Currency(Currency::parse("eur").unwrap())
                        } else {
                            usd()
                        },
                        amount,
                        available: amount,
                        totals: GrantTotals::default(),
                        scope: scoped.map_or(Scope::Metered, |p| {
                            Scope::Prices(vec![format!("price_{p}")])
                        }),
                        category: if promo {
                            Category::Promotional
                        } else {
                            Category::Paid
                        },
                        priority: priority * 50,
                        effective_at,
                        expires_at: expires_h
                            .map(|h| t0 + TimeDelta::hours(h))
                            .filter(|at| *at > effective_at),
                        voided_at: None,
                        metadata: BTreeMap::new(),
                        created: t0,
                        updated: t0,
                        source: None,
                        cost_basis: None,
                        pending_payment: false,
                        shared: false,
                    }
                },
            )
    }

    proptest! {
        /// The plan never pays a line more than its amount, never takes more
        /// from a grant than it has, uses only eligible grants, and leaves a
        /// line short only when no eligible grant has anything left.
        #[test]
        fn plans_are_sound_and_greedy(
            grants in proptest::collection::vec(grant_strategy(), 0..8),
            lines in proptest::collection::vec((1_i64..400, 0_usize..3), 1..6),
        ) {
            let period_end = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let request = ApplyRequest {
                customer: "cus".into(),
                pool: Vec::new(),
                invoice: "in".into(),
                period_end,
                lines: lines.iter().enumerate().map(|(i, (amount, price))| Line {
                    invoice_line_item: format!("l{i}"),
                    price: format!("price_{price}"),
                    asset: usd(),
                    amount: *amount,
                }).collect(),
            };
            let outcome = plan(&request, &grants).unwrap();
            let mut taken: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
            for application in &outcome.applications {
                prop_assert!(application.amount > 0);
                let grant = grants.iter().find(|g| g.id == application.credit_grant).unwrap();
                let line = request.lines.iter().find(|l| l.invoice_line_item == application.invoice_line_item).unwrap();
                prop_assert!(grant.is_eligible(&line.asset, &line.price, period_end));
                *taken.entry(&grant.id).or_default() += application.amount;
            }
            for grant in &grants {
                prop_assert!(taken.get(grant.id.as_str()).copied().unwrap_or(0) <= grant.available);
            }
            let mut violations = Vec::new();
            crate::domain::invariants::check_invoice(&outcome, &mut violations);
            prop_assert!(violations.is_empty(), "{:?}", violations);
            for (line, credits) in request.lines.iter().zip(&outcome.lines) {
                if credits.applied < line.amount {
                    for grant in grants.iter().filter(|g| g.is_eligible(&line.asset, &line.price, period_end)) {
                        prop_assert_eq!(taken.get(grant.id.as_str()).copied().unwrap_or(0), grant.available);
                    }
                }
            }
        }

        /// Booking then reversing restores every grant's available balance
        /// (for grants not yet expired) and keeps the balance equation.
        #[test]
        fn book_then_reverse_keeps_the_equation(
            mut grants in proptest::collection::vec(grant_strategy(), 1..6),
            lines in proptest::collection::vec((1_i64..400, 0_usize..3), 1..5),
            reverse_after_h in 0_i64..72,
        ) {
            let period_end = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
            let before: Vec<i64> = grants.iter().map(|g| g.available).collect();
            let request = ApplyRequest {
                customer: "cus".into(),
                pool: Vec::new(),
                invoice: "in".into(),
                period_end,
                lines: lines.iter().enumerate().map(|(i, (amount, price))| Line {
                    invoice_line_item: format!("l{i}"),
                    price: format!("price_{price}"),
                    asset: usd(),
                    amount: *amount,
                }).collect(),
            };
            let mut next = 0_u64;
            let mut new_id = move || { next += 1; format!("cbtxn_{next}") };
            let mut outcome = plan(&request, &grants).unwrap();
            book(&mut outcome, &mut grants, period_end, &mut new_id).unwrap();
            let now = period_end + TimeDelta::hours(reverse_after_h);
            reverse(&outcome, &mut grants, now, &mut new_id).unwrap();
            for (grant, available) in grants.iter().zip(before) {
                let mut violations = Vec::new();
                crate::domain::invariants::check_grant(grant, None, &mut violations);
                prop_assert!(violations.is_empty(), "{:?}", violations);
                if grant.expires_at.is_none_or(|at| at > now) {
                    prop_assert_eq!(grant.available, available);
                }
            }
        }
    }
}
