//! The JetStream sink against the real nats-server: every event is
//! published once, and a republish after a crash (the event published but
//! not yet marked) is dropped by JetStream's `Nats-Msg-Id` deduplication.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use billing_proto::events::v1 as ev;
use billing_testkit::{Backend, Harness};
use common::*;
use futures_util::StreamExt;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A JetStream context, or None (after a skip line; a failure in CI) when
/// no server answers.
async fn jetstream() -> Option<jetstream::Context> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(jetstream::new(client)),
        Err(error) => {
            assert!(
                !billing_db::testing::in_ci(),
                "CI is set but no nats-server answers at {}: {error}",
                nats_url()
            );
            billing_db::testing::skip(&format!("nats-server at {}: {error}", nats_url()));
            None
        }
    }
}

/// How many times each of `ids` is in the stream after `after` (sequence).
async fn copies(js: &jetstream::Context, after: u64, ids: &[String]) -> HashMap<String, usize> {
    let stream = js.get_stream(notifier::jobs::sink::STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: "billing.events.acct_a.>".into(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut counts: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        if let Some(count) = counts.get_mut(&id) {
            *count += 1;
        }
    }
    counts
}

async fn unpublished(t: &TestNotifier) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE published_us IS NULL")
        .fetch_one(t.notifier.notifier.store().db().pool())
        .await
        .unwrap()
}

async fn wait_published(t: &TestNotifier, received: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
            .fetch_one(t.notifier.notifier.store().db().pool())
            .await
            .unwrap();
        if total >= received && unpublished(t).await == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the sink never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_event_reaches_jetstream_once(backend: Backend) {
    let Some(js) = jetstream().await else { return };
    let Some(t) = TestNotifier::start_with(backend, |config| {
        config.nats_url = Some(nats_url());
    })
    .await
    else {
        return;
    };
    // Where the stream stands now (the sink creates it when missing).
    let after = loop {
        if let Ok(mut stream) = js.get_stream(notifier::jobs::sink::STREAM).await {
            break stream.info().await.unwrap().state.last_sequence;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for i in 0..20 {
        t.grant(&format!("cus_nats_{i}"), 100).await;
    }
    let ids: Vec<String> = t
        .ledger_events()
        .await
        .into_iter()
        .map(|e: ev::Event| e.id)
        .collect();
    assert_eq!(ids.len(), 20);
    wait_published(&t, 20).await;
    let counts = copies(&js, after, &ids).await;
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");

    // A crash after publishing, before recording it: everything is
    // published again, and JetStream keeps one copy of each.
    sqlx::query("UPDATE inbox SET published_us = NULL")
        .execute(t.notifier.notifier.store().db().pool())
        .await
        .unwrap();
    wait_published(&t, 20).await;
    let counts = copies(&js, after, &ids).await;
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_jetstream_once_on_sqlite() {
    every_event_reaches_jetstream_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_jetstream_once_on_postgres() {
    every_event_reaches_jetstream_once(Backend::Postgres).await;
}
