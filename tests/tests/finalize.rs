//! The whole flow across the three binaries, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_testkit::Backend;

async fn flow(backend: Backend) {
    let Some((dbs, ledger_process, meter_process)) = upstreams(backend).await else {
        return;
    };
    let invoicing_process = invoicing(
        &dbs.invoicing,
        ledger_process.addr,
        meter_process.addr,
        None,
    );
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        invoicing_process.channel(),
    );

    let billed = setup(&mut c, "flow").await;
    let draft = close_first_period(&mut c, &billed).await;
    assert_eq!(draft.status(), inv::InvoiceStatus::Draft);
    let lines: Vec<(String, String, i64)> = draft
        .lines
        .iter()
        .map(|l| (l.price.clone(), l.quantity.clone(), value_of(&l.amount)))
        .collect();
    assert_eq!(
        lines,
        vec![
            (billed.prices[0].clone(), "1000".into(), 1_000),
            (billed.prices[1].clone(), "400".into(), 1_000),
            (billed.prices[2].clone(), "150".into(), 1_500),
        ]
    );

    let open = finalize(&mut c, &draft.id).await.unwrap();
    assert_eq!(open.status(), inv::InvoiceStatus::Open);
    let total = &open.totals[0];
    assert_eq!(value_of(&total.subtotal), 3_500);
    assert_eq!(value_of(&total.total_credits_applied), 3_000);
    assert_eq!(value_of(&total.amount_due), 500);
    // Lines are paid in order; the promotional grant (priority 10) first.
    let applications: Vec<(String, i64)> = open
        .lines
        .iter()
        .flat_map(|l| {
            l.credit_applications
                .iter()
                .map(|a| (a.credit_grant.clone(), value_of(&a.amount)))
        })
        .collect();
    assert_eq!(
        applications,
        vec![
            (billed.promo.clone(), 1_000),
            (billed.paid.clone(), 1_000),
            (billed.paid.clone(), 1_000),
        ]
    );
    assert_eq!(value_of(&open.lines[2].amount_due), 500);
    assert_eq!(available(&mut c, &billed.customer).await, 0);
    let debits = applied(&mut c, &billed.customer).await;
    assert_eq!(debits.len(), 3);
    assert!(debits.iter().all(|(_, invoice, _)| invoice == &draft.id));
    assert_eq!(debits.iter().map(|(_, _, v)| v).sum::<i64>(), 3_000);

    // The business counters and per-RPC metrics of all three services.
    let ledger_metrics = scrape(&ledger_process).await;
    assert!(
        ledger_metrics.contains("ledger_credits_applied_total{asset=\"usd\"} 3000"),
        "{ledger_metrics}"
    );
    let meter_metrics = scrape(&meter_process).await;
    assert!(
        meter_metrics.contains("meter_events_total{outcome=\"accepted\"}"),
        "{meter_metrics}"
    );
    let invoicing_metrics = scrape(&invoicing_process).await;
    for expected in [
        "invoicing_finalizes_total{status=\"open\"} 1",
        "grpc_server_handled_total{grpc_service=\"billing.invoicing.v1.InvoicingService\",grpc_method=\"FinalizeInvoice\"",
    ] {
        assert!(
            invoicing_metrics.contains(expected),
            "{expected}: {invoicing_metrics}"
        );
    }

    let void = c
        .invoicing
        .void_invoice(authed(inv::VoidInvoiceRequest {
            id: draft.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .invoice
        .unwrap();
    assert_eq!(void.status(), inv::InvoiceStatus::Void);
    assert_eq!(
        available(&mut c, &billed.customer).await,
        3_000,
        "the credits are back"
    );

    drop(invoicing_process);
    drop(meter_process);
    drop(ledger_process);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flow() {
    flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flow() {
    flow(Backend::Postgres).await;
}
