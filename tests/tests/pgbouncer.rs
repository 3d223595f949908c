//! Every service through PgBouncer in transaction mode (issue 19;
//! docs/operations.md): credit-ledger, meter-ingest, invoicing and the
//! notifier each reach PostgreSQL only through the pooler
//! (`DATABASE_URL`), their migrations go straight to PostgreSQL
//! (`DATABASE_MIGRATION_URL`). A finalize load settles every invoice with
//! its credits applied once and a clean audit, and the notifier delivers
//! every grant's event to a webhook receiver.
//!
//! The pooler is `.ci/pgbouncer`: PgBouncer 1.24.1 (Debian 13's source;
//! Debian 12's 1.18 keeps no prepared statements in transaction mode) on
//! `TEST_PGBOUNCER_URL` (default `postgres://postgres@127.0.0.1:6432/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_testkit::Backend;
use billing_testkit::TestDatabase;

/// The pooler's URL without a database name, when it answers.
async fn pooler() -> Option<String> {
    let base = std::env::var("TEST_PGBOUNCER_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:6432/".to_owned());
    let probe = format!("{base}postgres");
    match billing_db::Db::connect(&probe, &billing_db::DbOptions::default()).await {
        Ok(db) => {
            db.close().await;
            Some(base)
        }
        Err(error) => {
            let message = format!("PgBouncer at {base} ({error}); start it with .ci/pgbouncer");
            assert!(!billing_db::testing::in_ci(), "{message}");
            billing_db::testing::skip(&message);
            None
        }
    }
}

/// A service's environment: its database through the pooler, its
/// migrations past it.
fn through(pooler: &str, db: &TestDatabase) -> Vec<(&'static str, String)> {
    let name = db.url().rsplit('/').next().unwrap();
    vec![
        ("DATABASE_URL", format!("{pooler}{name}")),
        ("DATABASE_MIGRATION_URL", db.url().to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_works_through_pgbouncer_in_transaction_mode() {
    let Some(dbs) = Databases::new(Backend::Postgres).await else {
        return;
    };
    let Some(notifier_db) = Backend::Postgres.database().await else {
        return;
    };
    let Some(pooler) = pooler().await else {
        return;
    };
    let ledger_process = ledger_with(&dbs.ledger, "127.0.0.1:0", &through(&pooler, &dbs.ledger));
    let meter_process = meter_with(&dbs.meter, &through(&pooler, &dbs.meter));
    let invoicing_process = invoicing_with(
        &dbs.invoicing,
        ledger_process.addr,
        meter_process.addr,
        None,
        &through(&pooler, &dbs.invoicing),
    );
    let notifier_process = notifier_with(
        &notifier_db,
        ledger_process.addr,
        &through(&pooler, &notifier_db),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (receiver, _, receiver_task) = billing_testkit::webhook::Receiver::start_on(listener);
    hook_grants_created(notifier_process.channel(), port).await;

    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        invoicing_process.channel(),
    );
    let (_, price) = metered_price(&mut c, "pooled_calls", "3").await;
    let invoices = final_drafts(&mut c, (&price, "pooled_calls"), "Pooled", 60, 900).await;
    let settled = finalize_all(8, std::slice::from_ref(&c), &invoices).await;
    assert!(
        settled
            .iter()
            .all(|i| i.status() != billing_proto::invoicing::v1::InvoiceStatus::Finalizing)
    );
    credits_match(&mut c, &invoices, &settled).await;

    // The notifier follows the ledger's feed and delivers every grant's event.
    let expected: BTreeSet<String> =
        events_of(ledger_process.channel(), &["credit_balance.created"])
            .await
            .into_iter()
            .map(|e| e.id)
            .collect();
    assert_eq!(expected.len(), 6, "one grant per ten invoices");
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.distinct_ids().into_iter().collect::<BTreeSet<_>>() != expected {
        assert!(Instant::now() < deadline, "not every event was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver_task.abort();
    drop((
        notifier_process,
        invoicing_process,
        meter_process,
        ledger_process,
    ));
    notifier_db.drop_database().await;
    dbs.drop_all().await;
}
