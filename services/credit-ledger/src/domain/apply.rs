//! Planning an application of credits to an invoice's lines.
//!
//! Lines are taken in request order; each takes from its eligible grants in
//! [`application_order`] until it is covered or they are empty. Each
//! grant/line pair used is one `credits_applied` debit.

use std::collections::{BTreeMap, HashMap};

use billing_money::Asset;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::grant::{Grant, application_order};
use super::transaction::{BalanceTransaction, TransactionKind};

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
}

impl ApplyRequest {
    /// A canonical description of what is applied, hashed to detect a replay
    /// with different lines.
    pub fn fingerprint(&self) -> String {
        let mut canonical = format!("{}\n{}\n", self.customer, self.period_end.timestamp_micros());
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
        billing_server::fingerprint::fingerprint("ApplyCredits", canonical.as_bytes())
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
pub fn plan(request: &ApplyRequest, grants: &[Grant]) -> ApplyOutcome {
    let mut ordered: Vec<&Grant> = grants.iter().collect();
    ordered.sort_by(|a, b| application_order(a, b));
    let mut left: HashMap<&str, i64> = ordered.iter().map(|g| (g.id.as_str(), g.available)).collect();

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
            *remaining -= take;
            due -= take;
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
            applied: line.amount - due,
        });
    }
    ApplyOutcome {
        invoice: request.invoice.clone(),
        applications,
        totals: totals(&lines),
        lines,
        preview: false,
    }
}

fn totals(lines: &[LineCredits]) -> Vec<AssetCredits> {
    let mut by_asset: BTreeMap<Asset, (i64, i64)> = BTreeMap::new();
    for line in lines {
        let entry = by_asset.entry(line.asset.clone()).or_default();
        // Line amounts were bounded at validation so sums of at most 1,000 fit;
        // saturate rather than wrap if a caller ever bypasses that.
        entry.0 = entry.0.saturating_add(line.amount);
        entry.1 = entry.1.saturating_add(line.applied);
    }
    by_asset
        .into_iter()
        .map(|(asset, (amount, applied))| AssetCredits { asset, amount, applied })
        .collect()
}

/// Books a planned outcome onto the (locked) grants: debits each grant and
/// returns one `credits_applied` transaction per application, whose ids are
/// written into the outcome.
pub fn book(outcome: &mut ApplyOutcome, grants: &mut [Grant], now: DateTime<Utc>) -> Vec<BalanceTransaction> {
    let mut appended = Vec::with_capacity(outcome.applications.len());
    for application in &mut outcome.applications {
        let Some(grant) = grants.iter_mut().find(|g| g.id == application.credit_grant) else {
            continue;
        };
        grant.available -= application.amount;
        grant.totals.applied += application.amount;
        grant.updated = now;
        let mut debit = grant.transaction(TransactionKind::CreditsApplied, application.amount, now, now);
        debit.invoice = Some(outcome.invoice.clone());
        debit.invoice_line_item = Some(application.invoice_line_item.clone());
        application.credit_balance_transaction = debit.id.clone();
        appended.push(debit);
    }
    appended
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
pub fn reverse(outcome: &ApplyOutcome, grants: &mut [Grant], now: DateTime<Utc>) -> (Reversal, Vec<BalanceTransaction>) {
    let mut appended = Vec::new();
    let mut reversals = Vec::with_capacity(outcome.applications.len());
    for application in &outcome.applications {
        let Some(grant) = grants.iter_mut().find(|g| g.id == application.credit_grant) else {
            continue;
        };
        grant.available += application.amount;
        grant.totals.reinstated += application.amount;
        grant.updated = now;
        let mut credit =
            grant.transaction(TransactionKind::CreditsApplicationInvoiceVoided, application.amount, now, now);
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
            let debit = grant.transaction(TransactionKind::CreditsExpired, application.amount, now, now);
            grant.available -= application.amount;
            grant.totals.expired += application.amount;
            entry.expired_balance_transaction = Some(debit.id.clone());
            appended.push(debit);
        }
        reversals.push(entry);
    }
    (
        Reversal {
            invoice: outcome.invoice.clone(),
            reversals,
        },
        appended,
    )
}
