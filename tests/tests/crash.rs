//! Crash safety of the finalize saga with real processes: invoicing killed
//! between ApplyCredits and its own commit, and the ledger down mid-finalize.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_proto::invoicing::v1 as inv;
use billing_testkit::Backend;
use chrono::TimeDelta;

async fn crash(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    let ledger_process = ledger(&dbs.ledger, "127.0.0.1:0");
    let ledger_addr = ledger_process.addr;
    let meter_process = meter(&dbs.meter);
    let crashing = invoicing(
        &dbs.invoicing,
        ledger_addr,
        meter_process.addr,
        Some("after_apply_credits"),
    );
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        crashing.channel(),
    );

    let first = setup(&mut c, "crash").await;
    let second = setup(&mut c, "outage").await;
    let draft = close_first_period(&mut c, &first).await;
    let other_draft = c
        .invoicing
        .list_invoices(authed(inv::ListInvoicesRequest {
            subscription: second.subscription.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .invoices
        .remove(0);

    // 1. Invoicing dies right after the ledger applied the credits.
    let error = finalize(&mut c, &draft.id).await.unwrap_err();
    assert!(
        matches!(
            error.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
        ),
        "{error:?}"
    );
    let status = crashing.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "the failpoint aborted the process");
    assert_eq!(
        applied(&mut c, &first.customer).await.len(),
        3,
        "the ledger committed"
    );

    // Restarted without the failpoint, the recovery worker completes it.
    let restarted = invoicing(&dbs.invoicing, ledger_addr, meter_process.addr, None);
    c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        restarted.channel(),
    );
    let open = recovered(&mut c, &draft.id).await;
    assert_eq!(open.status(), inv::InvoiceStatus::Open);
    assert_eq!(value_of(&open.totals[0].total_credits_applied), 3_000);
    assert_eq!(value_of(&open.totals[0].amount_due), 500);
    assert_eq!(
        finalize(&mut c, &draft.id).await.unwrap(),
        open,
        "a retry changes nothing"
    );
    let debits = applied(&mut c, &first.customer).await;
    assert_eq!(debits.len(), 3, "applied exactly once: {debits:?}");
    assert_eq!(available(&mut c, &first.customer).await, 0);

    // 2. The ledger is down during a finalize.
    ledger_process.kill();
    let error = finalize(&mut c, &other_draft.id).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    assert_eq!(
        invoice(&mut c, &other_draft.id).await.status(),
        inv::InvoiceStatus::Finalizing
    );

    let ledger_back = ledger(&dbs.ledger, &ledger_addr.to_string());
    c.ledger = billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient::new(
        ledger_back.channel(),
    );
    // The failed attempt is on the invoice; the first worker tick after its
    // retry delay (here: moving the test clock) resumes the saga.
    let pending = invoice(&mut c, &other_draft.id).await;
    let step = pending.last_finalization_error.expect("error shown");
    assert_eq!((step.code.as_str(), step.attempts), ("UNAVAILABLE", 1));
    let now = c
        .clock
        .get_test_clock(authed(inv::GetTestClockRequest {}))
        .await
        .unwrap()
        .into_inner()
        .now
        .unwrap();
    let now = billing_server::time::from_proto(&now, "now").unwrap();
    advance(&mut c, now + TimeDelta::seconds(10)).await;
    let open = invoice(&mut c, &other_draft.id).await;
    assert_eq!(open.status(), inv::InvoiceStatus::Open);
    assert_eq!(value_of(&open.totals[0].total_credits_applied), 3_000);
    assert_eq!(
        applied(&mut c, &second.customer).await.len(),
        3,
        "applied exactly once"
    );
    assert_eq!(available(&mut c, &second.customer).await, 0);
    let metrics = scrape(&restarted).await;
    for expected in [
        "invoicing_saga_step_failures_total{saga=\"finalize\",code=\"UNAVAILABLE\"} 1",
        "invoicing_saga_recoveries_total{saga=\"finalize\"} 2",
    ] {
        assert!(metrics.contains(expected), "{expected}: {metrics}");
    }

    drop(restarted);
    drop(meter_process);
    drop(ledger_back);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crash_and_outage() {
    crash(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_and_outage() {
    crash(Backend::Postgres).await;
}
