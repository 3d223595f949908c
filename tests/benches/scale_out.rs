//! Finalizes per second with 1 or 3 credit-ledger replicas and 1 or 2
//! invoicing replicas (issue 19), real release processes on PostgreSQL,
//! with a same-run `pgbench` (read-write, 16 clients) baseline.
//!
//! Per configuration: fresh databases; `BENCH_INVOICES` (default 400)
//! final draft invoices (a customer per ten subscriptions, each with a
//! grant, usage and a cancel); then 16 clients finalize them, spread
//! round-robin over the invoicing replicas, each of which calls every
//! ledger replica (`LEDGER_URL` with all of them). Prints finalizes/s and
//! each ledger replica's share of ApplyCredits. Then
//! `BENCH_RESUME_INVOICES` (default 1,000) invoices left mid-saga while
//! the ledger was down, resumed by 1 and by 2 invoicing replicas' workers:
//! the time from the first resume to the last (the attempt log) and from
//! the processes' start: once as here (loopback, each worker resuming 16
//! at once, the default), once with the ledger 4 ms away each way (a
//! delaying TCP proxy, `billing_e2e::latency`) and 2 resumes at once per
//! replica, where a replica's own pace is the limit and two replicas
//! should take about half the time. On two cores the point of the
//! first is that throughput holds and the work spreads, not that it
//! multiplies.
//!
//! `just bench-scale-out` (builds the release binaries first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_precision_loss
)]

use std::time::Instant;

use billing_e2e::scenario::*;
use billing_e2e::*;
use billing_testkit::Backend;

const CLIENTS: usize = 16;

async fn apply_calls(process: &Service) -> u64 {
    scrape(process)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains("grpc_method=\"ApplyCredits\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Finalizes/s and each ledger's ApplyCredits with `ledgers` and
/// `invoicings` replicas.
async fn run(ledgers: usize, invoicings: usize, n: usize) -> (f64, Vec<u64>) {
    let dbs = Databases::new(Backend::Postgres).await.unwrap();
    let ledger_processes: Vec<Service> = (0..ledgers)
        .map(|_| ledger(&dbs.ledger, "127.0.0.1:0"))
        .collect();
    let urls: Vec<String> = ledger_processes
        .iter()
        .map(|l| format!("http://{}", l.addr))
        .collect();
    let meter_process = meter(&dbs.meter);
    let replicas: Vec<Service> = (0..invoicings)
        .map(|i| {
            invoicing_with(
                &dbs.invoicing,
                ledger_processes[0].addr,
                meter_process.addr,
                None,
                &[
                    ("LEDGER_URL", urls.join(",")),
                    ("INVOICING_INSTANCE", format!("bench-{i}")),
                ],
            )
        })
        .collect();
    let mut c = Clients::new(
        ledger_processes[0].channel(),
        meter_process.channel(),
        replicas[0].channel(),
    );
    let (_, price) = metered_price(&mut c, "bench_calls", "3").await;
    let invoices: Vec<String> = final_drafts(&mut c, (&price, "bench_calls"), "Bench", n, 100_000)
        .await
        .into_iter()
        .map(|(_, invoice)| invoice)
        .collect();
    let clients: Vec<Clients> = replicas
        .iter()
        .map(|r| {
            Clients::new(
                ledger_processes[0].channel(),
                meter_process.channel(),
                r.channel(),
            )
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let mut c = clients[worker % clients.len()].clone();
        let mine: Vec<String> = invoices
            .iter()
            .skip(worker)
            .step_by(CLIENTS)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            for id in mine {
                finalize(&mut c, &id).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let mut served = Vec::new();
    for process in &ledger_processes {
        served.push(apply_calls(process).await);
    }
    drop(replicas);
    drop(ledger_processes);
    drop(meter_process);
    dbs.drop_all().await;
    (rate, served)
}

/// The seconds from the first resume's start to the last one's end, from
/// the attempt log (`invoice_saga_runs`: the resumes are its `completed`
/// runs; the failed finalizes before them ended in `error`).
async fn resume_window(url: &str) -> f64 {
    let db = billing_db::Db::connect(url, &billing_db::DbOptions::default())
        .await
        .unwrap();
    let (first, last): (i64, i64) = sqlx::query_as(
        "SELECT MIN(started_us), MAX(ended_us) FROM invoice_saga_runs WHERE outcome = 'completed'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    db.close().await;
    (last - first) as f64 / 1e6
}

/// Seconds for `replicas` invoicing processes to resume `n` invoices left
/// mid-saga while the ledger was down (from their start, and the work
/// alone: the attempt log's window), and how many each resumed.
async fn resume(
    replicas: usize,
    n: usize,
    concurrency: usize,
    latency: Option<std::time::Duration>,
) -> (f64, f64, Vec<u64>) {
    let dbs = Databases::new(Backend::Postgres).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ledger_addr = format!("127.0.0.1:{port}");
    let ledger_process = ledger(&dbs.ledger, &ledger_addr);
    let meter_process = meter(&dbs.meter);
    let first = invoicing(
        &dbs.invoicing,
        ledger_process.addr,
        meter_process.addr,
        None,
    );
    let mut c = Clients::new(
        ledger_process.channel(),
        meter_process.channel(),
        first.channel(),
    );
    let (_, price) = metered_price(&mut c, "bench_calls", "3").await;
    let invoices = final_drafts(&mut c, (&price, "bench_calls"), "Stuck", n, 100_000).await;
    ledger_process.kill();
    for (_, id) in &invoices {
        finalize(&mut c, id).await.unwrap_err();
    }
    drop(first);
    // The first retry of a failed step waits 10 s.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let ledger_process = ledger(&dbs.ledger, &ledger_addr);
    // The replicas reach the ledger through the emulated network hop.
    let proxy = match latency {
        Some(one_way) => {
            Some(billing_e2e::latency::LatencyProxy::start(ledger_process.addr, one_way).await)
        }
        None => None,
    };
    let ledger_for_replicas = proxy.as_ref().map_or(ledger_process.addr, |p| p.addr);
    let started = Instant::now();
    let processes: Vec<Service> = (0..replicas)
        .map(|i| {
            invoicing_with(
                &dbs.invoicing,
                ledger_for_replicas,
                meter_process.addr,
                None,
                &[
                    ("INVOICING_INSTANCE", format!("resume-{i}")),
                    ("INVOICING_WORKER_INTERVAL_SECONDS", "1".to_owned()),
                    ("INVOICING_WORKER_CONCURRENCY", concurrency.to_string()),
                ],
            )
        })
        .collect();
    let resumed = loop {
        let mut resumed = Vec::new();
        for process in &processes {
            resumed.push(
                scrape(process)
                    .await
                    .lines()
                    .filter(|l| l.starts_with("invoicing_saga_recoveries_total"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .map(|v| v as u64)
                    .sum(),
            );
        }
        if resumed.iter().sum::<u64>() >= n as u64 {
            break resumed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let window = resume_window(dbs.invoicing.url()).await;
    drop(processes);
    drop(proxy);
    drop(ledger_process);
    drop(meter_process);
    dbs.drop_all().await;
    (seconds, window, resumed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = billing_testkit::bench::setting("BENCH_INVOICES", 400);
    if Backend::Postgres.database().await.is_none() {
        println!("scale_out: PostgreSQL unavailable, skipped");
        return;
    }
    println!("{n} invoices, {CLIENTS} clients, PostgreSQL, release binaries");
    for (ledgers, invoicings) in [(1, 1), (3, 1), (1, 2), (3, 2)] {
        let (rate, served) = run(ledgers, invoicings, n).await;
        println!(
            "ledger replicas {ledgers}, invoicing replicas {invoicings}: {rate:.0} finalizes/s; ApplyCredits per ledger replica {served:?}"
        );
    }
    let stuck: usize = billing_testkit::bench::setting("BENCH_RESUME_INVOICES", 1_000);
    // As here (loopback, the default 16 at once), and as when the ledger
    // is a network hop away and a replica's own pace is the limit.
    let hop = std::time::Duration::from_millis(4);
    for (concurrency, latency) in [(16, None), (2, Some(hop))] {
        for replicas in [1, 2] {
            let (seconds, window, resumed) = resume(replicas, stuck, concurrency, latency).await;
            let hop = latency.map_or("no".to_owned(), |l| {
                format!("{} ms each way", l.as_millis())
            });
            println!(
                "{stuck} invoices left mid-saga, {replicas} invoicing replica(s) resuming {concurrency} at once each, {hop} latency to the ledger: resumed in {window:.2} s (first resume to last), {seconds:.1} s from the processes' start; per replica {resumed:?}"
            );
        }
    }
    match billing_testkit::bench::pgbench(&[], 10).await {
        Some(tps) => println!("baseline pgbench (read-write, 16 clients, scale 10, 10 s): {tps}"),
        None => println!("baseline pgbench: unavailable"),
    }
}
