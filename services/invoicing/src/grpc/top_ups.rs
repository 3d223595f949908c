//! SetAutoTopUp, GetAutoTopUp, DisableAutoTopUp: field checks and
//! conversions.

use billing_money::{Asset, Currency, FieldViolation};
use billing_proto::common::v1 as common;
use billing_proto::invoicing::v1 as pb;
use billing_server::handler::{Call, Reply, invalid};
use billing_server::time::to_proto;
use billing_telemetry::record_ids;

use super::InvoicingGrpc;
use super::allocations::{amount_input, unit_amount_input};
use crate::domain::allocation::EXPIRY_DAYS_MAX;
use crate::domain::top_up::{AutoTopUp, Size, TopUpEvent};
use crate::ops::TopUpInput;

fn top_up_input(request: &pb::SetAutoTopUpRequest) -> Result<TopUpInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    super::convert::required(&request.customer, "customer", &mut out);
    let threshold = amount_input(request.threshold.as_ref(), "threshold", &mut out);
    let size = match (&request.amount, &request.recharge_to) {
        (Some(amount), None) => amount_input(Some(amount), "amount", &mut out).map(|a| (false, a)),
        (None, Some(target)) => {
            amount_input(Some(target), "recharge_to", &mut out).map(|a| (true, a))
        }
        _ => {
            out.push(FieldViolation::new(
                "amount",
                "set exactly one of amount and recharge_to",
            ));
            None
        }
    };
    let currency = Currency::parse(&request.currency)
        .map_err(|_| {
            out.push(FieldViolation::new(
                "currency",
                "is required: a lowercase ISO 4217 code such as \"usd\"",
            ));
        })
        .ok();
    let unit_amount = unit_amount_input(&request.unit_amount_decimal, &mut out);
    if request.expires_after_days > EXPIRY_DAYS_MAX {
        out.push(FieldViolation::new(
            "expires_after_days",
            format!("must be 0 (never) to {EXPIRY_DAYS_MAX}"),
        ));
    }
    let limits = request.limits.clone().unwrap_or_default();
    let max_spend = match limits.max_spend.as_ref().and_then(|a| a.kind.as_ref()) {
        None => None,
        Some(common::amount::Kind::Monetary(money))
            if Some(money.currency.as_str()) == currency.as_ref().map(Currency::code)
                && money.value > 0 =>
        {
            Some(money.value)
        }
        Some(_) => {
            out.push(FieldViolation::new(
                "limits.max_spend",
                "must be a positive amount in the top-up's currency",
            ));
            None
        }
    };
    match (threshold, size, currency, unit_amount) {
        (Some(threshold), Some(size), Some(currency), Some(unit_amount)) if out.is_empty() => {
            Ok(TopUpInput {
                customer: request.customer.clone(),
                threshold,
                size,
                currency,
                unit_amount,
                expires_after_days: request.expires_after_days,
                require_payment: request.require_successful_payment.unwrap_or(true),
                max_purchases: limits.max_purchases,
                max_spend,
            })
        }
        _ => Err(out),
    }
}

/// A top-up for a response.
pub fn top_up(top_up: &AutoTopUp) -> pb::AutoTopUp {
    let amount = |value: i64| Some(billing_server::amount::to_proto(&top_up.asset, value));
    let (size, recharge_to) = match top_up.size {
        Size::Fixed { credits } => (amount(credits), None),
        Size::RechargeTo { balance } => (None, amount(balance)),
    };
    pb::AutoTopUp {
        id: top_up.id.clone(),
        customer: top_up.customer.clone(),
        threshold: amount(top_up.threshold),
        amount: size,
        recharge_to,
        currency: top_up.currency.code().to_owned(),
        unit_amount_decimal: top_up.unit_amount.normalize().to_string(),
        expires_after_days: top_up.expires_after_days,
        require_successful_payment: top_up.require_payment,
        limits: Some(pb::AutoTopUpLimits {
            max_purchases: top_up.max_purchases,
            max_spend: top_up
                .max_spend
                .map(|v| billing_server::amount::to_proto(&Asset::Currency(top_up.currency), v)),
        }),
        enabled: top_up.enabled,
        balance_alert: top_up.balance_alert.clone(),
        created: Some(to_proto(top_up.created)),
    }
}

/// An `auto_top_up.*` event's data.
pub fn top_up_event(event: &TopUpEvent) -> pb::AutoTopUpEvent {
    pb::AutoTopUpEvent {
        auto_top_up: Some(top_up(&event.auto_top_up)),
        credit_purchase: event.credit_purchase.clone().unwrap_or_default(),
        reason: event.reason.clone(),
        cause: event.cause.clone(),
    }
}

/// The customer and asset naming a top-up (GetAutoTopUp, DisableAutoTopUp).
fn customer_asset(customer: &str, asset: &str) -> Reply<()> {
    let mut out = Vec::new();
    super::convert::required(customer, "customer", &mut out);
    if asset.is_empty() || asset.len() > 255 {
        out.push(FieldViolation::new(
            "asset",
            "is required: a currency code or a `pu_…` id",
        ));
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(invalid(out))
    }
}

impl InvoicingGrpc {
    pub(super) async fn set_auto_top_up(
        &self,
        call: Call<pb::SetAutoTopUpRequest>,
    ) -> Reply<pb::SetAutoTopUpResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let input = top_up_input(&call.body).map_err(invalid)?;
        let set = self
            .invoicing
            .set_top_up(call.account(), input, call.key())
            .await?;
        Ok(pb::SetAutoTopUpResponse {
            auto_top_up: Some(top_up(&set)),
        })
    }

    pub(super) async fn get_auto_top_up(
        &self,
        call: Call<pb::GetAutoTopUpRequest>,
    ) -> Reply<pb::GetAutoTopUpResponse> {
        customer_asset(&call.body.customer, &call.body.asset)?;
        let found = self
            .invoicing
            .top_up(call.account(), &call.body.customer, &call.body.asset)
            .await?;
        Ok(pb::GetAutoTopUpResponse {
            auto_top_up: Some(top_up(&found)),
        })
    }

    pub(super) async fn disable_auto_top_up(
        &self,
        call: Call<pb::DisableAutoTopUpRequest>,
    ) -> Reply<pb::DisableAutoTopUpResponse> {
        customer_asset(&call.body.customer, &call.body.asset)?;
        let disabled = self
            .invoicing
            .disable_top_up(
                call.account(),
                &call.body.customer,
                &call.body.asset,
                call.key(),
            )
            .await?;
        Ok(pb::DisableAutoTopUpResponse {
            auto_top_up: Some(top_up(&disabled)),
        })
    }
}
