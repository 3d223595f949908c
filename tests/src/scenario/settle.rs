//! Driving an invoice through a saga step while processes die under it.

use billing_proto::invoicing::v1 as inv;

use super::{Clients, finalize};
use crate::authed;

/// What [`until_settled`] drives an invoice to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// FinalizeInvoice: open (or paid, when credits covered it).
    Finalize,
    /// VoidInvoice: void.
    Void,
    /// MarkInvoicePaid: paid.
    MarkPaid,
}

/// Calls FinalizeInvoice, VoidInvoice or MarkInvoicePaid until the invoice
/// has settled in the step's state: a call cut by a kill (of invoicing or
/// of the ledger under it) leaves the invoice in between, and the next
/// call completes it. Returns the invoice and the calls it took.
pub async fn until_settled(c: &mut Clients, id: &str, step: Step) -> (inv::Invoice, u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut calls = 0;
    loop {
        calls += 1;
        let answer = match step {
            Step::Finalize => finalize(c, id).await,
            Step::Void => c
                .invoicing
                .void_invoice(authed(inv::VoidInvoiceRequest {
                    id: id.into(),
                    ..Default::default()
                }))
                .await
                .map(|r| r.into_inner().invoice.unwrap()),
            Step::MarkPaid => c
                .invoicing
                .mark_invoice_paid(authed(inv::MarkInvoicePaidRequest {
                    id: id.into(),
                    ..Default::default()
                }))
                .await
                .map(|r| r.into_inner().invoice.unwrap()),
        };
        // A repeated call may be refused (the step is done): read it.
        let current = match &answer {
            Ok(current) => Some(current.clone()),
            Err(_) => c
                .invoicing
                .get_invoice(authed(inv::GetInvoiceRequest { id: id.into() }))
                .await
                .ok()
                .and_then(|r| r.into_inner().invoice),
        };
        if let Some(current) = &current {
            let settled = match step {
                Step::Finalize => matches!(
                    current.status(),
                    inv::InvoiceStatus::Open | inv::InvoiceStatus::Paid
                ),
                Step::Void => current.status() == inv::InvoiceStatus::Void,
                Step::MarkPaid => current.status() == inv::InvoiceStatus::Paid,
            };
            if settled {
                return (current.clone(), calls);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} did not settle: {answer:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
