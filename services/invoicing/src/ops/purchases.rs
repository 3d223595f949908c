//! Credit purchases (DESIGN.md section 11; docs/lifecycle.md).
//!
//! CreateCreditPurchase writes the purchase and its finalized invoice (one
//! line "N credits × unit price", rounded once; credits never pay it) in one
//! transaction, then the purchase saga makes the ledger calls, each keyed by
//! the purchase so that a retry, a crash or a second replica repeats the call
//! and gets the first one's result:
//! 1. the grant (`purchase:{id}`): paid, with the cost basis, pending payment
//!    when payment is required and the invoice is not paid yet;
//! 2. once the invoice is paid (MarkInvoicePaid), its activation
//!    (`purchase-activate:{id}`);
//! 3. once the invoice is voided unpaid, the grant's void
//!    (`purchase-void:{id}`).
//!
//! Every step reads where the purchase and its invoice stand and does what
//! is left, so the same function serves the RPCs and the recovery worker.

use billing_db::idempotency::IdempotencyKey;
use billing_money::{Currency, Decimal, FieldViolation};
use billing_server::ids::new_id;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};

use super::allocations::AmountInput;
use super::{Invoicing, failpoint};
use crate::domain::invoice::{BillingReason, Invoice, Line, Status};
use crate::domain::purchase::{
    CREDIT_PURCHASE_ACTIVATED, CREDIT_PURCHASE_VOIDED, CreditPurchase, PurchaseStatus, charge,
    line_description, quantity,
};
use crate::domain::top_up::TopUpEvent;
use crate::error::InvoicingError;
use crate::upstream::{GrantKind, GrantSource, GrantSpec};

/// CreateCreditPurchase after field checks.
#[derive(Debug, Clone)]
pub struct NewPurchase {
    /// `cus_…`
    pub customer: String,
    /// The credits, their pricing unit not yet resolved.
    pub credits: AmountInput,
    /// The invoice's currency.
    pub currency: Currency,
    /// Minor units per whole credit.
    pub unit_amount: Decimal,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// 0 to 100.
    pub priority: u32,
    /// Prices the credits may pay for.
    pub prices: Vec<String>,
    /// Usable only once paid.
    pub require_payment: bool,
}

impl Invoicing {
    /// Creates a purchase and runs its saga as far as it goes now.
    pub async fn create_purchase(
        &self,
        account: &str,
        new: NewPurchase,
        key: Option<&IdempotencyKey>,
    ) -> Result<CreditPurchase, InvoicingError> {
        self.create_purchase_for(account, new, key, None).await
    }

    /// Creates a purchase, for an auto top-up's decision when `triggered`
    /// is given (its event is written with the purchase).
    pub(super) async fn create_purchase_for(
        &self,
        account: &str,
        new: NewPurchase,
        key: Option<&IdempotencyKey>,
        triggered: Option<&TopUpEvent>,
    ) -> Result<CreditPurchase, InvoicingError> {
        let customer = self.customer(account, &new.customer).await?;
        let now = self.clock.now();
        let mut violations = Vec::new();
        let credits = self
            .resolve_amount(
                account,
                &new.credits,
                "credits",
                &mut Default::default(),
                &mut violations,
            )
            .await?;
        if new.expires_at.is_some_and(|at| at <= now) {
            violations.push(FieldViolation::new("expires_at", "must be in the future"));
        }
        if !new.prices.is_empty() {
            let ids: Vec<&str> = new.prices.iter().map(String::as_str).collect();
            let found = self.store.prices(account, &ids).await?;
            for (i, price) in new.prices.iter().enumerate() {
                if !found.iter().any(|p| &p.id == price) {
                    violations.push(FieldViolation::new(
                        format!("prices[{i}]"),
                        "must be a price of the account",
                    ));
                }
            }
        }
        let Some((asset, value)) = credits.filter(|_| violations.is_empty()) else {
            return Err(InvoicingError::fields(violations));
        };
        let amount = charge(&asset, value, new.unit_amount).ok_or_else(|| {
            InvoicingError::invalid(
                "unit_amount_decimal",
                "credits × unit price does not fit in 64 bits",
            )
        })?;
        let invoice_id = new_id("in");
        let line = Line {
            id: new_id("il"),
            price: String::new(),
            meter: String::new(),
            description: line_description(&asset, value, new.unit_amount),
            asset: billing_money::Asset::Currency(new.currency),
            usage: quantity(&asset, value),
            quantity: quantity(&asset, value),
            unit_amount: Some(new.unit_amount),
            amount,
            credits_applied: 0,
            applications: Vec::new(),
            conversion: None,
        };
        // Nothing is due on a free purchase: its invoice is paid at once.
        let status = if amount == 0 {
            Status::Paid
        } else {
            Status::Open
        };
        let invoice = Invoice {
            id: invoice_id.clone(),
            customer: customer.id.clone(),
            subscription: String::new(),
            status,
            reason: BillingReason::CreditPurchase,
            period_start: now,
            period_end: now,
            lines: vec![line],
            auto_finalize_at: None,
            finalized_at: Some(now),
            paid_at: (status == Status::Paid).then_some(now),
            voided_at: None,
            created: now,
            step_error: None,
        };
        let purchase = CreditPurchase {
            id: new_id("cpur"),
            customer: customer.id,
            credits_asset: asset,
            credits: value,
            currency: new.currency,
            unit_amount: new.unit_amount,
            amount,
            invoice: invoice_id,
            credit_grant: None,
            status: PurchaseStatus::Processing,
            require_payment: new.require_payment,
            expires_at: new.expires_at,
            priority: new.priority,
            prices: new.prices,
            created: now,
            auto_top_up: triggered.map(|t| t.auto_top_up.id.clone()),
        };
        let triggered = triggered.map(|t| TopUpEvent {
            credit_purchase: Some(purchase.id.clone()),
            ..t.clone()
        });
        let created = self
            .store
            .create_purchase(account, &invoice, purchase, key, triggered.as_ref())
            .await?;
        self.complete_purchase(account, &created.id).await
    }

    /// One purchase.
    pub async fn purchase(
        &self,
        account: &str,
        id: &str,
    ) -> Result<CreditPurchase, InvoicingError> {
        self.store
            .purchase(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("credit purchase", id))
    }

    /// A page of purchases.
    pub async fn list_purchases(
        &self,
        account: &str,
        customer: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<CreditPurchase>, String), InvoicingError> {
        self.store.list_purchases(account, customer, page).await
    }

    /// After a purchase invoice was paid or voided: moves its purchase on
    /// (logged on failure; the worker retries).
    pub(super) async fn settle_purchase_of(&self, account: &str, invoice: &Invoice) {
        if invoice.reason != BillingReason::CreditPurchase {
            return;
        }
        let result = match self.store.purchase_of_invoice(account, &invoice.id).await {
            Ok(Some(purchase)) => self
                .complete_purchase(account, &purchase.id)
                .await
                .map(|_| ()),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, invoice = %invoice.id, "purchase step failed; the worker retries it");
        }
    }

    /// Runs what is left of the purchase's saga, given its invoice's status.
    pub async fn complete_purchase(
        &self,
        account: &str,
        id: &str,
    ) -> Result<CreditPurchase, InvoicingError> {
        let purchase = self.purchase(account, id).await?;
        let invoice = self.invoice(account, &purchase.invoice).await?;
        let now_us = to_micros(self.clock.now());
        if purchase.status == PurchaseStatus::Processing {
            if invoice.status == Status::Void {
                // Voided before its grant was made: none will be.
                self.store
                    .move_purchase(
                        account,
                        id,
                        (PurchaseStatus::Processing, PurchaseStatus::Void),
                        None,
                        Some(CREDIT_PURCHASE_VOIDED),
                        now_us,
                    )
                    .await?;
                return self.purchase(account, id).await;
            }
            let pending = purchase.require_payment && invoice.status != Status::Paid;
            let spec = purchase_grant(&purchase, pending);
            let grant = self
                .upstream
                .create_grant(account, &format!("purchase:{id}"), &spec)
                .await?;
            failpoint("after_purchase_grant");
            let (to, event) = if pending {
                (PurchaseStatus::PendingPayment, None)
            } else {
                (PurchaseStatus::Active, Some(CREDIT_PURCHASE_ACTIVATED))
            };
            self.store
                .move_purchase(
                    account,
                    id,
                    (PurchaseStatus::Processing, to),
                    Some(&grant),
                    event,
                    now_us,
                )
                .await?;
        }
        let purchase = self.purchase(account, id).await?;
        let Some(grant) = purchase.credit_grant.as_deref() else {
            return Ok(purchase);
        };
        match (purchase.status, invoice.status) {
            (PurchaseStatus::PendingPayment, Status::Paid) => {
                self.upstream
                    .activate_grant(account, &format!("purchase-activate:{id}"), grant)
                    .await?;
                failpoint("after_purchase_activation");
                self.store
                    .move_purchase(
                        account,
                        id,
                        (PurchaseStatus::PendingPayment, PurchaseStatus::Active),
                        None,
                        Some(CREDIT_PURCHASE_ACTIVATED),
                        now_us,
                    )
                    .await?;
            }
            (PurchaseStatus::PendingPayment | PurchaseStatus::Active, Status::Void) => {
                self.upstream
                    .void_grant(account, &format!("purchase-void:{id}"), grant)
                    .await?;
                self.store
                    .move_purchase(
                        account,
                        id,
                        (purchase.status, PurchaseStatus::Void),
                        None,
                        Some(CREDIT_PURCHASE_VOIDED),
                        now_us,
                    )
                    .await?;
            }
            _ => {}
        }
        self.purchase(account, id).await
    }
}

/// The ledger grant of a purchase.
fn purchase_grant(purchase: &CreditPurchase, pending: bool) -> GrantSpec {
    GrantSpec {
        customer: purchase.customer.clone(),
        name: format!("Credit purchase {}", purchase.id),
        asset: purchase.credits_asset.clone(),
        amount: purchase.credits,
        prices: purchase.prices.clone(),
        priority: purchase.priority,
        effective_at: purchase.created,
        expires_at: purchase.expires_at,
        metadata: [
            ("source".to_owned(), "purchase".to_owned()),
            ("credit_purchase".to_owned(), purchase.id.clone()),
            ("invoice".to_owned(), purchase.invoice.clone()),
        ]
        .into(),
        source: GrantSource {
            kind: GrantKind::Purchase,
            subscription: String::new(),
            allocation: 0,
            period_start: None,
            credit_purchase: purchase.id.clone(),
            invoice: purchase.invoice.clone(),
        },
        paid: true,
        cost_basis: Some((purchase.currency, purchase.unit_amount)),
        pending_payment: pending,
    }
}
