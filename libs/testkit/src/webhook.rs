//! A webhook receiver on loopback for tests and benchmarks: it records
//! every request (the Standard Webhooks headers and the body) and answers
//! with scripted statuses (200 once the script is empty).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::task::JoinHandle;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body, as received.
    pub body: String,
}

/// A receiver of `POST /hook`.
#[derive(Clone, Default)]
pub struct Receiver {
    /// What it received, in order.
    pub hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses to answer with, in order; 200 once empty.
    pub script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Starts one on a free port; returns it, its URL and its task.
    pub async fn start() -> (Self, String, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener)
    }

    /// Starts one on `listener` (a port chosen earlier).
    pub fn start_on(listener: tokio::net::TcpListener) -> (Self, String, JoinHandle<()>) {
        let receiver = Self::default();
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    state.hits.lock().unwrap().push(Hit {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (receiver, format!("http://{addr}/hook"), task)
    }

    /// The hits so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The distinct `webhook-id`s received so far (a receiver's dedupe).
    pub fn distinct_ids(&self) -> HashSet<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.id.clone())
            .collect()
    }

    /// Waits until `n` hits arrived (at most 30 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} webhooks arrived",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
