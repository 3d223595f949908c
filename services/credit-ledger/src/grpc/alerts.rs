//! The balance alert RPCs and their conversions.

use billing_money::FieldViolation;
use billing_proto::ledger::v1 as pb;
use billing_server::handler::{Call, Reply, invalid, optional, page};
use billing_server::time::to_proto;
use billing_telemetry::record_ids;

use super::convert::{amount, amount_input};
use super::{LedgerGrpc, reference};
use crate::domain::alert::{AlertEvent, BalanceAlert, TITLE_MAX};
use crate::domain::validate::check_customer_id;
use crate::ops::AlertInput;
use crate::store::AlertStatus;

/// An alert for a response.
pub fn alert(alert: &BalanceAlert) -> pb::BalanceAlert {
    pb::BalanceAlert {
        id: alert.id.clone(),
        customer: alert.customer.clone().unwrap_or_default(),
        threshold: Some(amount(&alert.asset, alert.threshold)),
        title: alert.title.clone(),
        created: Some(to_proto(alert.created)),
    }
}

/// The data of a `customer.credit_balance_*` event.
pub fn alert_event(event: &AlertEvent) -> pb::CreditBalanceAlertEvent {
    pb::CreditBalanceAlertEvent {
        customer: event.customer.clone(),
        available_balance: Some(amount(&event.asset, event.available)),
        balance_alert: event.alert.as_ref().map(alert),
    }
}

/// The alert state of one asset's balance.
pub fn status(status: &AlertStatus) -> pb::BalanceAlertStatus {
    let evaluated = status.evaluated;
    pb::BalanceAlertStatus {
        evaluated_balance: evaluated.map(|(available, _)| amount(&status.asset, available)),
        evaluated: evaluated.map(|(_, at)| to_proto(at)),
        depleted: evaluated.is_some_and(|(available, _)| available <= 0),
        balance_alerts: status
            .alerts
            .iter()
            .map(|a| pb::BalanceAlertState {
                balance_alert: Some(alert(a)),
                triggered: evaluated.is_some_and(|(available, _)| a.triggered_at(available)),
            })
            .collect(),
    }
}

fn alert_input(request: &pb::CreateBalanceAlertRequest) -> Result<AlertInput, Vec<FieldViolation>> {
    let mut out = Vec::new();
    let customer = optional(&request.customer).map(str::to_owned);
    if let Some(customer) = &customer {
        check_customer_id(customer, "customer", &mut out);
    }
    if request.title.chars().count() > TITLE_MAX {
        out.push(FieldViolation::new(
            "title",
            format!("at most {TITLE_MAX} characters"),
        ));
    }
    let threshold = amount_input(request.threshold.as_ref(), "threshold")
        .map_err(|v| out.push(v))
        .ok();
    match threshold {
        Some(threshold) if out.is_empty() => Ok(AlertInput {
            customer,
            threshold,
            title: request.title.clone(),
        }),
        _ => Err(out),
    }
}

impl LedgerGrpc {
    pub(super) async fn create_balance_alert(
        &self,
        call: Call<pb::CreateBalanceAlertRequest>,
    ) -> Reply<pb::CreateBalanceAlertResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let input = alert_input(&call.body).map_err(invalid)?;
        let created = self.ledger.create_alert(call.account(), input, call.key());
        Ok(pb::CreateBalanceAlertResponse {
            balance_alert: Some(alert(&created.await?)),
        })
    }

    pub(super) async fn get_balance_alert(
        &self,
        call: Call<pb::GetBalanceAlertRequest>,
    ) -> Reply<pb::GetBalanceAlertResponse> {
        let id = reference(&call.body.id, "id")?;
        let found = self.ledger.alert(call.account(), id).await?;
        Ok(pb::GetBalanceAlertResponse {
            balance_alert: Some(alert(&found)),
        })
    }

    pub(super) async fn list_balance_alerts(
        &self,
        call: Call<pb::ListBalanceAlertsRequest>,
    ) -> Reply<pb::ListBalanceAlertsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let customer = match optional(&call.body.customer) {
            Some(customer) => Some(reference(customer, "customer")?),
            None => None,
        };
        let (alerts, next_page_token) = self
            .ledger
            .list_alerts(call.account(), customer, &page)
            .await?;
        Ok(pb::ListBalanceAlertsResponse {
            balance_alerts: alerts.iter().map(alert).collect(),
            next_page_token,
        })
    }

    pub(super) async fn delete_balance_alert(
        &self,
        call: Call<pb::DeleteBalanceAlertRequest>,
    ) -> Reply<pb::DeleteBalanceAlertResponse> {
        let id = reference(&call.body.id, "id")?;
        let deleted = self.ledger.delete_alert(call.account(), id).await?;
        Ok(pb::DeleteBalanceAlertResponse {
            balance_alert: Some(alert(&deleted)),
        })
    }
}
