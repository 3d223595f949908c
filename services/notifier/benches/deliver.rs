//! Notifier throughput: events per second from a service's feed to a local
//! HTTP receiver, signed, on PostgreSQL and SQLite.
//!
//! `cargo bench -p notifier --bench deliver` (or `just bench-notifier`).
//! A ledger holds `BENCH_EVENTS` grant events (default 5,000) written while
//! the notifier was stopped; the measured run starts the notifier and ends
//! when the receiver has every event: following the feed, storing the
//! events and their deliveries, claiming, signing, POSTing and recording
//! each. Same-run baseline: the same number of plain POSTs to the same
//! receiver with the same concurrency (what loopback and the receiver take
//! without the notifier).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_arithmetic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::webhooks::v1 as pb;
use billing_proto::webhooks::v1::webhook_service_client::WebhookServiceClient;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_testkit::{Backend, TestDatabase};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const KEY: &str = "sk_bench_notifier";
const INTERNAL: &str = "sk_bench_internal";
const CONCURRENCY: usize = 32;

fn keys() -> ApiKeys {
    let mut keys = ApiKeys::default();
    keys.insert_plain(KEY, "acct_bench", &[]);
    keys.insert_plain(INTERNAL, "_notifier", &[Scope::Internal]);
    keys
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

struct Running(oneshot::Sender<()>, tokio::task::JoinHandle<()>);

impl Running {
    async fn stop(self) {
        let _ = self.0.send(());
        self.1.await.unwrap();
    }
}

async fn start_notifier(db: &TestDatabase, ledger: SocketAddr) -> (SocketAddr, Running) {
    let sources = vec![notifier::config::Source {
        name: "ledger",
        url: format!("http://{ledger}"),
    }];
    let mut config = notifier::Config::new(db.url(), "127.0.0.1:0".parse().unwrap(), sources);
    config.service.api_keys = keys();
    config.internal_api_key = INTERNAL.into();
    config.accounts = vec!["acct_bench".into()];
    config.allow_insecure_urls = true;
    config.allow_private_urls = true;
    config.delivery_concurrency = CONCURRENCY;
    let app = notifier::App::build(config, Clock::system()).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, Running(stop, task))
}

async fn run(backend: Backend, events: usize) {
    let Some(ledger_db) = backend.database().await else {
        return;
    };
    let notifier_db = backend.database().await.unwrap();
    let mut config = credit_ledger::Config::new(ledger_db.url(), "127.0.0.1:0".parse().unwrap());
    config.service.api_keys = keys();
    let ledger = credit_ledger::App::build(config, Clock::system())
        .await
        .unwrap();
    let ledger_addr = ledger.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let ledger_task = tokio::spawn(async move {
        ledger
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let ledger_server = Running(stop, ledger_task);
    let (receiver, url, _task) = billing_testkit::webhook::Receiver::start().await;

    // The endpoint, then the events while the notifier is stopped.
    let (addr, first) = start_notifier(&notifier_db, ledger_addr).await;
    WebhookServiceClient::new(channel(addr).await)
        .create_webhook_endpoint(billing_testkit::authed(
            KEY,
            pb::CreateWebhookEndpointRequest {
                url: url.clone(),
                enabled_events: vec!["credit_balance.created".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    first.stop().await;
    let ledger_client = LedgerServiceClient::new(channel(ledger_addr).await);
    let writers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let mut client = ledger_client.clone();
            tokio::spawn(async move {
                for n in (w..events).step_by(CONCURRENCY) {
                    let request = billing_testkit::fixtures::grant_request(
                        &format!("cus_bench_{}", n % 500),
                        "bench",
                        100,
                    );
                    client
                        .create_credit_grant(billing_testkit::authed(KEY, request))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    // Measured: from the notifier's start to the last delivery.
    let started = Instant::now();
    let (_, second) = start_notifier(&notifier_db, ledger_addr).await;
    while receiver.hits.lock().unwrap().len() < events {
        assert!(started.elapsed() < Duration::from_secs(600), "stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    second.stop().await;

    // Baseline: plain POSTs of a webhook's size, same concurrency.
    let client = reqwest::Client::builder().build().unwrap();
    let body = "x".repeat(700);
    let baseline_started = Instant::now();
    let posters: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                for n in (w..events).step_by(CONCURRENCY) {
                    client
                        .post(&url)
                        .header("webhook-id", format!("baseline_{n}"))
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for poster in posters {
        poster.await.unwrap();
    }
    let baseline = baseline_started.elapsed();
    println!(
        "{backend:?}: {events} events delivered in {:.2} s = {:.0} events/s; \
         baseline plain POSTs: {:.0}/s (the notifier at {:.0} % of it)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        events as f64 / baseline.as_secs_f64(),
        100.0 * baseline.as_secs_f64() / took.as_secs_f64()
    );
    ledger_server.stop().await;
    ledger_db.drop_database().await;
    notifier_db.drop_database().await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events = billing_testkit::bench::setting("BENCH_EVENTS", 5_000);
    run(Backend::Postgres, events).await;
    run(Backend::Sqlite, events).await;
}
