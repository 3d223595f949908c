//! Hostile input against every notifier RPC (WebhookService and its event
//! feed), on both backends: the same seeded generator as
//! `services/invoicing/tests/fuzz.rs`. No input may reach INTERNAL or
//! UNKNOWN, and no error message may pass 1 KiB. `FUZZ_CALLS` and
//! `FUZZ_SEED` as there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use billing_testkit::fuzz::{Rng, Schema};
use common::*;

backends!(hostile_input_never_hurts);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn hostile_input_never_hurts(t: &TestNotifier) {
    let schema = Schema::load();
    let calls = env_number("FUZZ_CALLS", 40);
    let seed = env_number("FUZZ_SEED", 20_261_129);
    let mut rng = Rng::new(seed);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", t.notifier_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // An endpoint and a delivery, so ids in bodies sometimes exist.
    let (endpoint, _) = t.endpoint("http://127.0.0.1:9/hook", &["*"]).await;
    let rpcs: Vec<_> = schema
        .rpcs
        .iter()
        .filter(|rpc| {
            rpc.path.starts_with("/billing.webhooks.") || rpc.path.starts_with("/billing.events.")
        })
        .collect();
    assert!(rpcs.len() >= 11, "found {} RPCs", rpcs.len());
    let mut sent = 0_u64;
    for rpc in rpcs {
        for _ in 0..calls {
            let body = schema.body(rpc, &mut rng);
            let result = if rpc.server_streaming {
                billing_testkit::raw::first_of_stream(
                    channel.clone(),
                    rpc.path,
                    KEY_A,
                    body,
                    Duration::from_millis(100),
                )
                .await
                .map(|_| ())
            } else {
                billing_testkit::raw::call(channel.clone(), rpc.path, KEY_A, body)
                    .await
                    .map(|_| ())
            };
            if let Err(status) = result {
                billing_testkit::fuzz::check_answer(rpc.path, seed, &status);
            }
            sent += 1;
        }
    }
    println!("fuzz seed {seed}: {sent} calls");
    // The endpoint is still there and readable.
    assert_eq!(t.get_endpoint(&endpoint.id).await.id, endpoint.id);
}
