//! CreateCreditPurchase, GetCreditPurchase, ListCreditPurchases: field
//! checks and conversions.

use billing_money::{Currency, FieldViolation};
use billing_proto::invoicing::v1 as pb;
use billing_server::handler::{Call, Reply, invalid, optional, page};
use billing_server::time::{from_proto, to_proto};
use billing_telemetry::record_ids;

use super::allocations::{PRIORITY_DEFAULT, PRIORITY_MAX, unit_amount_input};
use super::{InvoicingGrpc, id};
use crate::domain::purchase::{CreditPurchase, PRICES_MAX, PurchaseStatus};
use crate::ops::NewPurchase;

fn new_purchase(
    request: &pb::CreateCreditPurchaseRequest,
) -> Result<NewPurchase, Vec<FieldViolation>> {
    let mut out = Vec::new();
    super::convert::required(&request.customer, "customer", &mut out);
    let credits = super::allocations::amount_input(request.credits.as_ref(), "credits", &mut out);
    let currency = Currency::parse(&request.currency)
        .map_err(|_| {
            out.push(FieldViolation::new(
                "currency",
                "is required: a lowercase ISO 4217 code such as \"usd\"",
            ));
        })
        .ok();
    let unit_amount = unit_amount_input(&request.unit_amount_decimal, &mut out);
    let expires_at = request
        .expires_at
        .as_ref()
        .and_then(|t| from_proto(t, "expires_at").map_err(|v| out.push(v)).ok());
    let priority = request.priority.unwrap_or(PRIORITY_DEFAULT);
    if priority > PRIORITY_MAX {
        out.push(FieldViolation::new(
            "priority",
            format!("must be between 0 and {PRIORITY_MAX}"),
        ));
    }
    if request.prices.len() > PRICES_MAX {
        out.push(FieldViolation::new(
            "prices",
            format!("at most {PRICES_MAX} prices"),
        ));
    }
    for (i, price) in request.prices.iter().take(PRICES_MAX).enumerate() {
        super::convert::required(price, &format!("prices[{i}]"), &mut out);
    }
    match (credits, currency, unit_amount) {
        (Some(credits), Some(currency), Some(unit_amount)) if out.is_empty() => Ok(NewPurchase {
            customer: request.customer.clone(),
            credits,
            currency,
            unit_amount,
            expires_at,
            priority,
            prices: request.prices.clone(),
            require_payment: request.require_successful_payment.unwrap_or(true),
        }),
        _ => Err(out),
    }
}

/// A purchase for a response.
pub fn purchase(purchase: &CreditPurchase) -> pb::CreditPurchase {
    pb::CreditPurchase {
        id: purchase.id.clone(),
        customer: purchase.customer.clone(),
        credits: Some(billing_server::amount::to_proto(
            &purchase.credits_asset,
            purchase.credits,
        )),
        currency: purchase.currency.code().to_owned(),
        unit_amount_decimal: purchase.unit_amount.normalize().to_string(),
        amount: Some(billing_server::amount::to_proto(
            &billing_money::Asset::Currency(purchase.currency),
            purchase.amount,
        )),
        invoice: purchase.invoice.clone(),
        credit_grant: purchase.credit_grant.clone().unwrap_or_default(),
        status: match purchase.status {
            PurchaseStatus::Processing => pb::CreditPurchaseStatus::Processing,
            PurchaseStatus::PendingPayment => pb::CreditPurchaseStatus::PendingPayment,
            PurchaseStatus::Active => pb::CreditPurchaseStatus::Active,
            PurchaseStatus::Void => pb::CreditPurchaseStatus::Void,
        }
        .into(),
        require_successful_payment: purchase.require_payment,
        expires_at: purchase.expires_at.map(to_proto),
        priority: purchase.priority,
        prices: purchase.prices.clone(),
        created: Some(to_proto(purchase.created)),
        auto_top_up: purchase.auto_top_up.clone().unwrap_or_default(),
    }
}

impl InvoicingGrpc {
    pub(super) async fn create_credit_purchase(
        &self,
        call: Call<pb::CreateCreditPurchaseRequest>,
    ) -> Reply<pb::CreateCreditPurchaseResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let new = new_purchase(&call.body).map_err(invalid)?;
        let created = self
            .invoicing
            .create_purchase(call.account(), new, call.key())
            .await?;
        Ok(pb::CreateCreditPurchaseResponse {
            credit_purchase: Some(purchase(&created)),
        })
    }

    pub(super) async fn get_credit_purchase(
        &self,
        call: Call<pb::GetCreditPurchaseRequest>,
    ) -> Reply<pb::GetCreditPurchaseResponse> {
        let found = self
            .invoicing
            .purchase(call.account(), id(&call.body.id, "id")?)
            .await?;
        Ok(pb::GetCreditPurchaseResponse {
            credit_purchase: Some(purchase(&found)),
        })
    }

    pub(super) async fn list_credit_purchases(
        &self,
        call: Call<pb::ListCreditPurchasesRequest>,
    ) -> Reply<pb::ListCreditPurchasesResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (found, next_page_token) = self
            .invoicing
            .list_purchases(call.account(), optional(&call.body.customer), &page)
            .await?;
        Ok(pb::ListCreditPurchasesResponse {
            credit_purchases: found.iter().map(purchase).collect(),
            next_page_token,
        })
    }
}
