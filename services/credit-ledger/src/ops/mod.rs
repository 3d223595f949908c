//! The ledger's operations: what the gRPC layer calls.
//!
//! Requests arrive converted and field-checked (see `grpc::convert`); here
//! they are completed with what needs the database or the clock (pricing
//! unit scales, defaults relative to now) and handed to the store.

mod alerts;
mod holds;
mod report;

pub use alerts::AlertInput;
pub use holds::HoldInput;

use std::collections::{BTreeMap, HashMap};

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_server::clock::Clock;
use billing_server::metrics::{Labels, Metrics, labels};
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::domain::apply::{ApplyOutcome, ApplyRequest, Line, Reversal};
use crate::domain::balance::{self, Balance, BalanceFilter};
use crate::domain::error::RuleError;
use crate::domain::grant::{Category, CostBasis, Grant, GrantChanges, GrantTotals, Scope, Source};
use crate::domain::transaction::{BalanceTransaction, NewId};
use crate::domain::validate::AmountInput;
use crate::error::LedgerError;
use crate::store::{AuditReport, PricingUnit, RolledOver, Store};

/// CreateCreditGrant after field checks.
#[derive(Debug, Clone)]
pub struct GrantInput {
    /// The customer.
    pub customer: String,
    /// Name.
    pub name: String,
    /// Amount, unit not yet resolved.
    pub amount: AmountInput,
    /// Scope.
    pub scope: Scope,
    /// Category.
    pub category: Category,
    /// Priority.
    pub priority: u32,
    /// Defaults to now.
    pub effective_at: Option<DateTime<Utc>>,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Set by invoicing (the gRPC layer checks the caller's scope).
    pub source: Option<Source>,
    /// What the credits cost.
    pub cost_basis: Option<CostBasis>,
    /// Usable only once activated (the gRPC layer checks the caller's scope).
    pub pending_payment: bool,
    /// Shared with the customer's descendants.
    pub shared: bool,
}

/// One ApplyCredits line after field checks.
#[derive(Debug, Clone)]
pub struct LineInput {
    /// Line id.
    pub invoice_line_item: String,
    /// Price id.
    pub price: String,
    /// Amount, unit not yet resolved.
    pub amount: AmountInput,
}

/// ApplyCredits after field checks.
#[derive(Debug, Clone)]
pub struct ApplyInput {
    /// The customer.
    pub customer: String,
    /// The invoice.
    pub invoice: String,
    /// The service period end.
    pub period_end: DateTime<Utc>,
    /// The lines.
    pub lines: Vec<LineInput>,
    /// Write nothing.
    pub preview: bool,
    /// The customer's ancestors, nearest first (a credit pool).
    pub pool: Vec<String>,
}

/// The balance with what unbilled lines would take.
#[derive(Debug, Clone)]
pub struct Unbilled {
    /// The customer's balances.
    pub balances: Vec<Balance>,
    /// Per asset, the credits the lines would take.
    pub credits: Vec<(billing_money::Asset, i64)>,
    /// Per line, in request order: its id, asset and credits.
    pub lines: Vec<(String, billing_money::Asset, i64)>,
    /// Per asset, the active holds.
    pub held: Vec<(billing_money::Asset, i64)>,
    /// The pricing units of the lines.
    pub units: Vec<PricingUnit>,
}

/// The credit ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
    clock: Clock,
    credits_applied: Option<Family<Labels, Counter>>,
    customers: Option<crate::upstream::Customers>,
}

impl Ledger {
    /// A ledger over a store, reading time from `clock`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self {
            store,
            clock,
            credits_applied: None,
            customers: None,
        }
    }

    /// The database, for the event feed (which reads the outbox directly).
    pub fn db(&self) -> &billing_db::Db {
        self.store.db()
    }

    /// Checks every new grant's customer with invoicing.
    pub fn with_customers(mut self, customers: crate::upstream::Customers) -> Self {
        self.customers = Some(customers);
        self
    }

    /// Counts applied credits in `metrics` (`ledger_credits_applied_total{asset}`,
    /// in the asset's smallest unit; replays are not counted).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.credits_applied = Some(metrics.counter_family(
            "ledger_credits_applied",
            "Credits applied to invoices, in the asset's smallest unit",
        ));
        self
    }

    /// The store (sweeper, tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Creates a pricing unit.
    pub async fn create_pricing_unit(
        &self,
        account: &str,
        (display_name, scale, conversion): (String, u32, Option<billing_money::Conversion>),
        key: Option<&IdempotencyKey>,
    ) -> Result<PricingUnit, LedgerError> {
        let unit = PricingUnit {
            id: billing_server::ids::new_id("pu"),
            display_name,
            scale,
            created: self.clock.now(),
            conversion,
        };
        self.store.create_pricing_unit(account, unit, key).await
    }

    /// Renames a pricing unit or changes its rate. Invoices keep the rate
    /// frozen when they were finalized.
    pub async fn update_pricing_unit(
        &self,
        account: &str,
        id: &str,
        changes: crate::store::UnitChanges,
        key: Option<&IdempotencyKey>,
    ) -> Result<PricingUnit, LedgerError> {
        self.store
            .update_pricing_unit(account, id, changes, key, self.clock.now())
            .await?
            .ok_or_else(|| LedgerError::not_found("pricing unit", id))
    }

    /// One pricing unit.
    pub async fn pricing_unit(&self, account: &str, id: &str) -> Result<PricingUnit, LedgerError> {
        self.store
            .pricing_unit(account, id)
            .await?
            .ok_or_else(|| LedgerError::not_found("pricing unit", id))
    }

    /// A page of pricing units.
    pub async fn list_pricing_units(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<PricingUnit>, String), LedgerError> {
        self.store.list_pricing_units(account, page).await
    }

    /// Creates a grant.
    pub async fn create_grant(
        &self,
        account: &str,
        input: GrantInput,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        // Money is only granted to a customer invoicing knows (checked
        // before anything is written; a replayed request passes too, its
        // customer having been checked the first time).
        if let Some(customers) = &self.customers {
            customers.check(account, &input.customer).await?;
        }
        let grant = self.new_grant(account, input, "").await?;
        self.store.create_grant(account, grant, key).await
    }

    /// Expires what is left of the grants `ids` and grants it again, at most
    /// `carried`'s amount, as `carried`, in one transaction.
    pub async fn rollover(
        &self,
        account: &str,
        ids: &[String],
        carried: GrantInput,
        key: Option<&IdempotencyKey>,
    ) -> Result<RolledOver, LedgerError> {
        let carried = self.new_grant(account, carried, "carried.").await?;
        let now = carried.created;
        self.store.rollover(account, ids, carried, key, now).await
    }

    /// A new grant from checked input: the amount resolved against its
    /// pricing unit, defaults relative to the clock's now.
    /// Violations name fields under `prefix` (`carried.` in a rollover).
    async fn new_grant(
        &self,
        account: &str,
        input: GrantInput,
        prefix: &str,
    ) -> Result<Grant, LedgerError> {
        let now = self.clock.now();
        let scale = match input.amount.pricing_unit() {
            Some(id) => self.unit_scale(account, id).await?,
            None => None,
        };
        let mut violations = Vec::new();
        let resolved = input.amount.resolve(&format!("{prefix}amount"), scale);
        let effective_at = input.effective_at.unwrap_or(now);
        if input.expires_at.is_some_and(|at| at <= effective_at) {
            violations.push(FieldViolation::new(
                format!("{prefix}expires_at"),
                "must be after effective_at",
            ));
        }
        let (asset, amount) = match resolved {
            Ok(resolved) if violations.is_empty() => resolved,
            Ok(_) => return Err(LedgerError::fields(violations)),
            Err(violation) => {
                violations.insert(0, violation);
                return Err(LedgerError::fields(violations));
            }
        };
        let grant = Grant {
            id: billing_server::ids::new_id("credgr"),
            customer: input.customer,
            name: input.name,
            asset,
            amount,
            available: amount,
            totals: GrantTotals::default(),
            scope: input.scope,
            category: input.category,
            priority: input.priority,
            effective_at,
            expires_at: input.expires_at,
            voided_at: None,
            metadata: input.metadata,
            created: now,
            updated: now,
            source: input.source,
            cost_basis: input.cost_basis,
            pending_payment: input.pending_payment,
            shared: input.shared,
        };
        Ok(grant)
    }

    /// One grant.
    pub async fn grant(&self, account: &str, id: &str) -> Result<Grant, LedgerError> {
        self.store
            .grant(account, id)
            .await?
            .ok_or_else(|| grant_not_found(id))
    }

    /// A page of grants.
    pub async fn list_grants(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<Grant>, String), LedgerError> {
        self.store.list_grants(account, customer, page).await
    }

    /// Updates name, metadata or expiry.
    pub async fn update_grant(
        &self,
        account: &str,
        id: &str,
        changes: GrantChanges,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        self.change(account, id, key, move |grant, now, _| {
            grant.update(changes, now).map(|()| Vec::new())
        })
        .await
    }

    /// Voids a never-applied grant.
    pub async fn void_grant(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        self.change(account, id, key, Grant::void).await
    }

    /// Activates a grant bought pending payment.
    pub async fn activate_grant(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        self.change(account, id, key, Grant::activate).await
    }

    /// Expires a grant's remainder now.
    pub async fn expire_grant(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Grant, LedgerError> {
        self.change(account, id, key, Grant::expire_now).await
    }

    /// Runs a state change on one locked grant at the clock's now.
    async fn change(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
        change: impl FnOnce(
            &mut Grant,
            DateTime<Utc>,
            NewId<'_>,
        ) -> Result<Vec<BalanceTransaction>, RuleError>
        + Send
        + 'static,
    ) -> Result<Grant, LedgerError> {
        let now = self.clock.now();
        let change = Box::new(move |grant: &mut Grant, new_id: NewId<'_>| {
            change(grant, now, new_id).map_err(LedgerError::from)
        });
        self.store.change_grant(account, id, key, now, change).await
    }

    /// Balances per asset.
    pub async fn balance_summary(
        &self,
        account: &str,
        customer: &str,
        filter: &BalanceFilter,
    ) -> Result<Vec<Balance>, LedgerError> {
        let grants = match filter {
            BalanceFilter::CreditGrant(id) => {
                let grant = self.grant(account, id).await?;
                if grant.customer != customer {
                    return Err(grant_not_found(id));
                }
                vec![grant]
            }
            _ => self.store.customer_grants(account, customer).await?,
        };
        Ok(balance::summarize(&grants, filter, self.clock.now())?)
    }

    /// The customer's whole balance, and per asset the credits `unbilled`
    /// lines would take if they were invoiced now (planned over the same
    /// grants, as ApplyCredits plans).
    pub async fn balance_with_unbilled(
        &self,
        account: &str,
        customer: &str,
        (unbilled, pool): (Vec<LineInput>, &[String]),
    ) -> Result<Unbilled, LedgerError> {
        let now = self.clock.now();
        let input = ApplyInput {
            customer: customer.to_owned(),
            invoice: "unbilled".to_owned(),
            period_end: now,
            lines: unbilled,
            preview: true,
            pool: pool.to_vec(),
        };
        let ((grants, held), shared, (request, units)) = tokio::try_join!(
            self.store.grants_with_held(account, customer, now),
            self.store.shared_grants(account, pool),
            self.resolve_lines_with_units(account, input, "unbilled_lines")
        )?;
        let balances = balance::summarize(&grants, &BalanceFilter::All, now)?;
        let mut pooled = grants;
        pooled.extend(shared);
        let outcome = crate::domain::apply::plan(&request, &pooled)?;
        let credits = outcome
            .totals
            .into_iter()
            .map(|total| (total.asset, total.applied))
            .collect();
        let lines = outcome
            .lines
            .into_iter()
            .map(|line| (line.invoice_line_item, line.asset, line.applied))
            .collect();
        Ok(Unbilled {
            balances,
            credits,
            lines,
            held,
            units,
        })
    }

    /// What the customer can draw now from its ancestors' shared grants,
    /// per asset, ordered by asset.
    pub async fn pooled_available(
        &self,
        account: &str,
        pool: &[String],
    ) -> Result<Vec<(billing_money::Asset, i64)>, LedgerError> {
        let now = self.clock.now();
        let shared = self.store.shared_grants(account, pool).await?;
        let mut by_asset: std::collections::BTreeMap<billing_money::Asset, i64> =
            std::collections::BTreeMap::new();
        for grant in shared.iter().filter(|g| g.is_available_at(now)) {
            let sum = by_asset.entry(grant.asset.clone()).or_default();
            *sum = sum
                .checked_add(grant.available)
                .ok_or_else(|| LedgerError::Invariant("pooled balance overflows i64".into()))?;
        }
        Ok(by_asset.into_iter().collect())
    }

    /// A page of transactions.
    pub async fn list_transactions(
        &self,
        account: &str,
        customer: &str,
        credit_grant: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<BalanceTransaction>, String), LedgerError> {
        self.store
            .list_transactions(account, customer, credit_grant, page)
            .await
    }

    /// Applies (or previews) credits on an invoice. The caller's
    /// `apply_credits` scope is checked at the gRPC edge.
    pub async fn apply_credits(
        &self,
        account: &str,
        input: ApplyInput,
    ) -> Result<ApplyOutcome, LedgerError> {
        let preview = input.preview;
        let request = self.resolve_lines(account, input, "lines").await?;
        if preview {
            return self.store.preview(account, &request).await;
        }
        let write = self
            .store
            .apply(account, &request, self.clock.now())
            .await?;
        if !write.replayed {
            if let Some(counter) = &self.credits_applied {
                for total in &write.outcome.totals {
                    let applied = u64::try_from(total.applied).unwrap_or(0);
                    counter
                        .get_or_create(&labels(&[("asset", &total.asset.key())]))
                        .inc_by(applied);
                }
            }
            tracing::info!(
                invoice = %request.invoice,
                applications = write.outcome.applications.len(),
                "credits applied"
            );
        }
        Ok(write.outcome)
    }

    /// Gives back a voided invoice's credits (scope checked at the gRPC edge).
    pub async fn reverse_credits(
        &self,
        account: &str,
        invoice: &str,
    ) -> Result<Reversal, LedgerError> {
        self.store.reverse(account, invoice, self.clock.now()).await
    }

    /// Checks the account's invariants.
    pub async fn audit(&self, account: &str) -> Result<AuditReport, LedgerError> {
        self.store.audit(account).await
    }

    async fn resolve_lines(
        &self,
        account: &str,
        input: ApplyInput,
        name: &str,
    ) -> Result<ApplyRequest, LedgerError> {
        Ok(self.resolve_lines_with_units(account, input, name).await?.0)
    }

    /// As `resolve_lines`, with the pricing units the lines are in (read
    /// for their scales; the real-time view also wants their rates).
    async fn resolve_lines_with_units(
        &self,
        account: &str,
        input: ApplyInput,
        name: &str,
    ) -> Result<(ApplyRequest, Vec<PricingUnit>), LedgerError> {
        let mut unit_ids: Vec<&str> = input
            .lines
            .iter()
            .filter_map(|l| l.amount.pricing_unit())
            .collect();
        unit_ids.sort_unstable();
        unit_ids.dedup();
        let mut units = Vec::with_capacity(unit_ids.len());
        for id in unit_ids {
            if let Some(unit) = self.store.pricing_unit(account, id).await? {
                units.push(unit);
            }
        }
        let scales: HashMap<&str, u32> = units.iter().map(|u| (u.id.as_str(), u.scale)).collect();
        let mut violations = Vec::new();
        let mut lines = Vec::with_capacity(input.lines.len());
        let mut totals: HashMap<String, i64> = HashMap::new();
        for (index, line) in input.lines.into_iter().enumerate() {
            let field = format!("{name}[{index}].amount");
            let scale = line
                .amount
                .pricing_unit()
                .and_then(|id| scales.get(id).copied());
            match line.amount.resolve(&field, scale) {
                Ok((asset, amount)) => {
                    let total = totals.entry(asset.key()).or_default();
                    match total.checked_add(amount) {
                        Some(sum) => *total = sum,
                        None => violations
                            .push(FieldViolation::new(field, "the invoice's total overflows")),
                    }
                    lines.push(Line {
                        invoice_line_item: line.invoice_line_item,
                        price: line.price,
                        asset,
                        amount,
                    });
                }
                Err(violation) => violations.push(violation),
            }
        }
        if !violations.is_empty() {
            return Err(LedgerError::fields(violations));
        }
        let request = ApplyRequest {
            customer: input.customer,
            invoice: input.invoice,
            period_end: input.period_end,
            lines,
            pool: input.pool,
        };
        Ok((request, units))
    }

    /// The scale of a pricing unit of the account; None when it does not exist.
    async fn unit_scale(&self, account: &str, id: &str) -> Result<Option<u32>, LedgerError> {
        Ok(self
            .store
            .pricing_unit(account, id)
            .await?
            .map(|unit| unit.scale))
    }
}

fn grant_not_found(id: &str) -> LedgerError {
    LedgerError::not_found("credit grant", id)
}
