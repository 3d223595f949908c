//! GetCustomerBalance, CheckAccess, and a subscription's real-time controls
//! (overage policy, usage thresholds) ⇄ their protos, with field checks.

use billing_money::{FieldViolation, decimal_places, parse_decimal};
use billing_proto::invoicing::v1 as pb;
use billing_server::amount::to_proto as amount;
use billing_server::handler::{Call, Reply, invalid};
use billing_server::status::check_request_id;
use billing_server::time::to_proto;
use billing_telemetry::record_ids;

use super::allocations::amount_input;
use super::convert::required;
use super::{InvoicingGrpc, id};
use crate::domain::realtime::{
    AccessReason, AssetBalance, Controls, HOLD_TIMEOUT_DEFAULT_SECONDS, HOLD_TIMEOUT_MAX_SECONDS,
    Overage, USAGE_THRESHOLDS_MAX, UsageThreshold, UsageThresholdCrossing,
};
use crate::ops::{AccessInput, AccessTarget, ControlsInput, OverageInput};

/// Longest threshold quantity.
const QUANTITY_CHARS_MAX: usize = 40;
/// Most decimal places of a threshold quantity (a meter value's).
const QUANTITY_PLACES_MAX: u32 = 12;

/// CreateSubscription's `overage` and `usage_thresholds`, checked field by
/// field (meters and pricing units are checked against the prices later).
pub fn controls_input(
    overage: Option<&pb::OveragePolicy>,
    thresholds: &[pb::UsageThreshold],
    out: &mut Vec<FieldViolation>,
) -> ControlsInput {
    let policy = match overage {
        None => OverageInput::Allow,
        Some(policy) => match pb::OverageMode::try_from(policy.mode) {
            Ok(pb::OverageMode::Unspecified | pb::OverageMode::Allow) => OverageInput::Allow,
            Ok(pb::OverageMode::Block) => OverageInput::Block,
            Ok(pb::OverageMode::AllowUpTo) => {
                match amount_input(policy.limit.as_ref(), "overage.limit", out) {
                    Some(limit) => OverageInput::AllowUpTo(limit),
                    None => OverageInput::Allow,
                }
            }
            Err(_) => {
                out.push(FieldViolation::new(
                    "overage.mode",
                    "must be ALLOW, BLOCK or ALLOW_UP_TO",
                ));
                OverageInput::Allow
            }
        },
    };
    // A limit with another mode is refused, not ignored.
    if overage.is_some_and(|p| p.limit.is_some() && p.mode() != pb::OverageMode::AllowUpTo) {
        out.push(FieldViolation::new(
            "overage.limit",
            "is only for OVERAGE_MODE_ALLOW_UP_TO",
        ));
    }
    let mut usage_thresholds = Vec::new();
    if thresholds.len() > USAGE_THRESHOLDS_MAX {
        out.push(FieldViolation::new(
            "usage_thresholds",
            format!("at most {USAGE_THRESHOLDS_MAX} thresholds"),
        ));
        return ControlsInput {
            overage: policy,
            usage_thresholds,
        };
    }
    for (i, threshold) in thresholds.iter().enumerate() {
        if !threshold.meter.starts_with("mtr_") || threshold.meter.len() > 255 {
            out.push(FieldViolation::new(
                format!("usage_thresholds[{i}].meter"),
                "must be the `mtr_…` id of one of the subscription's prices",
            ));
        }
        let quantity = (threshold.quantity.len() <= QUANTITY_CHARS_MAX)
            .then(|| parse_decimal(&threshold.quantity).ok())
            .flatten()
            .filter(|q| q.is_sign_positive() && !q.is_zero())
            .filter(|q| decimal_places(*q) <= QUANTITY_PLACES_MAX);
        match quantity {
            Some(quantity) => usage_thresholds.push(UsageThreshold {
                meter: threshold.meter.clone(),
                quantity,
            }),
            None => out.push(FieldViolation::new(
                format!("usage_thresholds[{i}].quantity"),
                format!(
                    "must be a positive decimal string with at most {QUANTITY_PLACES_MAX} decimal places"
                ),
            )),
        }
    }
    ControlsInput {
        overage: policy,
        usage_thresholds,
    }
}

/// A subscription's overage policy for a response.
pub fn overage_policy(overage: &Overage) -> pb::OveragePolicy {
    match overage {
        Overage::Allow => pb::OveragePolicy {
            mode: pb::OverageMode::Allow.into(),
            limit: None,
        },
        Overage::Block => pb::OveragePolicy {
            mode: pb::OverageMode::Block.into(),
            limit: None,
        },
        Overage::AllowUpTo { asset, limit } => pb::OveragePolicy {
            mode: pb::OverageMode::AllowUpTo.into(),
            limit: Some(amount(asset, *limit)),
        },
    }
}

/// A subscription's usage thresholds for a response.
pub fn usage_thresholds(controls: &Controls) -> Vec<pb::UsageThreshold> {
    controls.usage_thresholds.iter().map(threshold).collect()
}

fn threshold(threshold: &UsageThreshold) -> pb::UsageThreshold {
    pb::UsageThreshold {
        meter: threshold.meter.clone(),
        quantity: threshold.quantity.to_string(),
    }
}

/// The data of a `subscription.usage_exceeded_threshold` event.
pub fn crossing(crossing: &UsageThresholdCrossing) -> pb::UsageThresholdCrossing {
    pb::UsageThresholdCrossing {
        subscription: crossing.subscription.clone(),
        customer: crossing.customer.clone(),
        threshold: Some(threshold(&crossing.threshold)),
        threshold_index: u32::try_from(crossing.threshold_index).unwrap_or(u32::MAX),
        usage: crossing.usage.to_string(),
        period_start: Some(to_proto(crossing.period_start)),
        period_end: Some(to_proto(crossing.period_end)),
    }
}

/// One asset's balance for a response; a derived figure past 64 bits is
/// an error (INVOICE_TOTAL_OVERFLOW's kind), never a saturated number.
fn asset_balance(balance: &AssetBalance) -> Result<pb::AssetBalance, tonic::Status> {
    let asset = &balance.asset;
    let derived = balance.ongoing().and_then(|o| Ok((o, balance.overage()?)));
    let (ongoing, overage) = derived.map_err(crate::error::InvoicingError::from)?;
    Ok(pb::AssetBalance {
        available: Some(amount(asset, balance.available)),
        pending: Some(amount(asset, balance.pending)),
        unbilled_usage: Some(amount(asset, balance.unbilled_usage)),
        unbilled_credits: Some(amount(asset, balance.unbilled_credits)),
        credits_reserved: Some(amount(asset, balance.credits_reserved)),
        ongoing_balance: Some(amount(asset, ongoing)),
        overage: Some(amount(asset, overage)),
        pooled_available: Some(amount(asset, balance.pooled_available)),
        overage_converted: balance
            .overage_converted
            .map(|(currency, due)| amount(&billing_money::Asset::Currency(currency), due)),
    })
}

fn reason(reason: AccessReason) -> pb::AccessReason {
    match reason {
        AccessReason::Ok => pb::AccessReason::Ok,
        AccessReason::Depleted => pb::AccessReason::Depleted,
        AccessReason::OverageLimitReached => pb::AccessReason::OverageLimitReached,
        AccessReason::NotSubscribed => pb::AccessReason::NotSubscribed,
    }
}

fn access_input(request: &pb::CheckAccessRequest) -> Result<AccessInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    required(&request.customer, "customer", &mut out);
    let target = match (request.meter.is_empty(), request.price.is_empty()) {
        (false, true) if request.meter.len() <= 255 => {
            Some(AccessTarget::Meter(request.meter.clone()))
        }
        (true, false) if request.price.len() <= 255 => {
            Some(AccessTarget::Price(request.price.clone()))
        }
        _ => {
            out.push(FieldViolation::new(
                "meter",
                "set exactly one of meter and price (each at most 255 characters)",
            ));
            None
        }
    };
    let reserve = request
        .reserve
        .as_ref()
        .and_then(|r| amount_input(Some(r), "reserve", &mut out));
    let timeout = match request.hold_timeout_seconds {
        0 => HOLD_TIMEOUT_DEFAULT_SECONDS,
        t if t > HOLD_TIMEOUT_MAX_SECONDS => {
            out.push(FieldViolation::new(
                "hold_timeout_seconds",
                format!("must be between 1 and {HOLD_TIMEOUT_MAX_SECONDS} (24 hours)"),
            ));
            0
        }
        t => t,
    };
    let request_id = if request.request_id.is_empty() {
        if reserve.is_some() {
            out.push(FieldViolation::new(
                "request_id",
                "is required with reserve: a retried check must not hold twice",
            ));
        }
        None
    } else {
        if let Err(violation) = check_request_id(&request.request_id) {
            out.push(violation);
        }
        Some(request.request_id.clone())
    };
    match target {
        Some(target) if out.is_empty() => Ok(AccessInput {
            customer: request.customer.clone(),
            target,
            reserve,
            hold_timeout_seconds: timeout,
            request_id,
        }),
        _ => Err(out),
    }
}

impl InvoicingGrpc {
    pub(super) async fn get_customer_balance(
        &self,
        call: Call<pb::GetCustomerBalanceRequest>,
    ) -> Reply<pb::GetCustomerBalanceResponse> {
        let customer = id(&call.body.customer, "customer")?;
        let found = self
            .invoicing
            .customer_balance(call.account(), customer)
            .await?;
        Ok(pb::GetCustomerBalanceResponse {
            customer: found.customer,
            balances: found
                .balances
                .iter()
                .map(asset_balance)
                .collect::<Result<_, _>>()?,
            as_of: Some(to_proto(found.as_of)),
        })
    }

    pub(super) async fn check_access(
        &self,
        call: Call<pb::CheckAccessRequest>,
    ) -> Reply<pb::CheckAccessResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let input = access_input(&call.body).map_err(invalid)?;
        let outcome = self.invoicing.check_access(call.account(), input).await?;
        Ok(pb::CheckAccessResponse {
            allowed: outcome.reason == AccessReason::Ok,
            reason: reason(outcome.reason).into(),
            balance: outcome.balance.as_ref().map(asset_balance).transpose()?,
            hold: outcome
                .hold
                .as_ref()
                .map(|h| h.id.clone())
                .unwrap_or_default(),
            hold_expires_at: outcome.hold.as_ref().map(|h| to_proto(h.expires_at)),
            subscription: outcome.subscription.unwrap_or_default(),
        })
    }
}
