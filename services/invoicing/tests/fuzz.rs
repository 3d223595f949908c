//! Hostile input against every RPC of every service, on both backends.
//!
//! A seeded generator (`billing_testkit::fuzz`) sends each RPC encodings of
//! its request with surprising values, byte-mutated encodings and random
//! bytes, through the real gRPC servers. It fails on any INTERNAL or
//! UNKNOWN status (those are for our own faults, never reachable by input),
//! any error message over 1 KiB, any StreamEvents that ends OK without
//! acknowledging every batch, and any invariant violation AuditLedger finds
//! afterwards. `FUZZ_CALLS` (per RPC, default 40) and `FUZZ_SEED` make a
//! longer run: `just fuzz`.
//!
//! Inside `cargo test` it asserts no timings (a house rule: a loaded CI
//! machine is not a benchmark); the slowest call is printed. `just fuzz`
//! sets `FUZZ_MAX_MS=1000`, and then any answer slower than that fails the
//! run, naming the RPC and the seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use billing_proto::ledger::v1 as ledger;
use billing_testkit::fuzz::{Rng, Schema};
use common::*;
use tonic::Code;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn hostile_input_never_hurts(t: &Suite) {
    let schema = Schema::load();
    let calls = env_number("FUZZ_CALLS", 40);
    let seed = env_number("FUZZ_SEED", 20_261_129);
    let mut rng = Rng::new(seed);
    let mut slowest = (Duration::ZERO, "");
    let max = std::env::var("FUZZ_MAX_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let mut sent = 0_u64;
    assert!(schema.rpcs.len() > 40, "found {} RPCs", schema.rpcs.len());
    for rpc in &schema.rpcs {
        let Some((_, channel)) = t
            .channels
            .iter()
            .find(|(p, _)| rpc.path[1..].starts_with(p))
        else {
            // The test clock is not served here.
            continue;
        };
        for call in 0..calls {
            let key = if call % 2 == 0 { KEY_A } else { KEY_A_APPLY };
            let started = Instant::now();
            if rpc.server_streaming {
                let body = schema.body(rpc, &mut rng);
                if let Err(status) = billing_testkit::raw::first_of_stream(
                    channel.clone(),
                    rpc.path,
                    key,
                    body,
                    Duration::from_millis(100),
                )
                .await
                {
                    billing_testkit::fuzz::check_answer(rpc.path, seed, &status);
                }
            } else if rpc.client_streaming {
                let batches: Vec<Vec<u8>> = (0..1 + rng.below(3))
                    .map(|_| schema.body(rpc, &mut rng))
                    .collect();
                let count = batches.len();
                let (acks, ended) =
                    billing_testkit::raw::stream(channel.clone(), rpc.path, key, batches).await;
                match ended {
                    None => {
                        assert_eq!(acks.len(), count, "{} ended OK with lost batches", rpc.path)
                    }
                    Some(status) => billing_testkit::fuzz::check_answer(rpc.path, seed, &status),
                }
            } else {
                let body = schema.body(rpc, &mut rng);
                if let Err(status) =
                    billing_testkit::raw::call(channel.clone(), rpc.path, key, body.clone()).await
                {
                    if matches!(status.code(), Code::Internal | Code::Unknown) {
                        eprintln!("body of the failing call: {body:?}");
                    }
                    billing_testkit::fuzz::check_answer(rpc.path, seed, &status);
                }
            }
            sent += 1;
            let took = started.elapsed();
            if let Some(max) = max {
                assert!(
                    took <= max,
                    "seed {seed}: {} took {took:?}, more than FUZZ_MAX_MS",
                    rpc.path
                );
            }
            if took > slowest.0 {
                slowest = (took, rpc.path);
            }
        }
    }
    println!(
        "fuzz seed {seed}: {sent} calls, slowest {:?} on {}",
        slowest.0, slowest.1
    );

    let audit = t
        .ledger
        .clone()
        .audit_ledger(authed(KEY_A, ledger::AuditLedgerRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit.violations.is_empty(),
        "seed {seed}: {:?}",
        audit.violations
    );
}

backends!(hostile_input_never_hurts);
