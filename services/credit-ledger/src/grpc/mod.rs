//! `billing.ledger.v1.LedgerService` over the [`Ledger`].
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each handler calls one use case through
//! the shared handler shape (`billing_server::handler`).

pub mod alerts;
pub mod convert;
pub mod events;
pub mod holds;
mod provenance;
pub mod report;
pub mod status;

use billing_money::FieldViolation;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_server::{LedgerService, LedgerServiceServer};
use billing_server::auth::Principal;
use billing_server::events::{EVENT_SERVICE_NAME, EventFeed};
use billing_server::handler::{Call, Reply, invalid, optional, page};
use billing_server::host::{Routes, Served, Serving};
use billing_telemetry::record_ids;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;

use crate::domain::balance::Balance;
use crate::domain::validate::{check_name, check_reference};
use crate::error::LedgerError;
use crate::ops::Ledger;
use crate::store::ROLLOVER_GRANTS_MAX;

/// The gRPC face of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerGrpc {
    ledger: Ledger,
}

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.ledger.v1.LedgerService";

/// The routes of the ledger's port, behind `auth`, and the services they serve.
pub fn routes(ledger: &Ledger, max: usize, serving: &Serving) -> Served {
    let service = LedgerServiceServer::new(LedgerGrpc {
        ledger: ledger.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let feed = EventFeed::new(
        ledger.db().clone(),
        events::LedgerEvents,
        "ledger",
        serving.draining.clone(),
    )
    .server(max);
    (
        Routes::new(InterceptedService::new(service, serving.auth.clone()))
            .add_service(InterceptedService::new(feed, serving.auth.clone())),
        vec![SERVICE_NAME, EVENT_SERVICE_NAME],
    )
}

/// A reference id the ledger keeps (customer, invoice, grant): present and
/// bounded; recorded on the RPC's span under `field`.
fn reference<'a>(value: &'a str, field: &'static str) -> Reply<&'a str> {
    record_ids(&[(field, value)]);
    let mut out = Vec::new();
    check_reference(value, field, &mut out);
    if out.is_empty() {
        Ok(value)
    } else {
        Err(invalid(out))
    }
}

/// ApplyCredits and ReverseCredits need the `apply_credits` scope.
fn may_apply(caller: &Principal, method: &'static str) -> Result<(), Status> {
    if caller.can_apply_credits {
        Ok(())
    } else {
        Err(LedgerError::PermissionDenied(method).into())
    }
}

billing_server::unary_service! {
    impl LedgerService for LedgerGrpc, pb {
        get_pricing_unit list_pricing_units get_credit_grant list_credit_grants
        get_credit_balance_summary list_credit_balance_transactions
        apply_credits reverse_credits audit_ledger get_credit_liability_report
        get_balance_alert list_balance_alerts delete_balance_alert
        get_credit_hold release_credit_hold list_credit_holds
    } mutations {
        create_pricing_unit update_pricing_unit create_credit_grant update_credit_grant
        void_credit_grant expire_credit_grant rollover_credit_grants activate_credit_grant
        create_balance_alert create_credit_hold
    };

    type ExportLedgerEntriesStream = report::ExportStream;

    async fn export_ledger_entries(
        &self,
        request: tonic::Request<pb::ExportLedgerEntriesRequest>,
    ) -> Result<tonic::Response<report::ExportStream>, Status> {
        self.export(request).await
    }
}

impl LedgerGrpc {
    async fn create_pricing_unit(
        &self,
        call: Call<pb::CreatePricingUnitRequest>,
    ) -> Reply<pb::CreatePricingUnitResponse> {
        let mut out = Vec::new();
        check_name(&call.body.display_name, "display_name", true, &mut out);
        if call.body.scale > billing_money::PRICING_UNIT_SCALE_MAX {
            out.push(FieldViolation::new("scale", "must be between 0 and 9"));
        }
        let conversion = convert::conversion(call.body.conversion.as_ref(), &mut out);
        if !out.is_empty() {
            return Err(invalid(out));
        }
        let Call { caller, body, key } = call;
        let unit = self.ledger.create_pricing_unit(
            &caller.account,
            (body.display_name, body.scale, conversion),
            key.as_ref(),
        );
        Ok(pb::CreatePricingUnitResponse {
            pricing_unit: Some(convert::pricing_unit(&unit.await?)),
        })
    }

    async fn update_pricing_unit(
        &self,
        call: Call<pb::UpdatePricingUnitRequest>,
    ) -> Reply<pb::UpdatePricingUnitResponse> {
        let id = reference(&call.body.id, "id")?;
        let changes = convert::unit_changes(&call.body).map_err(invalid)?;
        let unit = self
            .ledger
            .update_pricing_unit(call.account(), id, changes, call.key());
        Ok(pb::UpdatePricingUnitResponse {
            pricing_unit: Some(convert::pricing_unit(&unit.await?)),
        })
    }

    async fn get_pricing_unit(
        &self,
        call: Call<pb::GetPricingUnitRequest>,
    ) -> Reply<pb::GetPricingUnitResponse> {
        let unit = self
            .ledger
            .pricing_unit(call.account(), reference(&call.body.id, "id")?);
        Ok(pb::GetPricingUnitResponse {
            pricing_unit: Some(convert::pricing_unit(&unit.await?)),
        })
    }

    async fn list_pricing_units(
        &self,
        call: Call<pb::ListPricingUnitsRequest>,
    ) -> Reply<pb::ListPricingUnitsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (units, next_page_token) = self
            .ledger
            .list_pricing_units(call.account(), &page)
            .await?;
        let pricing_units = units.iter().map(convert::pricing_unit).collect();
        Ok(pb::ListPricingUnitsResponse {
            pricing_units,
            next_page_token,
        })
    }

    async fn create_credit_grant(
        &self,
        call: Call<pb::CreateCreditGrantRequest>,
    ) -> Reply<pb::CreateCreditGrantResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        if call.body.source.is_some() || call.body.pending_payment {
            // A source claims where the credits came from; a pending grant
            // waits for an activation only invoicing makes.
            may_apply(
                &call.caller,
                "CreateCreditGrant with a source or pending payment",
            )?;
        }
        let input = convert::grant_input(&call.body).map_err(invalid)?;
        let grant = self.ledger.create_grant(call.account(), input, call.key());
        Ok(pb::CreateCreditGrantResponse {
            credit_grant: Some(self.grant(&grant.await?)),
        })
    }

    async fn rollover_credit_grants(
        &self,
        call: Call<pb::RolloverCreditGrantsRequest>,
    ) -> Reply<pb::RolloverCreditGrantsResponse> {
        may_apply(&call.caller, "RolloverCreditGrants")?;
        let mut out = Vec::new();
        if call.key.is_none() {
            out.push(FieldViolation::new(
                "request_id",
                "is required: a retried rollover is recognised by it",
            ));
        }
        let ids = &call.body.credit_grants;
        if ids.is_empty() || ids.len() > ROLLOVER_GRANTS_MAX {
            out.push(FieldViolation::new(
                "credit_grants",
                format!("must list 1 to {ROLLOVER_GRANTS_MAX} grants"),
            ));
        }
        for (i, id) in ids.iter().take(ROLLOVER_GRANTS_MAX).enumerate() {
            check_reference(id, &format!("credit_grants[{i}]"), &mut out);
        }
        let carried = match &call.body.carried {
            None => {
                out.push(FieldViolation::new("carried", "is required"));
                None
            }
            Some(carried) => convert::grant_input(carried)
                .map_err(|v| out.extend(v.into_iter().map(|f| f.under("carried"))))
                .ok(),
        };
        let Some(carried) = carried.filter(|_| out.is_empty()) else {
            return Err(invalid(out));
        };
        let (grants, carried) = self
            .ledger
            .rollover(call.account(), ids, carried, call.key())
            .await?;
        Ok(pb::RolloverCreditGrantsResponse {
            expired: grants.iter().map(|g| self.grant(g)).collect(),
            carried: carried.as_ref().map(|g| self.grant(g)),
        })
    }

    async fn activate_credit_grant(
        &self,
        call: Call<pb::ActivateCreditGrantRequest>,
    ) -> Reply<pb::ActivateCreditGrantResponse> {
        may_apply(&call.caller, "ActivateCreditGrant")?;
        let id = reference(&call.body.id, "id")?;
        let grant = self.ledger.activate_grant(call.account(), id, call.key());
        Ok(pb::ActivateCreditGrantResponse {
            credit_grant: Some(self.grant(&grant.await?)),
        })
    }

    async fn get_credit_grant(
        &self,
        call: Call<pb::GetCreditGrantRequest>,
    ) -> Reply<pb::GetCreditGrantResponse> {
        let id = reference(&call.body.id, "id")?;
        let credit_grant = Some(self.grant(&self.ledger.grant(call.account(), id).await?));
        Ok(pb::GetCreditGrantResponse { credit_grant })
    }

    async fn list_credit_grants(
        &self,
        call: Call<pb::ListCreditGrantsRequest>,
    ) -> Reply<pb::ListCreditGrantsResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let customer = optional(&call.body.customer);
        let (grants, next_page_token) = self
            .ledger
            .list_grants(call.account(), customer, &page)
            .await?;
        let credit_grants = grants.iter().map(|g| self.grant(g)).collect();
        Ok(pb::ListCreditGrantsResponse {
            credit_grants,
            next_page_token,
        })
    }

    async fn update_credit_grant(
        &self,
        call: Call<pb::UpdateCreditGrantRequest>,
    ) -> Reply<pb::UpdateCreditGrantResponse> {
        let id = reference(&call.body.id, "id")?;
        let changes = convert::grant_changes(&call.body).map_err(invalid)?;
        let grant = self
            .ledger
            .update_grant(call.account(), id, changes, call.key());
        Ok(pb::UpdateCreditGrantResponse {
            credit_grant: Some(self.grant(&grant.await?)),
        })
    }

    async fn void_credit_grant(
        &self,
        call: Call<pb::VoidCreditGrantRequest>,
    ) -> Reply<pb::VoidCreditGrantResponse> {
        let id = reference(&call.body.id, "id")?;
        let grant = self
            .ledger
            .void_grant(call.account(), id, call.key())
            .await?;
        Ok(pb::VoidCreditGrantResponse {
            credit_grant: Some(self.grant(&grant)),
        })
    }

    async fn expire_credit_grant(
        &self,
        call: Call<pb::ExpireCreditGrantRequest>,
    ) -> Reply<pb::ExpireCreditGrantResponse> {
        Ok(pb::ExpireCreditGrantResponse {
            credit_grant: Some(
                self.grant(
                    &self
                        .ledger
                        .expire_grant(call.account(), reference(&call.body.id, "id")?, call.key())
                        .await?,
                ),
            ),
        })
    }

    async fn get_credit_balance_summary(
        &self,
        call: Call<pb::GetCreditBalanceSummaryRequest>,
    ) -> Reply<pb::GetCreditBalanceSummaryResponse> {
        let customer = reference(&call.body.customer, "customer")?;
        let filter = convert::balance_filter(call.body.filter.as_ref()).map_err(invalid)?;
        let unbilled = convert::unbilled_inputs(&call.body).map_err(invalid)?;
        let mut out = Vec::new();
        convert::pool_input(&call.body.pool, customer, &mut out);
        if !out.is_empty() {
            return Err(invalid(out));
        }
        let pool = &call.body.pool;
        let mut line_credits = Vec::new();
        let mut unbilled_units = Vec::new();
        let (figures, mut balances) = if unbilled.is_empty() && pool.is_empty() {
            self.summary(call.account(), customer, &filter).await?
        } else {
            if filter != crate::domain::balance::BalanceFilter::All {
                return Err(invalid(vec![FieldViolation::new(
                    "filter",
                    "cannot be set with unbilled_lines or pool",
                )]));
            }
            // The real-time view (invoicing's GetCustomerBalance): the
            // balance, what the unbilled lines would take, and the holds,
            // the grants and holds in one statement; the alert state is
            // the plain summary's.
            let crate::ops::Unbilled {
                balances,
                credits,
                lines,
                held,
                units,
            } = self
                .ledger
                .balance_with_unbilled(call.account(), customer, (unbilled, pool))
                .await?;
            unbilled_units = units.iter().map(convert::pricing_unit).collect();
            line_credits = lines
                .iter()
                .map(|(id, asset, applied)| pb::UnbilledLineCredits {
                    invoice_line_item: id.clone(),
                    credits: Some(convert::amount(asset, *applied)),
                })
                .collect();
            let mut shown = convert::balances(&balances);
            for (balance, out) in balances.iter().zip(shown.iter_mut()) {
                let of = |figures: &[(billing_money::Asset, i64)]| {
                    let value = figures
                        .iter()
                        .find(|(asset, _)| *asset == balance.asset)
                        .map_or(0, |(_, value)| *value);
                    Some(convert::amount(&balance.asset, value))
                };
                out.unbilled_credits = of(&credits);
                out.held_balance = of(&held);
            }
            (balances, shown)
        };
        if !pool.is_empty() {
            let pooled = self.ledger.pooled_available(call.account(), pool).await?;
            convert::add_pooled(&figures, &mut balances, &pooled);
        }
        Ok(pb::GetCreditBalanceSummaryResponse {
            customer: customer.to_owned(),
            balances,
            unbilled_line_credits: line_credits,
            unbilled_pricing_units: unbilled_units,
        })
    }

    /// The plain summary: balances, and for the whole balance the alert
    /// state and the holds.
    async fn summary(
        &self,
        account: &str,
        customer: &str,
        filter: &crate::domain::balance::BalanceFilter,
    ) -> Reply<(Vec<Balance>, Vec<pb::CreditBalance>)> {
        let balances = self
            .ledger
            .balance_summary(account, customer, filter)
            .await?;
        let mut shown = convert::balances(&balances);
        // The alert state and the holds belong to the whole balance, not to
        // a filtered part.
        if *filter == crate::domain::balance::BalanceFilter::All {
            let (statuses, held) = tokio::try_join!(
                self.ledger.alert_status(account, customer),
                self.ledger.held(account, customer)
            )?;
            for (balance, out) in balances.iter().zip(shown.iter_mut()) {
                out.alerts = statuses
                    .iter()
                    .find(|s| s.asset == balance.asset)
                    .map(alerts::status);
                let held = held.iter().find(|(asset, _)| *asset == balance.asset);
                out.held_balance = Some(convert::amount(
                    &balance.asset,
                    held.map_or(0, |(_, value)| *value),
                ));
            }
        }
        Ok((balances, shown))
    }

    async fn list_credit_balance_transactions(
        &self,
        call: Call<pb::ListCreditBalanceTransactionsRequest>,
    ) -> Reply<pb::ListCreditBalanceTransactionsResponse> {
        let customer = reference(&call.body.customer, "customer")?;
        let page = page(call.body.page_size, &call.body.page_token)?;
        let grant = optional(&call.body.credit_grant);
        let found = self
            .ledger
            .list_transactions(call.account(), customer, grant, &page);
        let (items, next_page_token) = found.await?;
        let credit_balance_transactions = items.iter().map(convert::transaction).collect();
        Ok(pb::ListCreditBalanceTransactionsResponse {
            credit_balance_transactions,
            next_page_token,
        })
    }

    async fn apply_credits(
        &self,
        call: Call<pb::ApplyCreditsRequest>,
    ) -> Reply<pb::ApplyCreditsResponse> {
        record_ids(&[
            ("invoice", call.body.invoice.as_str()),
            ("customer", call.body.customer.as_str()),
        ]);
        may_apply(&call.caller, "ApplyCredits")?;
        let input = convert::apply_input(&call.body).map_err(invalid)?;
        let outcome = self.ledger.apply_credits(call.account(), input).await?;
        Ok(convert::apply_response(&outcome))
    }

    async fn reverse_credits(
        &self,
        call: Call<pb::ReverseCreditsRequest>,
    ) -> Reply<pb::ReverseCreditsResponse> {
        may_apply(&call.caller, "ReverseCredits")?;
        let invoice = reference(&call.body.invoice, "invoice")?;
        Ok(convert::reverse_response(
            &self.ledger.reverse_credits(call.account(), invoice).await?,
        ))
    }

    async fn audit_ledger(
        &self,
        call: Call<pb::AuditLedgerRequest>,
    ) -> Reply<pb::AuditLedgerResponse> {
        Ok(convert::audit_response(
            &self.ledger.audit(call.account()).await?,
        ))
    }

    /// A grant as the API shows it (its state derived at the clock's now).
    fn grant(&self, grant: &crate::domain::grant::Grant) -> pb::CreditGrant {
        convert::grant(grant, self.ledger.clock().now())
    }
}
