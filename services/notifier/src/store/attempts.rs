//! Recording delivery attempts: each outcome on its delivery (delivered,
//! retried on the schedule, or failed) and on its endpoint (its failure
//! record; disabled by a 410 or after three days of failures, with the
//! notifier's `webhook_endpoint.disabled` event), a batch per transaction.

use billing_db::events::{NewEvent, Outbox};
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};

use super::Store;
use super::deliveries::Claimed;
use crate::domain::endpoint::{ENDPOINT_DISABLED, FAILING_DISABLE_AFTER};
use crate::domain::schedule::RetrySchedule;
use crate::error::NotifierError;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// HTTP 410: the endpoint is gone and is disabled.
    Gone,
    /// Anything else: an error status, a timeout, a refused address.
    Failed {
        /// The status, 0 without an answer.
        status: u16,
        /// Why.
        error: String,
    },
    /// Not sent: the endpoint was disabled or deleted meanwhile.
    Dropped {
        /// Why.
        reason: String,
    },
}

/// One attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery.
    pub claimed: Claimed,
    /// Its endpoint, when it still exists.
    pub endpoint: Option<String>,
    /// Whether that endpoint had a failure record when the attempt began.
    pub endpoint_failing: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// When.
    pub at: DateTime<Utc>,
}

/// Delivered attempts (the endpoint has no failure record to clear): one
/// UPDATE per account and HTTP status, stamped with the batch's latest time.
async fn record_delivered(
    tx: &mut billing_db::Tx,
    attempts: &[&Attempt],
) -> Result<(), NotifierError> {
    let mut groups: std::collections::BTreeMap<(&str, u16), Vec<&str>> =
        std::collections::BTreeMap::new();
    for attempt in attempts {
        if let Outcome::Delivered { status } = attempt.outcome {
            groups
                .entry((attempt.claimed.account.as_str(), status))
                .or_default()
                .push(attempt.claimed.id.as_str());
        }
    }
    let at_us = attempts.iter().map(|a| to_micros(a.at)).max().unwrap_or(0);
    for ((account, status), ids) in groups {
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
             last_http_status = $1, last_error = '', next_attempt_us = NULL, delivered_us = $2, \
             updated_us = $2 WHERE account = $3 AND id IN ({})",
            billing_db::sql::list(ids.len(), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(status))
            .bind(at_us)
            .bind(account);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The delivery's side of an attempt.
async fn record_delivery(
    tx: &mut billing_db::Tx,
    attempt: &Attempt,
    schedule: &RetrySchedule,
) -> Result<(), NotifierError> {
    let now = attempt.at;
    let now_us = to_micros(now);
    let attempts =
        attempt.claimed.attempts + i64::from(!matches!(attempt.outcome, Outcome::Dropped { .. }));
    let (status, http, error, next, delivered) = match &attempt.outcome {
        Outcome::Delivered { status } => ("delivered", *status, String::new(), None, Some(now_us)),
        Outcome::Gone => (
            "failed",
            410,
            "the endpoint answered 410 Gone".to_owned(),
            None,
            None,
        ),
        Outcome::Dropped { reason } => ("failed", 0, reason.clone(), None, None),
        Outcome::Failed { status, error } => {
            let retry = u32::try_from(attempts)
                .ok()
                .and_then(|n| schedule.after(n))
                .map(|delay| to_micros(now + delay));
            let state = if retry.is_some() { "pending" } else { "failed" };
            (state, *status, error.clone(), retry, None)
        }
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, last_http_status = $3, last_error = $4, \
         next_attempt_us = $5, delivered_us = $6, updated_us = $7 WHERE account = $8 AND id = $9",
    )
    .bind(status)
    .bind(attempts)
    .bind(i64::from(http))
    .bind(billing_server::status::clip(&error, 500))
    .bind(next)
    .bind(delivered)
    .bind(now_us)
    .bind(&attempt.claimed.account)
    .bind(&attempt.claimed.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The endpoint's side of an attempt: its failure record, and disabling.
/// Returns the endpoint when this attempt disabled it.
async fn endpoint_outcome(
    tx: &mut billing_db::Tx,
    (account, endpoint): (&str, &str),
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<Option<crate::domain::endpoint::Endpoint>, NotifierError> {
    let now_us = to_micros(now);
    let disable = match outcome {
        Outcome::Dropped { .. } => return Ok(None),
        Outcome::Delivered { .. } => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since_us = NULL WHERE account = $1 AND id = $2 \
                 AND failing_since_us IS NOT NULL",
            )
            .bind(account)
            .bind(endpoint)
            .execute(&mut **tx)
            .await?;
            return Ok(None);
        }
        Outcome::Gone => Some("the endpoint answered 410 Gone".to_owned()),
        Outcome::Failed { .. } => {
            let since: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_endpoints SET failing_since_us = COALESCE(failing_since_us, $1) \
                 WHERE account = $2 AND id = $3 RETURNING failing_since_us",
            )
            .bind(now_us)
            .bind(account)
            .bind(endpoint)
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
            let limit = FAILING_DISABLE_AFTER.num_microseconds().unwrap_or(i64::MAX);
            since
                .filter(|since| now_us - since >= limit)
                .map(|_| "every delivery failed for 3 days".to_owned())
        }
    };
    let Some(reason) = disable else {
        return Ok(None);
    };
    let sql = format!(
        "UPDATE webhook_endpoints SET disabled_reason = $1, updated_us = $2 WHERE account = $3 AND id = $4 \
         AND disabled_reason IS NULL RETURNING {}",
        super::endpoints::COLUMNS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&reason)
        .bind(now_us)
        .bind(account)
        .bind(endpoint)
        .fetch_optional(&mut **tx)
        .await?;
    // Disabled now, not before: its event, with the endpoint as data.
    row.as_ref().map(super::endpoints::endpoint).transpose()
}

impl Store {
    /// Records attempts' outcomes on their deliveries and endpoints, all in
    /// one transaction (one commit for a batch): delivered; or retried on
    /// the schedule; or failed (the schedule ran out, 410, dropped). A 410
    /// disables the endpoint; an endpoint failing for
    /// [`FAILING_DISABLE_AFTER`] is disabled with a
    /// `webhook_endpoint.disabled` event.
    pub async fn record(
        &self,
        attempts: &[Attempt],
        schedule: &RetrySchedule,
    ) -> Result<(), NotifierError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        let mut outbox = Outbox::new();
        let mut disabled_in_batch = Vec::new();
        // The common case, delivered to an endpoint without a failure
        // record, is one UPDATE per account and HTTP status for the batch.
        let (plain, others): (Vec<&Attempt>, Vec<&Attempt>) = attempts
            .iter()
            .partition(|a| matches!(a.outcome, Outcome::Delivered { .. }) && !a.endpoint_failing);
        record_delivered(&mut tx, &plain).await?;
        for attempt in others {
            record_delivery(&mut tx, attempt, schedule).await?;
            if let Some(endpoint) = &attempt.endpoint {
                let owner = (attempt.claimed.account.as_str(), endpoint.as_str());
                if let Some(disabled) =
                    endpoint_outcome(&mut tx, owner, &attempt.outcome, attempt.at).await?
                {
                    disabled_in_batch.push((attempt.claimed.account.clone(), disabled));
                }
            }
        }
        // The notifier's own events, one outbox per account (an outbox is
        // written once per transaction and account).
        disabled_in_batch.sort_by(|a, b| a.0.cmp(&b.0));
        let now_us = attempts.iter().map(|a| to_micros(a.at)).max().unwrap_or(0);
        let mut current: Option<String> = None;
        for (account, endpoint) in disabled_in_batch {
            if current.as_deref() != Some(account.as_str()) {
                if let Some(previous) = current.take() {
                    std::mem::take(&mut outbox)
                        .write(&mut tx, self.db.backend(), &previous, now_us)
                        .await?;
                }
                current = Some(account.clone());
            }
            outbox.push(
                billing_server::ids::new_id("evt"),
                NewEvent {
                    event_type: ENDPOINT_DISABLED,
                    subject: &endpoint.id,
                    data: serde_json::to_string(&endpoint)?,
                },
            );
        }
        if let Some(account) = current {
            outbox
                .write(&mut tx, self.db.backend(), &account, now_us)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
