//! The ledger calls of real-time balances and access checks: a customer's
//! credits and holds per asset, and holds (DESIGN.md §12).

use billing_money::Asset;
use billing_proto::ledger::v1 as ledger;
use billing_server::time::from_proto;
use chrono::{DateTime, Utc};
use tonic::Code;

use super::{LEDGER, Upstream, upstream_error};
use crate::domain::invoice::Line;
use crate::domain::realtime::Credits;
use crate::error::InvoicingError;

/// The ledger's real-time summary, as [`Upstream::credits`] reads it.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Per asset.
    pub credits: Vec<(Asset, Credits)>,
    /// Per unbilled line id: the credits it would take.
    pub lines: Vec<(String, i64)>,
    /// Per pricing unit id of the lines: its rate, if it converts.
    pub rates: Vec<(String, Option<billing_money::Conversion>)>,
}

/// A hold the ledger made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldMade {
    /// `hold_…`
    pub id: String,
    /// When it stops counting.
    pub expires_at: DateTime<Utc>,
    /// The request id had made it before (a retry).
    pub replayed: bool,
}

/// A hold to ask the ledger for.
#[derive(Debug, Clone)]
pub struct HoldRequest<'a> {
    /// The ledger request id (a retry returns the same hold).
    pub request_id: String,
    /// The customer.
    pub customer: &'a str,
    /// The asset and amount.
    pub amount: (&'a Asset, i64),
    /// What the unbilled usage will consume (same asset).
    pub unbilled: i64,
    /// Seconds.
    pub timeout_seconds: u32,
}

fn corrupt(what: &str) -> InvoicingError {
    InvoicingError::Corrupt(format!("ledger {what}"))
}

impl Upstream {
    /// The customer's credits usable now, pending payment, held and
    /// offered by its pool, per asset; those the `unbilled` lines would take
    /// if invoiced now; per line (by id) what it would take; and the rate of
    /// each pricing unit the lines are in.
    pub async fn credits(
        &self,
        account: &str,
        (customer, pool): (&str, &[String]),
        unbilled: &[Line],
    ) -> Result<Summary, InvoicingError> {
        let request = self.request(
            account,
            ledger::GetCreditBalanceSummaryRequest {
                pool: pool.to_vec(),
                customer: customer.to_owned(),
                filter: None,
                unbilled_lines: unbilled
                    .iter()
                    .map(|line| ledger::InvoiceLine {
                        invoice_line_item: line.id.clone(),
                        price: line.price.clone(),
                        amount: Some(billing_server::amount::to_proto(&line.asset, line.amount)),
                    })
                    .collect(),
            },
        )?;
        let summary = self
            .ledger
            .clone()
            .get_credit_balance_summary(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner();
        let mut out = Vec::with_capacity(summary.balances.len());
        for balance in summary.balances {
            let (asset, available) = balance
                .available_balance
                .as_ref()
                .and_then(billing_server::amount::from_peer)
                .ok_or_else(|| corrupt("balance without an amount"))?
                .map_err(|e| corrupt(&format!("balance: {e}")))?;
            let value = |amount: Option<&billing_proto::common::v1::Amount>| {
                amount
                    .and_then(|a| billing_server::amount::value_in(a, &asset))
                    .transpose()
                    .map_err(|e| corrupt(&format!("balance: {e}")))
                    .map(Option::unwrap_or_default)
            };
            let credits = Credits {
                available,
                pending: value(balance.pending_balance.as_ref())?,
                held: value(balance.held_balance.as_ref())?,
                unbilled_credits: value(balance.unbilled_credits.as_ref())?,
                pooled: value(balance.pooled_available.as_ref())?,
            };
            out.push((asset, credits));
        }
        let mut lines = Vec::with_capacity(summary.unbilled_line_credits.len());
        for line in summary.unbilled_line_credits {
            let (_, credits) = line
                .credits
                .as_ref()
                .and_then(billing_server::amount::from_peer)
                .ok_or_else(|| corrupt("line credits without an amount"))?
                .map_err(|e| corrupt(&format!("line credits: {e}")))?;
            lines.push((line.invoice_line_item, credits));
        }
        let mut rates = Vec::with_capacity(summary.unbilled_pricing_units.len());
        for unit in &summary.unbilled_pricing_units {
            rates.push((unit.id.clone(), super::conversion_of(unit)?));
        }
        Ok(Summary {
            credits: out,
            lines,
            rates,
        })
    }

    /// Asks the ledger for a hold; None when the credits cannot cover it.
    pub async fn create_hold(
        &self,
        account: &str,
        hold: HoldRequest<'_>,
    ) -> Result<Option<HoldMade>, InvoicingError> {
        let (asset, amount) = hold.amount;
        let unbilled =
            (hold.unbilled > 0).then(|| billing_server::amount::to_proto(asset, hold.unbilled));
        let request = self.request(
            account,
            ledger::CreateCreditHoldRequest {
                request_id: hold.request_id,
                customer: hold.customer.to_owned(),
                amount: Some(billing_server::amount::to_proto(asset, amount)),
                timeout_seconds: hold.timeout_seconds,
                unbilled,
            },
        )?;
        let (made, replayed) = match self.ledger.clone().create_credit_hold(request).await {
            Ok(response) => {
                let response = response.into_inner();
                (response.credit_hold, response.replayed)
            }
            // The ledger's only precondition on a hold: free credits.
            Err(status) if status.code() == Code::FailedPrecondition => return Ok(None),
            Err(status) => return Err(upstream_error(LEDGER, status)),
        };
        let made = made.ok_or_else(|| corrupt("hold without a hold"))?;
        let expires_at = made
            .expires_at
            .as_ref()
            .and_then(|t| from_proto(t, "expires_at").ok())
            .ok_or_else(|| corrupt("hold without an expiry"))?;
        Ok(Some(HoldMade {
            id: made.id,
            expires_at,
            replayed,
        }))
    }
}
