//! The credit lifecycle under the simulator (issue 18): auto top-ups and
//! purchases, recurring allocations and rollover, through real processes
//! while invoicing is killed with SIGKILL at random moments; every grant,
//! balance, purchase and invoice credit compared with the independent
//! model (`billing_e2e::sim::lifecycle`, docs/testing.md). Both backends.
//! `SIM_SEED`, `SIM_LIFECYCLE_OPS` and `SIM_PERIODS` make a longer run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use billing_e2e::sim::lifecycle::{Report, allocations, top_ups};
use billing_testkit::Backend;

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(what: &str, backend: Backend, seed: u64, started: Instant, report: &Report) {
    println!(
        "{what} on {backend:?}: seed {seed}: {} operations {:?}, {} kills of invoicing, {} calls sent again, in {:.1} s: 0 violations",
        report.operations,
        report.kinds,
        report.kills,
        report.retries,
        started.elapsed().as_secs_f64()
    );
}

async fn top_ups_under_kills(backend: Backend) {
    let seed = number("SIM_SEED", 20_261_129);
    let started = Instant::now();
    let operations = number("SIM_LIFECYCLE_OPS", 150);
    if let Some(report) = top_ups::run(backend, seed, operations).await {
        print("top-ups and purchases", backend, seed, started, &report);
    }
}

async fn allocations_under_kills(backend: Backend) {
    let seed = number("SIM_SEED", 20_261_129);
    let started = Instant::now();
    let periods = u32::try_from(number("SIM_PERIODS", 12)).unwrap();
    if let Some(report) = allocations::run(backend, seed, periods).await {
        print("allocations", backend, seed, started, &report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_ups_and_purchases_agree_with_the_model_on_sqlite() {
    top_ups_under_kills(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_ups_and_purchases_agree_with_the_model_on_postgres() {
    top_ups_under_kills(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_and_rollover_agree_with_the_model_on_sqlite() {
    allocations_under_kills(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_and_rollover_agree_with_the_model_on_postgres() {
    allocations_under_kills(Backend::Postgres).await;
}
