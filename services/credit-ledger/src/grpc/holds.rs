//! The credit hold RPCs and their conversions.

use billing_money::FieldViolation;
use billing_proto::ledger::v1 as pb;
use billing_server::handler::{Call, Reply, invalid, page};
use billing_server::time::to_proto;
use billing_telemetry::record_ids;
use chrono::{DateTime, Utc};

use super::convert::{amount, amount_input};
use super::{LedgerGrpc, reference};
use crate::domain::hold::{Hold, HoldStatus, TIMEOUT_SECONDS_MAX};
use crate::domain::validate::check_customer_id;
use crate::ops::HoldInput;

/// A hold for a response, with its status at `now`.
pub fn hold(hold: &Hold, now: DateTime<Utc>) -> pb::CreditHold {
    let status = match hold.status_at(now) {
        HoldStatus::Active => pb::CreditHoldStatus::Active,
        HoldStatus::Released => pb::CreditHoldStatus::Released,
        HoldStatus::Expired => pb::CreditHoldStatus::Expired,
    };
    pb::CreditHold {
        id: hold.id.clone(),
        customer: hold.customer.clone(),
        amount: Some(amount(&hold.asset, hold.amount)),
        status: status.into(),
        expires_at: Some(to_proto(hold.expires_at)),
        released_at: hold.released_at.map(to_proto),
        created: Some(to_proto(hold.created)),
        request_id: hold.request_id.clone(),
    }
}

fn hold_input(request: &pb::CreateCreditHoldRequest) -> Result<HoldInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_customer_id(&request.customer, "customer", &mut out);
    if request.timeout_seconds == 0 || request.timeout_seconds > TIMEOUT_SECONDS_MAX {
        out.push(FieldViolation::new(
            "timeout_seconds",
            format!("must be between 1 and {TIMEOUT_SECONDS_MAX} (24 hours)"),
        ));
    }
    let held = amount_input(request.amount.as_ref(), "amount")
        .map_err(|v| out.push(v))
        .ok();
    let unbilled = match request.unbilled.as_ref() {
        None => None,
        Some(unbilled) => amount_input(Some(unbilled), "unbilled")
            .map_err(|v| out.push(v))
            .ok(),
    };
    match held {
        Some(amount) if out.is_empty() => Ok(HoldInput {
            customer: request.customer.clone(),
            amount,
            timeout_seconds: request.timeout_seconds,
            unbilled,
        }),
        _ => Err(out),
    }
}

impl LedgerGrpc {
    pub(super) async fn create_credit_hold(
        &self,
        call: Call<pb::CreateCreditHoldRequest>,
    ) -> Reply<pb::CreateCreditHoldResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let input = hold_input(&call.body).map_err(invalid)?;
        let Some(key) = call.key() else {
            return Err(invalid(vec![FieldViolation::new(
                "request_id",
                "is required: a retried hold must not hold twice",
            )]));
        };
        let (created, replayed) = self.ledger.create_hold(call.account(), input, key).await?;
        Ok(pb::CreateCreditHoldResponse {
            credit_hold: Some(hold(&created, self.ledger.clock().now())),
            replayed,
        })
    }

    pub(super) async fn get_credit_hold(
        &self,
        call: Call<pb::GetCreditHoldRequest>,
    ) -> Reply<pb::GetCreditHoldResponse> {
        let id = reference(&call.body.id, "id")?;
        let found = self.ledger.hold(call.account(), id).await?;
        Ok(pb::GetCreditHoldResponse {
            credit_hold: Some(hold(&found, self.ledger.clock().now())),
        })
    }

    pub(super) async fn release_credit_hold(
        &self,
        call: Call<pb::ReleaseCreditHoldRequest>,
    ) -> Reply<pb::ReleaseCreditHoldResponse> {
        let id = reference(&call.body.id, "id")?;
        let released = self.ledger.release_hold(call.account(), id).await?;
        Ok(pb::ReleaseCreditHoldResponse {
            credit_hold: Some(hold(&released, self.ledger.clock().now())),
        })
    }

    pub(super) async fn list_credit_holds(
        &self,
        call: Call<pb::ListCreditHoldsRequest>,
    ) -> Reply<pb::ListCreditHoldsResponse> {
        let customer = reference(&call.body.customer, "customer")?;
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (holds, next_page_token) = self
            .ledger
            .list_holds(call.account(), customer, call.body.active_only, &page)
            .await?;
        let now = self.ledger.clock().now();
        Ok(pb::ListCreditHoldsResponse {
            credit_holds: holds.iter().map(|h| hold(h, now)).collect(),
            next_page_token,
        })
    }
}
