//! The ledger's event feed survives the *service*: kill -9 the ledger
//! process while grants are being written and a consumer is watching;
//! after a restart on the same database (same port), the consumer resumes
//! from its last cursor and, in the end, has seen every acknowledged
//! grant's event exactly once. Real processes, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use billing_e2e::scenario::usd;
use billing_e2e::*;
use billing_proto::events::v1 as ev;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_testkit::Backend;

fn grant(n: usize) -> ledger::CreateCreditGrantRequest {
    ledger::CreateCreditGrantRequest {
        request_id: format!("feed-{n}"),
        customer: format!("cus_feed_{}", n % 7),
        name: "feed".into(),
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

/// Reads the feed from `cursor` until `want` grant ids are in `seen` or
/// the stream breaks; returns the last cursor.
async fn follow(
    channel: tonic::transport::Channel,
    mut cursor: String,
    seen: &mut Vec<ev::Event>,
    until: impl Fn(&[ev::Event]) -> bool,
) -> String {
    let mut feed = EventServiceClient::new(channel);
    let Ok(response) = feed
        .watch_events(authed(ev::WatchEventsRequest {
            after_cursor: cursor.clone(),
            types: vec!["credit_balance.created".into()],
            until_caught_up: false,
        }))
        .await
    else {
        return cursor;
    };
    let mut stream = response.into_inner();
    while !until(seen) {
        match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
            Ok(Ok(Some(batch))) => {
                for event in batch.events {
                    cursor = event.cursor.clone();
                    seen.push(event);
                }
            }
            _ => break,
        }
    }
    cursor
}

async fn check(backend: Backend) {
    let Some(dbs) = Databases::new(backend).await else {
        return;
    };
    let first = ledger(&dbs.ledger, "127.0.0.1:0");
    let addr = first.addr;
    let mut client = LedgerServiceClient::new(first.channel());

    // Some grants, and a consumer that has read them.
    for n in 0..20 {
        client.create_credit_grant(authed(grant(n))).await.unwrap();
    }
    let mut seen = Vec::new();
    let cursor = follow(first.channel(), String::new(), &mut seen, |s| s.len() >= 20).await;
    assert_eq!(seen.len(), 20);

    // Writers keep going while the process is killed.
    let writer = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 20..400 {
                match client.create_credit_grant(authed(grant(n))).await {
                    Ok(response) => {
                        acknowledged.push(response.into_inner().credit_grant.unwrap().id)
                    }
                    Err(_) => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.kill();
    let acknowledged_before_kill = writer.await.unwrap();
    eprintln!(
        "{} grants acknowledged before the kill",
        acknowledged_before_kill.len()
    );

    // Restart on the same database and port; finish the writes (request ids
    // make the retried ones count once) and resume the consumer.
    let second = ledger(&dbs.ledger, &addr.to_string());
    let mut client = LedgerServiceClient::new(second.channel());
    let mut all = BTreeSet::new();
    for n in 0..400 {
        let grant = client
            .create_credit_grant(authed(grant(n)))
            .await
            .unwrap()
            .into_inner()
            .credit_grant
            .unwrap();
        all.insert(grant.id);
    }
    assert!(acknowledged_before_kill.iter().all(|id| all.contains(id)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cursor = cursor;
    while seen.len() < all.len() && Instant::now() < deadline {
        cursor = follow(second.channel(), cursor, &mut seen, |s| s.len() >= 400).await;
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|e| match &e.data {
            Some(ev::event::Data::CreditGrant(g)) => g.id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event was delivered twice");
    assert_eq!(unique, all, "every grant's creation, once");
    drop(second);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_after_the_ledger_is_killed_on_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_after_the_ledger_is_killed_on_postgres() {
    check(Backend::Postgres).await;
}

/// SIGTERM while a consumer is watching: the watch ends at once with
/// UNAVAILABLE (resume from your cursor) instead of holding the drain, and
/// the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_the_ledger_shuts_down() {
    let Some(dbs) = Databases::new(Backend::Sqlite).await else {
        return;
    };
    let process = ledger(&dbs.ledger, "127.0.0.1:0");
    let mut feed = EventServiceClient::new(process.channel());
    let mut stream = feed
        .watch_events(authed(ev::WatchEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = stream.message().await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("resume"), "{ended:?}");
    let exit = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    dbs.drop_all().await;
}
