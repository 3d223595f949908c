//! Proto ⇄ domain conversion and field validation.

use billing_money::FieldViolation;
use billing_money::{Asset, Currency, Decimal, parse_decimal};
use billing_proto::common::v1 as pb_common;
use billing_proto::invoicing::v1 as pb;
use billing_server::time::{from_proto, to_proto};

use crate::domain::customer::{Customer, CustomerChanges, TEXT_MAX, check_text};
use crate::domain::invoice::{BillingReason, Invoice, Line, LineConversion, Status};
use crate::domain::price::{Price, TIERS_MAX};
use crate::domain::pricing::{
    PriceModel, Pricing, PricingError, QuantityRounding, Tier, TiersMode, TransformQuantity,
};
use crate::domain::subscription::{ITEMS_MAX, Interval, Subscription};
use crate::error::InvoicingError;
use crate::ops::{NewCustomer, NewPrice, NewSubscription, PriceAsset};

/// A required id.
pub fn required(value: &str, field: &str, out: &mut Vec<FieldViolation>) {
    if value.is_empty() {
        out.push(FieldViolation::new(field, "is required"));
    } else if value.len() > 255 {
        out.push(FieldViolation::new(field, "is at most 255 characters"));
    }
}

fn check_out<T>(value: T, out: Vec<FieldViolation>) -> Result<T, Vec<FieldViolation>> {
    if out.is_empty() { Ok(value) } else { Err(out) }
}

/// CreateCustomer's fields.
pub fn new_customer(
    request: &pb::CreateCustomerRequest,
) -> Result<NewCustomer, Vec<FieldViolation>> {
    let mut out = check_text(Some(&request.name), Some(&request.email), &request.metadata);
    if request.parent.chars().count() > TEXT_MAX {
        out.push(FieldViolation::new(
            "parent",
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    if request.external_id.chars().count() > TEXT_MAX {
        out.push(FieldViolation::new(
            "external_id",
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    check_out(
        NewCustomer {
            external_id: Some(request.external_id.clone()).filter(|e| !e.is_empty()),
            name: request.name.clone(),
            email: request.email.clone(),
            metadata: request.metadata.clone().into_iter().collect(),
            parent: Some(request.parent.clone()).filter(|p| !p.is_empty()),
        },
        out,
    )
}

/// UpdateCustomer's fields.
pub fn customer_changes(
    request: &pb::UpdateCustomerRequest,
) -> Result<CustomerChanges, Vec<FieldViolation>> {
    let mut out = Vec::new();
    required(&request.id, "id", &mut out);
    if request
        .parent
        .as_ref()
        .is_some_and(|p| p.chars().count() > TEXT_MAX)
    {
        out.push(FieldViolation::new(
            "parent",
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    let metadata = request.metadata.clone().into_iter().collect();
    out.extend(check_text(
        request.name.as_deref(),
        request.email.as_deref(),
        &metadata,
    ));
    check_out(
        CustomerChanges {
            name: request.name.clone(),
            email: request.email.clone(),
            metadata,
            parent: request
                .parent
                .clone()
                .map(|p| Some(p).filter(|p| !p.is_empty())),
        },
        out,
    )
}

fn decimal_field(
    text: &str,
    field: &str,
    default_zero: bool,
    out: &mut Vec<FieldViolation>,
) -> Option<Decimal> {
    if text.is_empty() {
        if default_zero {
            return Some(Decimal::ZERO);
        }
        out.push(FieldViolation::new(field, "is required"));
        return None;
    }
    match parse_decimal(text) {
        Ok(d) if d.is_sign_negative() && !d.is_zero() => {
            out.push(FieldViolation::new(field, "must not be negative"));
            None
        }
        Ok(d) if billing_money::decimal_places(d) > PRICE_DECIMAL_PLACES_MAX => {
            out.push(FieldViolation::new(
                field,
                format!(
                    "has more than {PRICE_DECIMAL_PLACES_MAX} decimal places (it is not rounded)"
                ),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(billing_money::MoneyError::TooManyDigits(_)) => {
            out.push(FieldViolation::new(
                field,
                "has more digits than can be kept exactly (it is not rounded)",
            ));
            None
        }
        Err(_) => {
            out.push(FieldViolation::new(
                field,
                format!(
                    "{:?} is not a decimal number like \"12.5\"",
                    billing_server::status::clip(text, 32)
                ),
            ));
            None
        }
    }
}

/// Most decimal places of a price amount or tier bound (Stripe's limit for
/// `unit_amount_decimal`).
pub const PRICE_DECIMAL_PLACES_MAX: u32 = 12;

fn tiers(request: &pb::CreatePriceRequest, out: &mut Vec<FieldViolation>) -> Vec<Tier> {
    if request.tiers.is_empty() || request.tiers.len() > TIERS_MAX {
        // Counts before items: the tiers are not read one by one.
        out.push(FieldViolation::new(
            "tiers",
            format!("a tiered price has 1 to {TIERS_MAX} tiers"),
        ));
        return Vec::new();
    }
    let last = request.tiers.len().saturating_sub(1);
    let mut tiers = Vec::new();
    for (i, tier) in request.tiers.iter().enumerate() {
        let field = |name: &str| format!("tiers[{i}].{name}");
        let up_to = if tier.up_to.is_empty() {
            if i != last {
                out.push(FieldViolation::new(
                    field("up_to"),
                    "only the last tier may be unbounded",
                ));
            }
            None
        } else {
            if i == last {
                out.push(FieldViolation::new(
                    field("up_to"),
                    "the last tier must be unbounded (empty up_to)",
                ));
            }
            decimal_field(&tier.up_to, &field("up_to"), false, out)
        };
        let unit = decimal_field(
            &tier.unit_amount_decimal,
            &field("unit_amount_decimal"),
            true,
            out,
        );
        let flat = decimal_field(
            &tier.flat_amount_decimal,
            &field("flat_amount_decimal"),
            true,
            out,
        );
        if let (Some(unit_amount), Some(flat_amount)) = (unit, flat) {
            tiers.push(Tier {
                up_to,
                unit_amount,
                flat_amount,
            });
        }
    }
    tiers
}

/// CreatePrice's fields (the meter and pricing unit are checked with their owners).
pub fn new_price(request: &pb::CreatePriceRequest) -> Result<NewPrice, Vec<FieldViolation>> {
    let mut out = Vec::new();
    let asset = match (request.currency.is_empty(), request.pricing_unit.is_empty()) {
        (false, true) => match Currency::parse(&request.currency) {
            Ok(c) => Some(PriceAsset::Currency(c)),
            Err(_) => {
                out.push(FieldViolation::new(
                    "currency",
                    "must be a lowercase ISO 4217 code such as \"usd\"",
                ));
                None
            }
        },
        (true, false) if request.pricing_unit.starts_with("pu_") => {
            Some(PriceAsset::PricingUnit(request.pricing_unit.clone()))
        }
        (true, false) => {
            out.push(FieldViolation::new("pricing_unit", "must be a `pu_…` id"));
            None
        }
        _ => {
            out.push(FieldViolation::new(
                "currency",
                "set exactly one of currency and pricing_unit",
            ));
            None
        }
    };
    required(&request.meter, "meter", &mut out);
    if request.nickname.chars().count() > TEXT_MAX {
        out.push(FieldViolation::new(
            "nickname",
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    // prost's getters read an unknown enum number as the default; a client
    // sending 99 must hear that 99 means nothing.
    known_enum::<pb::BillingScheme>(request.billing_scheme, "billing_scheme", &mut out);
    known_enum::<pb::TiersMode>(request.tiers_mode, "tiers_mode", &mut out);
    let model = match request.billing_scheme() {
        pb::BillingScheme::PerUnit => {
            if !request.tiers.is_empty() {
                out.push(FieldViolation::new(
                    "tiers",
                    "only tiered prices have tiers",
                ));
            }
            if pb::TiersMode::try_from(request.tiers_mode)
                .is_ok_and(|mode| mode != pb::TiersMode::Unspecified)
            {
                out.push(FieldViolation::new(
                    "tiers_mode",
                    "only tiered prices have a tiers_mode",
                ));
            }
            decimal_field(
                &request.unit_amount_decimal,
                "unit_amount_decimal",
                false,
                &mut out,
            )
            .map(|unit_amount| PriceModel::PerUnit { unit_amount })
        }
        pb::BillingScheme::Tiered => {
            if !request.unit_amount_decimal.is_empty() {
                out.push(FieldViolation::new(
                    "unit_amount_decimal",
                    "tiered prices set amounts per tier",
                ));
            }
            let mode = match request.tiers_mode() {
                pb::TiersMode::Graduated => Some(TiersMode::Graduated),
                pb::TiersMode::Volume => Some(TiersMode::Volume),
                pb::TiersMode::Unspecified => {
                    if request.tiers_mode == 0 {
                        out.push(FieldViolation::new(
                            "tiers_mode",
                            "is required for tiered prices: TIERS_MODE_GRADUATED or TIERS_MODE_VOLUME",
                        ));
                    }
                    None
                }
            };
            let tiers = tiers(request, &mut out);
            mode.map(|mode| PriceModel::Tiered { mode, tiers })
        }
        pb::BillingScheme::Unspecified => {
            if request.billing_scheme == 0 {
                out.push(FieldViolation::new(
                    "billing_scheme",
                    "is required: BILLING_SCHEME_PER_UNIT or BILLING_SCHEME_TIERED",
                ));
            }
            None
        }
    };
    let transform = match &request.transform_quantity {
        None => None,
        Some(t) => {
            let divide_by = u64::try_from(t.divide_by).ok().filter(|d| *d >= 1);
            if divide_by.is_none() {
                out.push(FieldViolation::new(
                    "transform_quantity.divide_by",
                    "must be at least 1",
                ));
            }
            known_enum::<pb::TransformRound>(t.round, "transform_quantity.round", &mut out);
            let round = match t.round() {
                pb::TransformRound::Up => Some(QuantityRounding::Up),
                pb::TransformRound::Down => Some(QuantityRounding::Down),
                pb::TransformRound::Unspecified => {
                    if t.round == 0 {
                        out.push(FieldViolation::new(
                            "transform_quantity.round",
                            "is required: TRANSFORM_ROUND_UP or TRANSFORM_ROUND_DOWN",
                        ));
                    }
                    None
                }
            };
            divide_by
                .zip(round)
                .map(|(divide_by, round)| TransformQuantity { divide_by, round })
        }
    };
    if !out.is_empty() {
        return Err(out);
    }
    let (Some(asset), Some(model)) = (asset, model) else {
        return Err(vec![FieldViolation::new("billing_scheme", "is invalid")]);
    };
    let pricing = Pricing { model, transform };
    if let Err(error) = pricing.validate() {
        let field = match error {
            PricingError::BadTiers => "tiers",
            PricingError::ZeroDivisor => "transform_quantity.divide_by",
            PricingError::Negative | PricingError::Overflow => "unit_amount_decimal",
        };
        return Err(vec![FieldViolation::new(field, error.to_string())]);
    }
    Ok(NewPrice {
        asset,
        meter: request.meter.clone(),
        pricing,
        nickname: request.nickname.clone(),
    })
}

/// CreateSubscription's fields.
pub fn new_subscription(
    request: &pb::CreateSubscriptionRequest,
) -> Result<NewSubscription, Vec<FieldViolation>> {
    let mut out = Vec::new();
    required(&request.customer, "customer", &mut out);
    if request.items.is_empty() || request.items.len() > ITEMS_MAX {
        // Counts before items: 100,000 items get one short answer, not a
        // violation each (and no quadratic duplicate check).
        return Err(vec![FieldViolation::new(
            "items",
            format!("a subscription has 1 to {ITEMS_MAX} items"),
        )]);
    }
    let mut prices: Vec<String> = Vec::new();
    for (i, item) in request.items.iter().enumerate() {
        let field = format!("items[{i}].price");
        required(&item.price, &field, &mut out);
        if prices.contains(&item.price) {
            out.push(FieldViolation::new(field, "each price appears once"));
        }
        prices.push(item.price.clone());
    }
    known_enum::<pb::BillingInterval>(request.billing_interval, "billing_interval", &mut out);
    let interval = match request.billing_interval() {
        pb::BillingInterval::Month => Some(Interval::Month),
        pb::BillingInterval::Year => Some(Interval::Year),
        pb::BillingInterval::Unspecified => {
            if request.billing_interval == 0 {
                out.push(FieldViolation::new(
                    "billing_interval",
                    "is required: BILLING_INTERVAL_MONTH or BILLING_INTERVAL_YEAR",
                ));
            }
            None
        }
    };
    let mut time = |value: Option<&prost_types::Timestamp>, field: &str| {
        value.and_then(|t| from_proto(t, field).map_err(|v| out.push(v)).ok())
    };
    let anchor = time(
        request.billing_cycle_anchor.as_ref(),
        "billing_cycle_anchor",
    );
    let start = time(request.start_date.as_ref(), "start_date");
    let credit_allocations =
        super::allocations::allocation_inputs(&request.credit_allocations, &mut out);
    let controls = super::realtime::controls_input(
        request.overage.as_ref(),
        &request.usage_thresholds,
        &mut out,
    );
    match interval {
        Some(interval) if out.is_empty() => Ok(NewSubscription {
            customer: request.customer.clone(),
            prices,
            interval,
            anchor,
            start,
            credit_allocations,
            controls,
        }),
        _ => Err(out),
    }
}

/// A customer for a response.
pub fn customer(customer: &Customer) -> pb::Customer {
    pb::Customer {
        id: customer.id.clone(),
        external_id: customer.external_id.clone().unwrap_or_default(),
        name: customer.name.clone(),
        email: customer.email.clone(),
        metadata: customer.metadata.clone().into_iter().collect(),
        created: Some(to_proto(customer.created)),
        parent: customer.parent.clone().unwrap_or_default(),
    }
}

/// A price for a response.
pub fn price(price: &Price) -> pb::Price {
    let (currency, pricing_unit) = match &price.asset {
        billing_money::Asset::Currency(c) => (c.code().to_owned(), String::new()),
        billing_money::Asset::PricingUnit { id, .. } => (String::new(), id.clone()),
    };
    let mut out = pb::Price {
        id: price.id.clone(),
        currency,
        pricing_unit,
        meter: price.meter.clone(),
        nickname: price.nickname.clone(),
        active: price.active,
        created: Some(to_proto(price.created)),
        transform_quantity: price.pricing.transform.map(|t| pb::TransformQuantity {
            divide_by: i64::try_from(t.divide_by).unwrap_or(i64::MAX),
            round: match t.round {
                QuantityRounding::Up => pb::TransformRound::Up,
                QuantityRounding::Down => pb::TransformRound::Down,
            }
            .into(),
        }),
        ..Default::default()
    };
    match &price.pricing.model {
        PriceModel::PerUnit { unit_amount } => {
            out.set_billing_scheme(pb::BillingScheme::PerUnit);
            out.unit_amount_decimal = unit_amount.to_string();
        }
        PriceModel::Tiered { mode, tiers } => {
            out.set_billing_scheme(pb::BillingScheme::Tiered);
            out.set_tiers_mode(match mode {
                TiersMode::Graduated => pb::TiersMode::Graduated,
                TiersMode::Volume => pb::TiersMode::Volume,
            });
            out.tiers = tiers
                .iter()
                .map(|t| pb::PriceTier {
                    up_to: t.up_to.map(|u| u.to_string()).unwrap_or_default(),
                    unit_amount_decimal: t.unit_amount.to_string(),
                    flat_amount_decimal: t.flat_amount.to_string(),
                })
                .collect();
        }
    }
    out
}

/// A subscription for a response.
pub fn subscription(sub: &Subscription) -> pb::Subscription {
    let mut out = pb::Subscription {
        id: sub.id.clone(),
        customer: sub.customer.clone(),
        currency: sub
            .currency
            .as_ref()
            .map(|c| c.code().to_owned())
            .unwrap_or_default(),
        items: sub
            .items
            .iter()
            .map(|i| pb::SubscriptionItem {
                id: i.id.clone(),
                price: i.price.clone(),
            })
            .collect(),
        billing_cycle_anchor: Some(to_proto(sub.anchor)),
        start_date: Some(to_proto(sub.start)),
        current_period_start: Some(to_proto(sub.period_start)),
        current_period_end: Some(to_proto(sub.period_end)),
        cancel_at_period_end: sub.cancel_at_period_end,
        ended_at: sub.ended_at.map(to_proto),
        latest_invoice: sub.latest_invoice.clone().unwrap_or_default(),
        created: Some(to_proto(sub.created)),
        credit_allocations: sub
            .credit_allocations
            .iter()
            .map(super::allocations::allocation)
            .collect(),
        overage: Some(super::realtime::overage_policy(&sub.controls.overage)),
        usage_thresholds: super::realtime::usage_thresholds(&sub.controls),
        ..Default::default()
    };
    out.set_status(if sub.active {
        pb::SubscriptionStatus::Active
    } else {
        pb::SubscriptionStatus::Canceled
    });
    out.set_billing_interval(match sub.interval {
        Interval::Month => pb::BillingInterval::Month,
        Interval::Year => pb::BillingInterval::Year,
    });
    out
}

/// The proto status of an invoice status.
pub fn invoice_status(status: Status) -> pb::InvoiceStatus {
    match status {
        Status::Draft => pb::InvoiceStatus::Draft,
        Status::Finalizing => pb::InvoiceStatus::Finalizing,
        Status::Open => pb::InvoiceStatus::Open,
        Status::Paid => pb::InvoiceStatus::Paid,
        Status::Voiding => pb::InvoiceStatus::Voiding,
        Status::Void => pb::InvoiceStatus::Void,
    }
}

/// The domain status of a list filter (None: any); an unknown number is
/// INVALID_ARGUMENT naming `status`.
pub fn status_filter(value: i32) -> Result<Option<Status>, Vec<FieldViolation>> {
    let mut out = Vec::new();
    let status = known_enum::<pb::InvoiceStatus>(value, "status", &mut out);
    match status {
        Some(status) => Ok(invoice_status_filter(status)),
        None => Err(out),
    }
}

/// An enum field's value, or a violation naming the field when the number is
/// not one of the enum's (prost keeps unknown numbers as plain integers).
fn known_enum<E: TryFrom<i32>>(
    value: i32,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<E> {
    match E::try_from(value) {
        Ok(known) => Some(known),
        Err(_) => {
            out.push(FieldViolation::new(
                field,
                format!("{value} is not one of the enum's values"),
            ));
            None
        }
    }
}

fn invoice_status_filter(status: pb::InvoiceStatus) -> Option<Status> {
    match status {
        pb::InvoiceStatus::Unspecified => None,
        pb::InvoiceStatus::Draft => Some(Status::Draft),
        pb::InvoiceStatus::Finalizing => Some(Status::Finalizing),
        pb::InvoiceStatus::Open => Some(Status::Open),
        pb::InvoiceStatus::Paid => Some(Status::Paid),
        pb::InvoiceStatus::Voiding => Some(Status::Voiding),
        pb::InvoiceStatus::Void => Some(Status::Void),
    }
}

fn line(line: &Line) -> Result<pb::InvoiceLineItem, InvoicingError> {
    Ok(pb::InvoiceLineItem {
        id: line.id.clone(),
        price: line.price.clone(),
        meter: line.meter.clone(),
        description: line.description.clone(),
        usage: line.usage.to_string(),
        quantity: line.quantity.to_string(),
        unit_amount_decimal: line.unit_amount.map(|u| u.to_string()).unwrap_or_default(),
        amount: Some(amount(&line.asset, line.amount)),
        credits_applied: Some(amount(&line.asset, line.credits_applied)),
        amount_due: Some(amount(&line.asset, line.amount_due()?)),
        credit_applications: line
            .applications
            .iter()
            .map(|a| pb::LineCreditApplication {
                credit_grant: a.credit_grant.clone(),
                amount: Some(amount(&line.asset, a.amount)),
                credit_balance_transaction: a.credit_balance_transaction.clone(),
            })
            .collect(),
        // Shown once converted (a frozen rate waits for the credits).
        conversion: match line.conversion {
            Some(LineConversion {
                rate,
                amount_due: Some(due),
            }) => Some(pb::LineConversion {
                unit_amount_decimal: rate.unit_amount.to_string(),
                converted: Some(amount(&line.asset, line.converted()?)),
                amount_due: Some(amount(&Asset::Currency(rate.currency), due)),
            }),
            _ => None,
        },
    })
}

/// An invoice for a response; an invoice whose totals overflow is an error.
pub fn invoice(invoice: &Invoice) -> Result<pb::Invoice, InvoicingError> {
    let mut out = pb::Invoice {
        id: invoice.id.clone(),
        customer: invoice.customer.clone(),
        subscription: invoice.subscription.clone(),
        period_start: Some(to_proto(invoice.period_start)),
        period_end: Some(to_proto(invoice.period_end)),
        lines: invoice.lines.iter().map(line).collect::<Result<_, _>>()?,
        totals: invoice
            .totals()?
            .iter()
            .map(|t| pb::InvoiceTotal {
                subtotal: Some(amount(&t.asset, t.subtotal)),
                total_credits_applied: Some(amount(&t.asset, t.credits_applied)),
                amount_due: Some(amount(&t.asset, t.amount_due)),
                converted: Some(amount(&t.asset, t.converted)),
                from_conversions: Some(amount(&t.asset, t.from_conversions)),
            })
            .collect(),
        auto_finalize_at: invoice
            .auto_finalize_at
            .filter(|_| invoice.status == Status::Draft)
            .map(to_proto),
        finalized_at: invoice.finalized_at.map(to_proto),
        paid_at: invoice.paid_at.map(to_proto),
        voided_at: invoice.voided_at.map(to_proto),
        created: Some(to_proto(invoice.created)),
        ..Default::default()
    };
    let step_error = invoice.step_error.as_ref().map(|e| pb::InvoiceStepError {
        code: e.code.clone(),
        message: e.message.clone(),
        failed_at: Some(to_proto(e.failed_at)),
        attempts: i32::try_from(e.attempts).unwrap_or(i32::MAX),
        next_attempt_at: e.next_attempt_at.map(to_proto),
    });
    // A draft or open invoice carries an error only after the ledger refused
    // its finalize or void (which sent it back there).
    match invoice.status {
        Status::Finalizing | Status::Draft => out.last_finalization_error = step_error,
        Status::Voiding | Status::Open => out.last_void_error = step_error,
        _ => {}
    }
    out.set_status(invoice_status(invoice.status));
    out.set_billing_reason(match invoice.reason {
        BillingReason::SubscriptionCycle => pb::BillingReason::SubscriptionCycle,
        BillingReason::SubscriptionCancel => pb::BillingReason::SubscriptionCancel,
        BillingReason::CreditPurchase => pb::BillingReason::CreditPurchase,
    });
    Ok(out)
}

/// The proto amount of `value` smallest units of `asset`.
fn amount(asset: &billing_money::Asset, value: i64) -> pb_common::Amount {
    billing_server::amount::to_proto(asset, value)
}

/// An outbox event as `ListInvoiceEvents` shows it.
pub fn invoice_event(event: crate::domain::invoice::InvoiceEvent) -> pb::InvoiceEvent {
    pb::InvoiceEvent {
        id: event.id,
        r#type: event.event_type,
        invoice: event.invoice,
        created: Some(to_proto(event.created)),
    }
}
