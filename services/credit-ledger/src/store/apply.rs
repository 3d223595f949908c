//! ApplyCredits and ReverseCredits: one transaction each, idempotent on the invoice.

use std::collections::HashSet;

use billing_db::Tx;
use billing_db::batch::Batch;
use billing_db::events::Outbox;
use billing_server::status::Refuse;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, grants, rows, transactions};
use crate::domain::apply::{self, ApplyOutcome, ApplyRequest, Reversal};
use crate::domain::error::ConflictReason;
use crate::domain::grant::Grant;
use crate::error::LedgerError;

/// What an earlier ApplyCredits for the invoice left.
struct Recorded {
    customer: String,
    fingerprint: String,
    outcome: String,
    reversal: Option<String>,
}

/// The outcome of a write, and whether it was a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyWrite {
    /// The outcome (stored or new).
    pub outcome: ApplyOutcome,
    /// True when the invoice had already been applied with the same lines.
    pub replayed: bool,
}

impl Store {
    /// Applies credits to the invoice's lines, or returns the stored outcome
    /// of an identical earlier call.
    pub async fn apply(
        &self,
        account: &str,
        request: &ApplyRequest,
        now: DateTime<Utc>,
    ) -> Result<ApplyWrite, LedgerError> {
        let fingerprint = fingerprint(request);
        let backend = self.db.backend();
        let mut tx = self.db.begin_write().await?;
        let mut grants = self.lock_eligible(&mut tx, account, request).await?;
        let mut outcome = apply::plan(request, &grants)?;
        let appended = apply::book(&mut outcome, &mut grants, now, &mut transactions::new_id)?;
        // No "already applied?" read up front: the application row's primary
        // key decides, first of the writes, which saves a round trip on every
        // first application and lets a replay stop before writing anything
        // else.
        let inserted = sqlx::query(
            "INSERT INTO invoice_credit_applications (account, invoice, customer, fingerprint, outcome, created_us) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account, invoice) DO NOTHING",
        )
        .bind(account)
        .bind(&request.invoice)
        .bind(&request.customer)
        .bind(&fingerprint)
        .bind(serde_json::to_string(&outcome)?)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // The invoice was applied before, or by a concurrent call that
            // committed first (PostgreSQL waited for it on the primary key):
            // ours is void, the recorded one stands.
            tx.rollback().await?;
            let mut tx = self.db.begin_write().await?;
            let recorded = self.recorded(&mut tx, account, &request.invoice).await?;
            tx.rollback().await?;
            return recorded
                .map(|r| replay(r, &fingerprint))
                .unwrap_or_else(|| Err(LedgerError::Corrupt("application vanished".into())));
        }
        // The writes that return nothing go out together (one call on
        // SQLite, whose single writer's turnaround is the throughput).
        let mut batch = Batch::new();
        transactions::append_to(&mut batch, account, &appended);
        let touched: HashSet<&str> = outcome
            .applications
            .iter()
            .map(|a| a.credit_grant.as_str())
            .collect();
        let mut outbox = Outbox::new();
        for grant in grants.iter().filter(|g| touched.contains(g.id.as_str())) {
            grants::save_grant_to(&mut batch, &mut outbox, account, grant)?;
        }
        // What the applications took from the balance available now.
        let mut debits: Vec<(&billing_money::Asset, i64)> = Vec::new();
        // Pooled grants change their owners' balances: those are evaluated
        // in full below, once the grants are written.
        let mut pooled: Vec<(&str, &billing_money::Asset)> = Vec::new();
        for application in &outcome.applications {
            if let Some(owner) = grants
                .iter()
                .find(|g| g.id == application.credit_grant && g.customer != request.customer)
            {
                if !pooled.contains(&(owner.customer.as_str(), &application.asset)) {
                    pooled.push((owner.customer.as_str(), &application.asset));
                }
                continue;
            }
            let counts = grants
                .iter()
                .any(|g| g.id == application.credit_grant && g.is_available_at(now));
            let amount = if counts { application.amount } else { 0 };
            match debits.iter_mut().find(|(a, _)| **a == application.asset) {
                Some((_, sum)) => {
                    *sum = sum.checked_add(amount).ok_or_else(|| {
                        LedgerError::Corrupt("applied credits past 64 bits".into())
                    })?;
                }
                None => debits.push((&application.asset, amount)),
            }
        }
        let owner = (account, request.customer.as_str());
        let stale = self
            .debit_alerts(&mut tx, &mut outbox, owner, &debits, now)
            .await?;
        if stale.is_empty() && pooled.is_empty() {
            outbox.add_to(&mut batch, backend, account, to_micros(now));
            batch.run(&mut tx, backend).await?;
        } else {
            // The full evaluation reads the grants: write them first.
            batch.run(&mut tx, backend).await?;
            if !stale.is_empty() {
                self.evaluate_alerts(&mut tx, &mut outbox, owner, &stale, now)
                    .await?;
            }
            // Balance rows are locked customer first, then ancestors by
            // name (as ReverseCredits does): no two writers cross.
            pooled.sort_unstable();
            for (ancestor, asset) in &pooled {
                self.evaluate_alerts(&mut tx, &mut outbox, (account, ancestor), &[*asset], now)
                    .await?;
            }
            outbox
                .write(&mut tx, backend, account, to_micros(now))
                .await?;
        }
        tx.commit().await?;
        Ok(ApplyWrite {
            outcome,
            replayed: false,
        })
    }

    /// Computes what ApplyCredits would do, writing nothing.
    pub async fn preview(
        &self,
        account: &str,
        request: &ApplyRequest,
    ) -> Result<ApplyOutcome, LedgerError> {
        let fingerprint = fingerprint(request);
        let mut conn = self.db.pool().acquire().await?;
        let row = sqlx::query(
            "SELECT fingerprint, outcome, reversal FROM invoice_credit_applications WHERE account = $1 AND invoice = $2",
        )
        .bind(account)
        .bind(&request.invoice)
        .fetch_optional(&mut *conn)
        .await?;
        drop(conn);
        if let Some(row) = row {
            let recorded = Recorded {
                fingerprint: row.try_get(0)?,
                outcome: row.try_get(1)?,
                reversal: row.try_get(2)?,
                customer: request.customer.clone(),
            };
            return replay(recorded, &fingerprint).map(|w| w.outcome);
        }
        let mut grants = Vec::new();
        for (level, owner) in std::iter::once(&request.customer)
            .chain(&request.pool)
            .enumerate()
        {
            let sql = eligible_sql(request, level > 0, "");
            let found = bind_eligible(
                sqlx::query(sqlx::AssertSqlSafe(sql)),
                account,
                owner,
                request,
            )
            .fetch_all(self.db.pool())
            .await?;
            for row in &found {
                grants.push(rows::grant(row)?);
            }
        }
        let mut outcome = apply::plan(request, &grants)?;
        outcome.preview = true;
        Ok(outcome)
    }

    /// Gives back the credits applied to `invoice`, once.
    pub async fn reverse(
        &self,
        account: &str,
        invoice: &str,
        now: DateTime<Utc>,
    ) -> Result<Reversal, LedgerError> {
        let mut tx = self.db.begin_write().await?;
        let recorded = self
            .recorded(&mut tx, account, invoice)
            .await?
            .ok_or_else(|| LedgerError::not_found("invoice with applied credits", invoice))?;
        if let Some(reversal) = recorded.reversal {
            return Ok(serde_json::from_str(&reversal)?);
        }
        let outcome: ApplyOutcome = serde_json::from_str(&recorded.outcome)?;
        let mut ids: Vec<String> = outcome
            .applications
            .iter()
            .map(|a| a.credit_grant.clone())
            .collect();
        ids.sort();
        ids.dedup();
        let mut grants = self.lock_grants(&mut tx, account, &ids).await?;
        let (reversal, appended) =
            apply::reverse(&outcome, &mut grants, now, &mut transactions::new_id)?;
        transactions::append(&mut tx, account, &appended).await?;
        let mut outbox = Outbox::new();
        for grant in &grants {
            grants::save_grant(&mut tx, &mut outbox, account, grant).await?;
        }
        // The invoice's customer's grants, and with a pool its ancestors':
        // each owner's balance is evaluated, the customer first, then the
        // ancestors by name (ApplyCredits' order of the balance locks).
        let mut owners: Vec<&str> = grants.iter().map(|g| g.customer.as_str()).collect();
        owners.sort_unstable_by_key(|o| (*o != recorded.customer, *o));
        owners.dedup();
        for owner in owners {
            let assets: Vec<_> = grants
                .iter()
                .filter(|g| g.customer == owner)
                .map(|g| &g.asset)
                .collect();
            self.evaluate_alerts(&mut tx, &mut outbox, (account, owner), &assets, now)
                .await?;
        }
        outbox
            .write(&mut tx, self.db.backend(), account, to_micros(now))
            .await?;
        sqlx::query(
            "UPDATE invoice_credit_applications SET reversal = $1, reversed_us = $2 WHERE account = $3 AND invoice = $4",
        )
        .bind(serde_json::to_string(&reversal)?)
        .bind(to_micros(now))
        .bind(account)
        .bind(invoice)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(reversal)
    }

    async fn recorded(
        &self,
        tx: &mut Tx,
        account: &str,
        invoice: &str,
    ) -> Result<Option<Recorded>, LedgerError> {
        let sql = format!(
            "SELECT fingerprint, outcome, reversal, customer FROM invoice_credit_applications \
             WHERE account = $1 AND invoice = $2{}",
            self.db.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(invoice)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|row| {
            Ok(Recorded {
                fingerprint: row.try_get(0)?,
                outcome: row.try_get(1)?,
                reversal: row.try_get(2)?,
                customer: row.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Locks the grants that could pay the invoice: the customer's, then
    /// each ancestor's shared ones, nearest first, each customer's in id
    /// order. Every application locks up its own chain in that order, so
    /// two children of one parent, or a child and its parent, never wait
    /// on each other in a cycle.
    async fn lock_eligible(
        &self,
        tx: &mut Tx,
        account: &str,
        request: &ApplyRequest,
    ) -> Result<Vec<Grant>, LedgerError> {
        let mut grants = Vec::new();
        for (level, owner) in std::iter::once(&request.customer)
            .chain(&request.pool)
            .enumerate()
        {
            let sql = eligible_sql(request, level > 0, self.db.for_update());
            let found = bind_eligible(
                sqlx::query(sqlx::AssertSqlSafe(sql)),
                account,
                owner,
                request,
            )
            .fetch_all(&mut **tx)
            .await?;
            for row in &found {
                grants.push(rows::grant(row)?);
            }
        }
        Ok(grants)
    }
}

/// The grants of one customer that could pay `request` (an ancestor's:
/// only those shared with descendants), in id order, with `lock` appended.
fn eligible_sql(request: &ApplyRequest, shared_only: bool, lock: &str) -> String {
    let shared = if shared_only {
        " AND shared_with_descendants = 1"
    } else {
        ""
    };
    format!(
        "SELECT {} FROM credit_grants WHERE account = $1 AND customer = $3{shared} AND available > 0 \
         AND voided_at_us IS NULL AND pending_payment = 0 AND effective_at_us <= $2 \
         AND (expires_at_us IS NULL OR expires_at_us > $2) AND asset IN ({}) ORDER BY id{lock}",
        rows::GRANT_COLUMNS,
        billing_db::sql::list(request.assets().len(), 4),
    )
}

fn bind_eligible<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    account: &'q str,
    owner: &'q str,
    request: &'q ApplyRequest,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query = query
        .bind(account)
        .bind(to_micros(request.period_end))
        .bind(owner);
    for asset in request.assets() {
        query = query.bind(asset.key());
    }
    query
}

fn replay(recorded: Recorded, fingerprint: &str) -> Result<ApplyWrite, LedgerError> {
    if recorded.fingerprint != fingerprint {
        return Err(LedgerError::conflict(
            ConflictReason::InvoiceAlreadyApplied,
            "credits were already applied to this invoice with different lines",
        ));
    }
    Ok(ApplyWrite {
        outcome: serde_json::from_str(&recorded.outcome)?,
        replayed: true,
    })
}

/// The fingerprint of what an ApplyCredits request applies (a replay with
/// other lines is refused).
fn fingerprint(request: &ApplyRequest) -> String {
    billing_server::fingerprint::fingerprint("ApplyCredits", request.canonical().as_bytes())
}
