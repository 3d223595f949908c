//! The finalize saga (DESIGN.md section 6), voiding, payment, preview.
//!
//! 1. `draft → finalizing`: lines re-priced from the final usage and frozen
//!    (a conditional update: one caller wins, the others use its lines).
//! 2. `LedgerService.ApplyCredits` with a deadline, idempotent on the invoice.
//! 3. One transaction: the applications, the line credits, `open` or
//!    `paid`, and the `invoice.finalized` outbox event.
//!
//! A crash or an unreachable ledger between 1 and 3 leaves the invoice
//! `finalizing`; repeating step 2 is safe, so any caller (a retried
//! FinalizeInvoice, the recovery worker, another replica) completes it.
//! Voiding is the same shape around `ReverseCredits`.

use billing_db::idempotency::IdempotencyKey;
use billing_server::clock::Clock;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;
use billing_server::time::to_micros;

use super::{Invoicing, failpoint};
use crate::domain::invoice::{
    INVOICE_FINALIZATION_FAILED, INVOICE_PAID, INVOICE_VOID_FAILED, INVOICE_VOIDED, Invoice,
    LineConversion, Status, StepError, retry_delay,
};
use crate::domain::price::Price;
use crate::error::InvoicingError;
use crate::store::InvoiceFilter;
use crate::upstream::LineCredits;

impl Invoicing {
    /// One invoice.
    pub async fn invoice(&self, account: &str, id: &str) -> Result<Invoice, InvoicingError> {
        self.store
            .invoice(account, id)
            .await?
            .ok_or_else(|| InvoicingError::not_found("invoice", id))
    }

    /// A page of invoices.
    pub async fn list_invoices(
        &self,
        account: &str,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<(Vec<Invoice>, String), InvoicingError> {
        self.store.list_invoices(account, filter, page).await
    }

    /// Closes the subscription's ended periods and returns the draft (or
    /// later state) of the latest one.
    pub async fn create_invoice(
        &self,
        account: &str,
        subscription: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Invoice, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        self.close_periods(account, subscription).await?;
        let sub = self.subscription(account, subscription).await?;
        let Some(latest) = sub.latest_invoice else {
            return Err(InvoicingError::conflict(
                "PERIOD_NOT_ENDED",
                format!(
                    "subscription {subscription} has no ended period yet; the current one ends at {}; \
                     PreviewInvoice shows it so far",
                    sub.period_end.to_rfc3339()
                ),
            ));
        };
        let invoice = self.invoice(account, &latest).await?;
        self.remember(account, key, invoice).await
    }

    /// Re-prices `invoice`'s lines from the usage over its period.
    pub(super) async fn price_lines(
        &self,
        account: &str,
        invoice: &mut Invoice,
        prices: &[Price],
    ) -> Result<(), InvoicingError> {
        self.price_invoices(account, std::slice::from_mut(invoice), prices)
            .await
    }

    /// Re-prices the lines of one customer's `invoices`, each from the
    /// usage over its own period, with one usage read for all of them.
    pub(super) async fn price_invoices(
        &self,
        account: &str,
        invoices: &mut [Invoice],
        prices: &[Price],
    ) -> Result<(), InvoicingError> {
        let Some(customer) = invoices.first().map(|i| i.customer.clone()) else {
            return Ok(());
        };
        let ranges: Vec<(&str, _, _)> = invoices
            .iter()
            .flat_map(|invoice| {
                invoice.lines.iter().map(|line| {
                    (
                        line.meter.as_str(),
                        invoice.period_start,
                        invoice.period_end,
                    )
                })
            })
            .collect();
        let usages = self.upstream.usages(account, &customer, &ranges).await?;
        let mut usages = usages.into_iter();
        for invoice in invoices.iter_mut() {
            for line in &mut invoice.lines {
                let usage = usages
                    .next()
                    .ok_or_else(|| InvoicingError::Corrupt("a line without its usage".into()))?;
                let price = prices.iter().find(|p| p.id == line.price).ok_or_else(|| {
                    InvoicingError::Corrupt(format!("price {} vanished", line.price))
                })?;
                let priced = price.pricing.price(usage).map_err(|e| {
                    InvoicingError::conflict("LINE_NOT_PRICEABLE", format!("line {}: {e}", line.id))
                })?;
                line.usage = usage;
                line.quantity = priced.quantity;
                line.unit_amount = price.pricing.unit_amount();
                line.amount = priced.amount;
            }
            // An invoice whose lines cannot be totalled in 64 bits is
            // refused here, when it is built or re-priced: never stored,
            // never shown with a saturated total, never stuck finalizing.
            invoice.totals().map_err(|overflow| {
                InvoicingError::conflict(
                    "INVOICE_TOTAL_OVERFLOW",
                    format!("the invoice cannot be totalled: {overflow}; nothing was stored"),
                )
            })?;
        }
        Ok(())
    }

    /// Finalizes an invoice exactly once. Finalizing an open or paid invoice
    /// returns it; a void one is FAILED_PRECONDITION. When the ledger is
    /// unreachable the invoice stays `finalizing` and completes later.
    pub async fn finalize(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Invoice, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let done = match self.finalize_draft(account, id).await? {
            Some(done) => done,
            None => {
                self.claimed((account, id), true, self.finalize_claimed(account, id))
                    .await?
            }
        };
        self.remember(account, key, done).await
    }

    /// Prices a draft's lines, freezes its rates and moves it to
    /// `finalizing` under this process's claim; false when another run
    /// froze it or holds it.
    pub(super) async fn freeze_draft(
        &self,
        account: &str,
        invoice: &mut Invoice,
    ) -> Result<bool, InvoicingError> {
        let ids: Vec<&str> = invoice.lines.iter().map(|l| l.price.as_str()).collect();
        let prices = self.store.prices(account, &ids).await?;
        self.price_lines(account, invoice, &prices).await?;
        // The rate is frozen with the lines: a later change of the
        // unit's rate never reaches this invoice.
        self.set_rates(account, invoice).await?;
        let frozen = self
            .store
            .freeze(account, invoice, self.clock.now(), self.claim_terms())
            .await?;
        if frozen {
            invoice.status = Status::Finalizing;
            invoice.auto_finalize_at = None;
        }
        Ok(frozen)
    }

    /// Finalize under the invoice's claim.
    pub(super) async fn finalize_claimed(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Invoice, InvoicingError> {
        let mut invoice = self.invoice(account, id).await?;
        if invoice.status == Status::Draft && !self.freeze_draft(account, &mut invoice).await? {
            // Another caller froze (or finished) it first: use its lines.
            invoice = self.invoice(account, id).await?;
        }
        let done = match invoice.status {
            Status::Finalizing => self.complete_finalize(account, invoice).await?,
            Status::Open | Status::Paid => invoice,
            Status::Voiding | Status::Void => {
                return Err(InvoicingError::conflict(
                    "INVOICE_VOID",
                    format!("invoice {id} is void and cannot be finalized"),
                ));
            }
            // Another caller froze it, the ledger refused, and it went back
            // to draft between our freeze attempt and our read.
            Status::Draft => return Err(refused_meanwhile(&invoice, "finalize")),
        };
        Ok(done)
    }

    /// Steps 2 and 3 for an invoice in `finalizing`.
    pub(crate) async fn complete_finalize(
        &self,
        account: &str,
        mut invoice: Invoice,
    ) -> Result<Invoice, InvoicingError> {
        if invoice.chargeable_lines().next().is_some() {
            // The pool as the hierarchy is now; a retry after it changed
            // gets the first application back (the ledger keys on the
            // invoice, not the pool).
            let pool = self.store.ancestors(account, &invoice.customer).await?;
            let response = match self
                .upstream
                .apply_credits(account, &invoice, (&invoice.id, &pool), false)
                .await
            {
                Ok(response) => response,
                Err(error) => return Err(self.step_failed(account, &invoice, error).await),
            };
            failpoint("after_apply_credits");
            record_credits(&mut invoice, &response)?;
        }
        invoice.convert()?;
        let now = self.clock.now();
        let run = (self.instance(), to_micros(Clock::system().now()));
        if !self
            .store
            .complete_finalize(account, &invoice, now, run)
            .await?
        {
            // Another caller completed it first; its result is the stored one.
            return self.invoice(account, &invoice.id).await;
        }
        invoice.status = invoice.finalized_status()?;
        self.count_finalize(invoice.status.as_str());
        invoice.finalized_at = Some(now);
        if invoice.status == Status::Paid {
            invoice.paid_at = Some(now);
        }
        Ok(invoice)
    }

    /// Voids an open invoice and gives its credits back exactly once.
    pub async fn void(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Invoice, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let done = self
            .claimed((account, id), true, self.void_claimed(account, id))
            .await?;
        self.remember(account, key, done).await
    }

    /// Void under the invoice's claim.
    async fn void_claimed(&self, account: &str, id: &str) -> Result<Invoice, InvoicingError> {
        let mut invoice = self.invoice(account, id).await?;
        if invoice.status == Status::Open {
            let now = self.clock.now();
            self.store
                .transition(account, id, Status::Open, Status::Voiding, None, now)
                .await?;
            invoice = self.invoice(account, id).await?;
        }
        let done = match invoice.status {
            Status::Voiding => self.complete_void(account, invoice).await?,
            Status::Void => invoice,
            Status::Paid => {
                return Err(InvoicingError::conflict(
                    "INVOICE_PAID",
                    format!("invoice {id} is paid and cannot be voided"),
                ));
            }
            Status::Draft | Status::Finalizing => {
                return Err(InvoicingError::conflict(
                    "INVOICE_NOT_FINALIZED",
                    format!("invoice {id} is not finalized; only open invoices can be voided"),
                ));
            }
            // Likewise for a concurrent void the ledger refused.
            Status::Open => return Err(refused_meanwhile(&invoice, "void")),
        };
        Ok(done)
    }

    /// ReverseCredits, then `voiding → void`.
    pub(crate) async fn complete_void(
        &self,
        account: &str,
        invoice: Invoice,
    ) -> Result<Invoice, InvoicingError> {
        if invoice.chargeable_lines().next().is_some()
            && let Err(error) = self.upstream.reverse_credits(account, &invoice.id).await
        {
            return Err(self.step_failed(account, &invoice, error).await);
        }
        let now = self.clock.now();
        self.store
            .transition(
                account,
                &invoice.id,
                Status::Voiding,
                Status::Void,
                Some(INVOICE_VOIDED),
                now,
            )
            .await?;
        let invoice = self.invoice(account, &invoice.id).await?;
        // An unpaid purchase's credits go with its invoice.
        self.settle_purchase_of(account, &invoice).await;
        Ok(invoice)
    }

    /// Records an out-of-band payment of an open invoice.
    pub async fn mark_paid(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Invoice, InvoicingError> {
        if let Some(replayed) = self.replay(account, key).await? {
            return Ok(replayed);
        }
        let now = self.clock.now();
        self.store
            .transition(
                account,
                id,
                Status::Open,
                Status::Paid,
                Some(INVOICE_PAID),
                now,
            )
            .await?;
        let invoice = self.invoice(account, id).await?;
        if invoice.status != Status::Paid {
            return Err(InvoicingError::conflict(
                "INVOICE_NOT_OPEN",
                format!(
                    "invoice {id} is {}; only open invoices can be marked paid",
                    invoice.status.as_str()
                ),
            ));
        }
        // A purchase's credits become usable. A second MarkInvoicePaid
        // (without request_id) runs this again: the activation is keyed.
        self.settle_purchase_of(account, &invoice).await;
        self.remember(account, key, invoice).await
    }

    /// The upcoming invoice of the subscription's current period with the
    /// usage so far and the credits that would apply. Writes nothing.
    pub async fn preview(
        &self,
        account: &str,
        subscription: &str,
    ) -> Result<Invoice, InvoicingError> {
        let now = self.clock.now();
        let sub = self.subscription(account, subscription).await?;
        if !sub.active {
            return Err(InvoicingError::conflict(
                "SUBSCRIPTION_CANCELED",
                format!("subscription {subscription} is canceled; it has no upcoming invoice"),
            ));
        }
        let ids: Vec<&str> = sub.items.iter().map(|i| i.price.as_str()).collect();
        let prices = self.store.prices(account, &ids).await?;
        let mut invoice = Invoice {
            id: String::new(),
            customer: sub.customer.clone(),
            subscription: sub.id.clone(),
            status: Status::Draft,
            reason: crate::domain::invoice::BillingReason::SubscriptionCycle,
            period_start: sub.period_start,
            period_end: sub.period_end,
            lines: Vec::new(),
            auto_finalize_at: None,
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            created: now,
            step_error: None,
        };
        for item in &sub.items {
            let price = prices
                .iter()
                .find(|p| p.id == item.price)
                .ok_or_else(|| InvoicingError::Corrupt(format!("price {} vanished", item.price)))?;
            let mut line = super::subscriptions::empty_line(price);
            line.id = item.id.clone();
            invoice.lines.push(line);
        }
        self.price_lines(account, &mut invoice, &prices).await?;
        if invoice.chargeable_lines().next().is_some() {
            let upcoming = format!("upcoming_{}", sub.id);
            let pool = self.store.ancestors(account, &invoice.customer).await?;
            let response = self
                .upstream
                .apply_credits(account, &invoice, (&upcoming, &pool), true)
                .await?;
            record_credits(&mut invoice, &response)?;
        }
        // At today's rates: what finalizing now would convert.
        self.set_rates(account, &mut invoice).await?;
        invoice.convert()?;
        Ok(invoice)
    }

    /// Puts each pricing unit's current rate on the invoice's lines in it
    /// (one ledger read per unit; lines in money or in a unit without a
    /// rate get none).
    pub(super) async fn set_rates(
        &self,
        account: &str,
        invoice: &mut Invoice,
    ) -> Result<(), InvoicingError> {
        let units: Vec<String> = invoice
            .pricing_units()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for unit in units {
            let (_, rate) = self.upstream.pricing_unit(account, &unit).await?;
            for line in &mut invoice.lines {
                if matches!(&line.asset, billing_money::Asset::PricingUnit { id, .. } if *id == unit)
                {
                    line.conversion = rate.map(|rate| LineConversion {
                        rate,
                        amount_due: None,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Invoicing {
    /// Records a failed attempt at completing `invoice` and hands the error
    /// back. A transient failure (the peer unreachable, slow or failing on
    /// its side) leaves the invoice mid-saga with a backoff after which the
    /// recovery worker tries again: the ledger is idempotent on the invoice.
    /// A refusal (the peer answered that this request, or our key, is
    /// wrong) is not retried: nothing was applied or reversed, so the
    /// invoice goes back to `draft` (or `open`) with the error on it and an
    /// `invoice.finalization_failed` (`invoice.void_failed`) event, and
    /// waits for FinalizeInvoice (VoidInvoice) to be called again.
    async fn step_failed(
        &self,
        account: &str,
        invoice: &Invoice,
        error: InvoicingError,
    ) -> InvoicingError {
        let (code, message, retried) = match &error {
            InvoicingError::Unavailable { code, detail, .. } => (code.name(), detail.clone(), true),
            InvoicingError::Upstream { status, .. } => {
                (status.code.name(), status.message.clone(), false)
            }
            other => ("INTERNAL".to_owned(), other.to_string(), true),
        };
        let voiding = invoice.status == Status::Voiding;
        let saga = if voiding { "void" } else { "finalize" };
        let attempts = invoice.step_error.as_ref().map_or(0, |e| e.attempts) + 1;
        let now = self.clock.now();
        let step_error = StepError {
            code,
            message,
            failed_at: now,
            attempts,
            next_attempt_at: retried.then(|| now + retry_delay(attempts)),
        };
        tracing::warn!(
            invoice = %invoice.id,
            saga,
            code = %step_error.code,
            attempts,
            retried,
            next_attempt_at = ?step_error.next_attempt_at,
            "saga step failed: {error}"
        );
        self.count_step_failure(saga, &step_error.code);
        let recorded = if retried {
            self.store
                .record_step_error(account, &invoice.id, invoice.status, &step_error)
                .await
        } else {
            let (back, event) = if voiding {
                (Status::Open, INVOICE_VOID_FAILED)
            } else {
                (Status::Draft, INVOICE_FINALIZATION_FAILED)
            };
            self.store
                .return_refused(
                    account,
                    &invoice.id,
                    (invoice.status, back),
                    &step_error,
                    event,
                )
                .await
                .map(|_| ())
        };
        if let Err(record) = recorded {
            tracing::warn!(invoice = %invoice.id, "could not record the failed attempt: {record}");
        }
        saga_pending(error, &invoice.id)
    }
}

/// A concurrent attempt at the same saga was refused by the ledger and put
/// the invoice back (draft or open) while this call waited: the refusal is
/// this call's answer too (calling again tries again).
fn refused_meanwhile(invoice: &Invoice, saga: &str) -> InvoicingError {
    let why = invoice.step_error.as_ref().map_or_else(
        || "the ledger refused it".to_owned(),
        |e| format!("the ledger refused it: {} {}", e.code, e.message),
    );
    InvoicingError::conflict(
        "LEDGER_REFUSED",
        format!(
            "a concurrent {saga} of invoice {} was refused and the invoice is {} again; {why}",
            invoice.id,
            invoice.status.as_str()
        ),
    )
}

/// An unreachable peer during steps 2–3: the saga state is saved.
fn saga_pending(error: InvoicingError, invoice: &str) -> InvoicingError {
    match error {
        InvoicingError::Unavailable {
            service,
            code,
            detail,
            ..
        } => InvoicingError::Unavailable {
            service,
            code,
            detail,
            invoice: Some(invoice.to_owned()),
        },
        other => other,
    }
}

/// Copies the ledger's per-line credits and applications onto the lines.
fn record_credits(invoice: &mut Invoice, credits: &[LineCredits]) -> Result<(), InvoicingError> {
    for line in &mut invoice.lines {
        line.credits_applied = 0;
        line.applications.clear();
        if let Some(credits) = credits.iter().find(|l| l.invoice_line_item == line.id) {
            line.credits_applied = credits.credits_applied;
            line.applications.clone_from(&credits.applications);
        }
        if line.credits_applied > line.amount {
            return Err(InvoicingError::Corrupt(format!(
                "ledger applied more than line {} is worth",
                line.id
            )));
        }
    }
    Ok(())
}
