//! Driving an invoice through a saga step while processes die under it.

use billing_proto::invoicing::v1 as inv;
use billing_proto::ledger::v1 as ledger;
use billing_testkit::fixtures::value_of;

use super::{Clients, applied, finalize};
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

/// Finalizes every invoice, `concurrency` at a time, each until settled,
/// the calls spread over `clients` (one per invoicing replica).
pub async fn finalize_all(
    concurrency: usize,
    clients: &[Clients],
    invoices: &[(String, String)],
) -> Vec<inv::Invoice> {
    let mut settled = Vec::new();
    for chunk in invoices.chunks(concurrency.max(1)) {
        let calls = chunk.iter().enumerate().map(|(i, (_, id))| {
            let mut c = clients[i % clients.len()].clone();
            let id = id.clone();
            tokio::spawn(async move { until_settled(&mut c, &id, Step::Finalize).await.0 })
        });
        for call in calls.collect::<Vec<_>>() {
            settled.push(call.await.unwrap());
        }
    }
    settled
}

/// Each settled invoice's credits are the ledger's applications for it,
/// once, and the ledger's audit is clean.
pub async fn credits_match(
    c: &mut Clients,
    invoices: &[(String, String)],
    settled: &[inv::Invoice],
) {
    for ((customer, id), invoice) in invoices.iter().zip(settled) {
        let on_invoice: i64 = invoice
            .lines
            .iter()
            .map(|l| value_of(&l.credits_applied))
            .sum();
        let debits: Vec<i64> = applied(c, customer)
            .await
            .into_iter()
            .filter(|(_, on, _)| on == id)
            .map(|(_, _, amount)| amount)
            .collect();
        assert_eq!(
            debits.iter().sum::<i64>(),
            on_invoice,
            "{id}: the ledger's applications {debits:?}"
        );
        let applications: usize = invoice
            .lines
            .iter()
            .map(|l| l.credit_applications.len())
            .sum();
        assert_eq!(debits.len(), applications, "{id}: applied once");
    }
    let audit = c
        .ledger
        .audit_ledger(authed(ledger::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
}
