//! Proto ⇄ domain conversions. Requests are checked field by field and every
//! violation is reported with its dotted path.

use std::collections::BTreeMap;

use billing_money::FieldViolation;
use billing_money::{Asset, Currency};
use billing_proto::common::v1 as common;
use billing_proto::ledger::v1 as pb;
use billing_server::time::{from_proto, to_proto};
use chrono::{DateTime, Utc};

use crate::domain::apply::{ApplyOutcome, LINES_MAX, Reversal};
use crate::domain::balance::{Balance, BalanceFilter};
use crate::domain::grant::{
    Category, DEFAULT_PRIORITY, Grant, GrantChanges, GrantState, MAX_PRIORITY, Scope,
};
use crate::domain::transaction::{BalanceTransaction, TransactionKind};
use crate::domain::validate::{
    AmountInput, check_customer_id, check_metadata, check_name, check_reference,
};
use crate::ops::{ApplyInput, GrantInput, LineInput};
use crate::store::{AuditReport, PricingUnit};

use super::provenance;

/// Most prices a grant's scope may list.
const SCOPE_PRICES_MAX: usize = 100;

/// An amount from a request; positivity and precision are checked on resolve.
pub fn amount_input(
    amount: Option<&common::Amount>,
    field: &str,
) -> Result<AmountInput, FieldViolation> {
    match amount.and_then(|a| a.kind.as_ref()) {
        None => Err(FieldViolation::new(
            field,
            "is required: set monetary or custom_pricing_unit",
        )),
        Some(common::amount::Kind::Monetary(money)) => {
            let currency = Currency::parse(&money.currency).map_err(|_| {
                FieldViolation::new(
                    format!("{field}.monetary.currency"),
                    "must be a lowercase ISO 4217 code such as \"usd\"",
                )
            })?;
            Ok(AmountInput::Monetary {
                currency,
                value: money.value,
            })
        }
        Some(common::amount::Kind::CustomPricingUnit(unit)) => {
            if unit.id.is_empty() {
                return Err(FieldViolation::new(
                    format!("{field}.custom_pricing_unit.id"),
                    "is required",
                ));
            }
            Ok(AmountInput::PricingUnit {
                id: unit.id.clone(),
                value: unit.value.clone(),
            })
        }
    }
}

/// An amount for a response.
pub fn amount(asset: &Asset, value: i64) -> common::Amount {
    billing_server::amount::to_proto(asset, value)
}

fn optional_time(
    time: Option<&prost_types::Timestamp>,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<DateTime<Utc>> {
    time.and_then(|t| from_proto(t, field).map_err(|v| out.push(v)).ok())
}

fn scope(
    config: Option<&pb::ApplicabilityConfig>,
    field: &str,
    out: &mut Vec<FieldViolation>,
) -> Option<Scope> {
    let Some(scope) = config.and_then(|c| c.scope.as_ref()) else {
        out.push(FieldViolation::new(
            field,
            "is required: set price_type METERED or a list of prices",
        ));
        return None;
    };
    let metered = match pb::PriceType::try_from(scope.price_type) {
        Ok(pb::PriceType::Metered) => true,
        Ok(pb::PriceType::Unspecified) => false,
        Err(_) => {
            out.push(FieldViolation::new(
                format!("{field}.price_type"),
                "unknown price type",
            ));
            return None;
        }
    };
    match (metered, scope.prices.is_empty()) {
        (true, false) => {
            out.push(FieldViolation::new(
                field,
                "set price_type or prices, not both",
            ));
            None
        }
        (false, true) => {
            out.push(FieldViolation::new(
                field,
                "set price_type METERED or a list of prices",
            ));
            None
        }
        (true, true) => Some(Scope::Metered),
        (false, false) => {
            if scope.prices.len() > SCOPE_PRICES_MAX {
                out.push(FieldViolation::new(
                    format!("{field}.prices"),
                    format!("at most {SCOPE_PRICES_MAX} prices"),
                ));
            }
            for (index, price) in scope.prices.iter().enumerate() {
                check_reference(price, &format!("{field}.prices[{index}]"), out);
            }
            Some(Scope::Prices(scope.prices.clone()))
        }
    }
}

/// CreateCreditGrant's fields.
pub fn grant_input(
    request: &pb::CreateCreditGrantRequest,
) -> Result<GrantInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_customer_id(&request.customer, "customer", &mut out);
    check_name(&request.name, "name", false, &mut out);
    let amount = amount_input(request.amount.as_ref(), "amount")
        .map_err(|v| out.push(v))
        .ok();
    let scope = scope(
        request.applicability_config.as_ref(),
        "applicability_config.scope",
        &mut out,
    );
    let category = match pb::CreditGrantCategory::try_from(request.category) {
        Ok(pb::CreditGrantCategory::Unspecified | pb::CreditGrantCategory::Paid) => Category::Paid,
        Ok(pb::CreditGrantCategory::Promotional) => Category::Promotional,
        Err(_) => {
            out.push(FieldViolation::new(
                "category",
                "must be PAID or PROMOTIONAL",
            ));
            Category::Paid
        }
    };
    let priority = request.priority.unwrap_or(DEFAULT_PRIORITY);
    if priority > MAX_PRIORITY {
        out.push(FieldViolation::new(
            "priority",
            format!("must be between 0 and {MAX_PRIORITY}"),
        ));
    }
    let effective_at = optional_time(request.effective_at.as_ref(), "effective_at", &mut out);
    let expires_at = optional_time(request.expires_at.as_ref(), "expires_at", &mut out);
    if let (Some(effective), Some(expires)) = (effective_at, expires_at)
        && expires <= effective
    {
        out.push(FieldViolation::new(
            "expires_at",
            "must be after effective_at",
        ));
    }
    check_metadata(&request.metadata, "metadata", &mut out);
    let source = request
        .source
        .as_ref()
        .and_then(|s| provenance::source_input(s, "source", &mut out));
    let cost_basis = request
        .cost_basis
        .as_ref()
        .and_then(|c| provenance::cost_basis_input(c, "cost_basis", &mut out));
    match (amount, scope) {
        (Some(amount), Some(scope)) if out.is_empty() => Ok(GrantInput {
            customer: request.customer.clone(),
            name: request.name.clone(),
            amount,
            scope,
            category,
            priority,
            effective_at,
            expires_at,
            metadata: request.metadata.clone(),
            source,
            cost_basis,
            pending_payment: request.pending_payment,
            shared: request.shared_with_descendants,
        }),
        _ => Err(out),
    }
}

/// UpdateCreditGrant's fields.
pub fn grant_changes(
    request: &pb::UpdateCreditGrantRequest,
) -> Result<GrantChanges, Vec<FieldViolation>> {
    let mut out = Vec::new();
    if let Some(name) = &request.name {
        check_name(name, "name", false, &mut out);
    }
    let expires_at = optional_time(request.expires_at.as_ref(), "expires_at", &mut out);
    let expiry = match (expires_at, request.clear_expires_at) {
        (Some(_), true) => {
            out.push(FieldViolation::new(
                "clear_expires_at",
                "cannot be set together with expires_at",
            ));
            None
        }
        (Some(at), false) => Some(Some(at)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    for (key, value) in &request.metadata {
        let mut single = BTreeMap::new();
        single.insert(key.clone(), value.clone());
        check_metadata(&single, "metadata", &mut out);
    }
    if out.is_empty() {
        Ok(GrantChanges {
            name: request.name.clone(),
            expires_at: expiry,
            metadata: request.metadata.clone(),
        })
    } else {
        Err(out)
    }
}

/// ApplyCredits' fields.
pub fn apply_input(request: &pb::ApplyCreditsRequest) -> Result<ApplyInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_reference(&request.customer, "customer", &mut out);
    check_reference(&request.invoice, "invoice", &mut out);
    let period_end = match request.period_end.as_ref() {
        None => {
            out.push(FieldViolation::new("period_end", "is required"));
            None
        }
        Some(t) => from_proto(t, "period_end").map_err(|v| out.push(v)).ok(),
    };
    if request.lines.is_empty() || request.lines.len() > LINES_MAX {
        // Counts before items: the lines are not read one by one.
        out.push(FieldViolation::new(
            "lines",
            format!("must have 1 to {LINES_MAX} lines"),
        ));
        return Err(out);
    }
    let lines = line_inputs(&request.lines, "lines", &mut out);
    pool_input(&request.pool, &request.customer, &mut out);
    match period_end {
        Some(period_end) if out.is_empty() => Ok(ApplyInput {
            customer: request.customer.clone(),
            invoice: request.invoice.clone(),
            period_end,
            lines,
            preview: request.preview,
            pool: request.pool.clone(),
        }),
        _ => Err(out),
    }
}

/// Most ancestors of a pool (a hierarchy is at most 5 deep).
pub const POOL_MAX: usize = 4;

/// A credit pool's ancestors: at most [`POOL_MAX`], each a reference, none
/// repeated, none the customer itself.
pub fn pool_input(pool: &[String], customer: &str, out: &mut Vec<FieldViolation>) {
    if pool.len() > POOL_MAX {
        out.push(FieldViolation::new(
            "pool",
            format!("at most {POOL_MAX} ancestors (a hierarchy is at most 5 deep)"),
        ));
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (index, ancestor) in pool.iter().enumerate() {
        let field = format!("pool[{index}]");
        check_reference(ancestor, &field, out);
        if ancestor == customer {
            out.push(FieldViolation::new(field, "is the customer itself"));
        } else if !seen.insert(ancestor.as_str()) {
            out.push(FieldViolation::new(field, "is repeated"));
        }
    }
}

/// Invoice lines, each checked (ids present, bounded, not repeated).
pub fn line_inputs(
    lines: &[pb::InvoiceLine],
    name: &str,
    out: &mut Vec<FieldViolation>,
) -> Vec<LineInput> {
    let mut seen = std::collections::HashSet::new();
    let mut inputs = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let field = format!("{name}[{index}]");
        check_reference(
            &line.invoice_line_item,
            &format!("{field}.invoice_line_item"),
            out,
        );
        if !seen.insert(line.invoice_line_item.as_str()) {
            out.push(FieldViolation::new(
                format!("{field}.invoice_line_item"),
                "is repeated",
            ));
        }
        check_reference(&line.price, &format!("{field}.price"), out);
        match amount_input(line.amount.as_ref(), &format!("{field}.amount")) {
            Ok(amount) => inputs.push(LineInput {
                invoice_line_item: line.invoice_line_item.clone(),
                price: line.price.clone(),
                amount,
            }),
            Err(violation) => out.push(violation),
        }
    }
    inputs
}

/// GetCreditBalanceSummary's unbilled lines: at most [`LINES_MAX`], only
/// without a filter.
pub fn unbilled_inputs(
    request: &pb::GetCreditBalanceSummaryRequest,
) -> Result<Vec<LineInput>, Vec<FieldViolation>> {
    if request.unbilled_lines.is_empty() {
        return Ok(Vec::new());
    }
    if request.unbilled_lines.len() > LINES_MAX {
        return Err(vec![FieldViolation::new(
            "unbilled_lines",
            format!("at most {LINES_MAX} lines"),
        )]);
    }
    if request.filter.is_some() {
        return Err(vec![FieldViolation::new(
            "unbilled_lines",
            "only in a summary without a filter",
        )]);
    }
    let mut out = Vec::new();
    let lines = line_inputs(&request.unbilled_lines, "unbilled_lines", &mut out);
    if out.is_empty() { Ok(lines) } else { Err(out) }
}

/// GetCreditBalanceSummary's filter.
pub fn balance_filter(
    filter: Option<&pb::CreditBalanceFilter>,
) -> Result<BalanceFilter, Vec<FieldViolation>> {
    let mut out = Vec::new();
    let filter = match filter.and_then(|f| f.kind.as_ref()) {
        None => BalanceFilter::All,
        Some(pb::credit_balance_filter::Kind::CreditGrant(id)) => {
            check_reference(id, "filter.credit_grant", &mut out);
            BalanceFilter::CreditGrant(id.clone())
        }
        Some(pb::credit_balance_filter::Kind::ApplicabilityScope(scope_filter)) => {
            let config = pb::ApplicabilityConfig {
                scope: Some(scope_filter.clone()),
            };
            match scope(Some(&config), "filter.applicability_scope", &mut out) {
                Some(Scope::Metered) | None => BalanceFilter::MeteredScope,
                Some(Scope::Prices(prices)) => BalanceFilter::Prices(prices),
            }
        }
    };
    if out.is_empty() { Ok(filter) } else { Err(out) }
}

/// A pricing unit for a response.
pub fn pricing_unit(unit: &PricingUnit) -> pb::PricingUnit {
    pb::PricingUnit {
        id: unit.id.clone(),
        display_name: unit.display_name.clone(),
        scale: unit.scale,
        created: Some(to_proto(unit.created)),
        conversion: unit.conversion.map(|c| pb::Conversion {
            currency: c.currency.code().to_owned(),
            unit_amount_decimal: c.unit_amount.to_string(),
        }),
    }
}

/// A pricing unit's rate, when given.
pub fn conversion(
    given: Option<&pb::Conversion>,
    out: &mut Vec<FieldViolation>,
) -> Option<billing_money::Conversion> {
    let given = given?;
    billing_money::Conversion::parse(
        "conversion",
        &given.currency,
        &given.unit_amount_decimal,
        out,
    )
}

/// UpdatePricingUnit's fields.
pub fn unit_changes(
    request: &pb::UpdatePricingUnitRequest,
) -> Result<crate::store::UnitChanges, Vec<FieldViolation>> {
    let mut out = Vec::new();
    if let Some(name) = &request.display_name {
        check_name(name, "display_name", true, &mut out);
    }
    let rate = conversion(request.conversion.as_ref(), &mut out);
    let conversion = match (request.conversion.is_some(), request.remove_conversion) {
        (true, true) => {
            out.push(FieldViolation::new(
                "remove_conversion",
                "cannot be set together with conversion",
            ));
            None
        }
        (true, false) => Some(rate),
        (false, true) => Some(None),
        (false, false) => None,
    };
    if out.is_empty() {
        Ok(crate::store::UnitChanges {
            display_name: request.display_name.clone(),
            conversion,
        })
    } else {
        Err(out)
    }
}

/// A grant's category for a response.
pub fn category(category: Category) -> pb::CreditGrantCategory {
    match category {
        Category::Paid => pb::CreditGrantCategory::Paid,
        Category::Promotional => pb::CreditGrantCategory::Promotional,
    }
}

/// A grant for a response, with its state at `now`.
pub fn grant(grant: &Grant, now: DateTime<Utc>) -> pb::CreditGrant {
    let scope = match &grant.scope {
        Scope::Metered => pb::ApplicabilityScope {
            price_type: pb::PriceType::Metered.into(),
            prices: Vec::new(),
        },
        Scope::Prices(prices) => pb::ApplicabilityScope {
            price_type: pb::PriceType::Unspecified.into(),
            prices: prices.clone(),
        },
    };
    let state = match grant.state(now) {
        GrantState::Pending => pb::CreditGrantState::Pending,
        GrantState::Granted => pb::CreditGrantState::Granted,
        GrantState::Depleted => pb::CreditGrantState::Depleted,
        GrantState::Expired => pb::CreditGrantState::Expired,
        GrantState::Voided => pb::CreditGrantState::Voided,
        GrantState::PendingPayment => pb::CreditGrantState::PendingPayment,
    };
    pb::CreditGrant {
        id: grant.id.clone(),
        customer: grant.customer.clone(),
        name: grant.name.clone(),
        amount: Some(amount(&grant.asset, grant.amount)),
        applicability_config: Some(pb::ApplicabilityConfig { scope: Some(scope) }),
        category: category(grant.category).into(),
        effective_at: Some(to_proto(grant.effective_at)),
        expires_at: grant.expires_at.map(to_proto),
        priority: grant.priority,
        metadata: grant.metadata.clone(),
        voided_at: grant.voided_at.map(to_proto),
        created: Some(to_proto(grant.created)),
        updated: Some(to_proto(grant.updated)),
        state: state.into(),
        available: Some(amount(&grant.asset, grant.available)),
        source: grant.source.as_ref().map(provenance::source_output),
        cost_basis: grant.cost_basis.as_ref().map(provenance::cost_basis_output),
        pending_payment: grant.pending_payment,
        shared_with_descendants: grant.shared,
    }
}

/// Balances for a response.
pub fn balances(balances: &[Balance]) -> Vec<pb::CreditBalance> {
    balances
        .iter()
        .map(|b| pb::CreditBalance {
            available_balance: Some(amount(&b.asset, b.available)),
            ledger_balance: Some(amount(&b.asset, b.ledger)),
            alerts: None,
            pending_balance: Some(amount(&b.asset, b.pending)),
            held_balance: None,
            unbilled_credits: None,
            pooled_available: None,
        })
        .collect()
}

/// Adds what a customer can draw from its pool to its balances (`shown`,
/// converted from `balances`); an asset only the pool holds gets a
/// balance of its own.
pub fn add_pooled(
    balances: &[Balance],
    shown: &mut Vec<pb::CreditBalance>,
    pooled: &[(Asset, i64)],
) {
    for (balance, out) in balances.iter().zip(shown.iter_mut()) {
        let value = pooled
            .iter()
            .find(|(asset, _)| *asset == balance.asset)
            .map_or(0, |(_, value)| *value);
        out.pooled_available = Some(amount(&balance.asset, value));
    }
    for (asset, value) in pooled {
        if !balances.iter().any(|b| b.asset == *asset) {
            shown.push(pb::CreditBalance {
                available_balance: Some(amount(asset, 0)),
                ledger_balance: Some(amount(asset, 0)),
                pending_balance: Some(amount(asset, 0)),
                pooled_available: Some(amount(asset, *value)),
                ..Default::default()
            });
        }
    }
}

/// A transaction for a response.
pub fn transaction(item: &BalanceTransaction) -> pb::CreditBalanceTransaction {
    let value = Some(amount(&item.asset, item.amount));
    let invoice = item.invoice.clone().unwrap_or_default();
    let invoice_line_item = item.invoice_line_item.clone().unwrap_or_default();
    let (direction, credit, debit) = match item.kind {
        TransactionKind::CreditsGranted | TransactionKind::CreditsApplicationInvoiceVoided => {
            let kind = if item.kind == TransactionKind::CreditsGranted {
                pb::CreditType::CreditsGranted
            } else {
                pb::CreditType::CreditsApplicationInvoiceVoided
            };
            let credit = pb::Credit {
                amount: value,
                r#type: kind.into(),
                invoice,
                invoice_line_item,
            };
            (pb::TransactionType::Credit, Some(credit), None)
        }
        TransactionKind::CreditsApplied
        | TransactionKind::CreditsExpired
        | TransactionKind::CreditsVoided => {
            let kind = match item.kind {
                TransactionKind::CreditsApplied => pb::DebitType::CreditsApplied,
                TransactionKind::CreditsExpired => pb::DebitType::CreditsExpired,
                _ => pb::DebitType::CreditsVoided,
            };
            let debit = pb::Debit {
                amount: value,
                r#type: kind.into(),
                invoice,
                invoice_line_item,
            };
            (pb::TransactionType::Debit, None, Some(debit))
        }
    };
    pb::CreditBalanceTransaction {
        id: item.id.clone(),
        credit_grant: item.credit_grant.clone(),
        customer: item.customer.clone(),
        r#type: direction.into(),
        effective_at: Some(to_proto(item.effective_at)),
        created: Some(to_proto(item.created)),
        credit,
        debit,
        cost_basis: item.cost_basis.as_ref().map(provenance::cost_basis_output),
    }
}

/// ApplyCredits' response.
pub fn apply_response(outcome: &ApplyOutcome) -> pb::ApplyCreditsResponse {
    pb::ApplyCreditsResponse {
        invoice: outcome.invoice.clone(),
        applications: outcome
            .applications
            .iter()
            .map(|a| pb::CreditApplication {
                invoice_line_item: a.invoice_line_item.clone(),
                credit_grant: a.credit_grant.clone(),
                amount: Some(amount(&a.asset, a.amount)),
                credit_balance_transaction: a.credit_balance_transaction.clone(),
            })
            .collect(),
        lines: outcome
            .lines
            .iter()
            .map(|l| pb::LineCredits {
                invoice_line_item: l.invoice_line_item.clone(),
                amount: Some(amount(&l.asset, l.amount)),
                credits_applied: Some(amount(&l.asset, l.applied)),
                amount_remaining: Some(amount(&l.asset, l.amount - l.applied)),
            })
            .collect(),
        totals: outcome
            .totals
            .iter()
            .map(|t| pb::AssetCredits {
                amount: Some(amount(&t.asset, t.amount)),
                credits_applied: Some(amount(&t.asset, t.applied)),
                amount_remaining: Some(amount(&t.asset, t.amount - t.applied)),
            })
            .collect(),
        preview: outcome.preview,
    }
}

/// ReverseCredits' response.
pub fn reverse_response(reversal: &Reversal) -> pb::ReverseCreditsResponse {
    pb::ReverseCreditsResponse {
        invoice: reversal.invoice.clone(),
        reversals: reversal
            .reversals
            .iter()
            .map(|r| pb::CreditReversal {
                invoice_line_item: r.invoice_line_item.clone(),
                credit_grant: r.credit_grant.clone(),
                amount: Some(amount(&r.asset, r.amount)),
                credit_balance_transaction: r.credit_balance_transaction.clone(),
                expired_balance_transaction: r
                    .expired_balance_transaction
                    .clone()
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// AuditLedger's response.
pub fn audit_response(report: &AuditReport) -> pb::AuditLedgerResponse {
    pb::AuditLedgerResponse {
        grants_checked: report.grants,
        invoices_checked: report.invoices,
        violations: report
            .violations
            .iter()
            .map(|v| pb::InvariantViolation {
                subject: v.subject.clone(),
                invariant: v.invariant.to_owned(),
                detail: v.detail.clone(),
            })
            .collect(),
    }
}
