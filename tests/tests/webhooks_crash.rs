//! A crash never loses a pending delivery: kill -9 the notifier process
//! while deliveries are pending and the receiver is down; more events
//! happen while it is dead; after a restart on the same database every
//! event arrives at least once, and the receiver's dedupe by `webhook-id`
//! sees each exactly once. Real processes, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use billing_e2e::scenario::usd;
use billing_e2e::*;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::webhooks::v1 as pb;
use billing_proto::webhooks::v1::webhook_service_client::WebhookServiceClient;
use billing_testkit::Backend;

fn grant(n: usize) -> ledger::CreateCreditGrantRequest {
    ledger::CreateCreditGrantRequest {
        customer: format!("cus_hook_{n}"),
        amount: usd(100),
        applicability_config: Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: vec![],
            }),
        }),
        ..Default::default()
    }
}

async fn pending(channel: tonic::transport::Channel) -> usize {
    WebhookServiceClient::new(channel)
        .list_webhook_deliveries(authed(pb::ListWebhookDeliveriesRequest {
            status: pb::WebhookDeliveryStatus::Pending.into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .webhook_deliveries
        .iter()
        .filter(|d| d.attempts >= 1)
        .count()
}

async fn check(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    let Some(notifier_db) = backend.database().await else {
        return;
    };
    let ledger_process = ledger(&dbs.ledger, "127.0.0.1:0");
    let mut ledger_client = LedgerServiceClient::new(ledger_process.channel());
    // Retries every 200 ms for long enough that nothing fails for good.
    let schedule = vec!["200ms"; 20].join(",");
    let env = [("NOTIFIER_RETRY_SCHEDULE", schedule)];
    let first = notifier_with(&notifier_db, ledger_process.addr, &env);

    // The receiver's port, with nothing listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    hook_grants_created(first.channel(), port).await;
    for n in 0..30 {
        ledger_client
            .create_credit_grant(authed(grant(n)))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending(first.channel()).await < 30 {
        assert!(
            Instant::now() < deadline,
            "the deliveries never started failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();

    // More events while the notifier is dead; then the receiver comes up
    // and the notifier restarts on the same database.
    for n in 30..40 {
        ledger_client
            .create_credit_grant(authed(grant(n)))
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (receiver, _, receiver_task) = billing_testkit::webhook::Receiver::start_on(listener);
    let second = notifier_with(&notifier_db, ledger_process.addr, &env);

    let expected: BTreeSet<String> =
        events_of(ledger_process.channel(), &["credit_balance.created"])
            .await
            .into_iter()
            .map(|e| e.id)
            .collect();
    assert_eq!(expected.len(), 40);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<String> = receiver.distinct_ids().into_iter().collect();
        if seen == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events delivered; unexpected: {:?}",
            seen.intersection(&expected).count(),
            expected.len(),
            seen.difference(&expected).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = receiver.hits().len();
    eprintln!("{} events, {total} deliveries received", expected.len());
    receiver_task.abort();
    drop(second);
    drop(ledger_process);
    notifier_db.drop_database().await;
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_kill_9_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_kill_9_on_postgres() {
    check(Backend::Postgres).await;
}
