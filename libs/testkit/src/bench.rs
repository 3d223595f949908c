//! Latency figures for the benchmarks (never for assertions in tests).

#![allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::time::Duration;

/// The `p` quantile (0.0 to 1.0) of `sorted` latencies, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// `pgbench` with `mode` (`["-S"]`: select-only; `[]`: the default
/// TPC-B-like read-write mix) for `seconds` with 16 clients on a scale-10
/// scratch database of the test server: its `tps …` line, the same-run
/// baseline of a benchmark. None when pgbench or the server is missing.
pub async fn pgbench(mode: &[&str], seconds: u64) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&url).await.ok()?;
    let _ = sqlx::query("DROP DATABASE IF EXISTS bench_pgbench")
        .execute(&admin)
        .await;
    sqlx::query("CREATE DATABASE bench_pgbench")
        .execute(&admin)
        .await
        .ok()?;
    let (server, _) = url.rsplit_once('/')?;
    let target = format!("{server}/bench_pgbench");
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", &target])
        .output()
        .await
        .ok()?;
    let out = if init.status.success() {
        let seconds = seconds.to_string();
        let mut args: Vec<&str> = mode.to_vec();
        args.extend(["-c", "16", "-j", "2", "-T", &seconds, &target]);
        let run = tokio::process::Command::new("pgbench")
            .args(&args)
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("tps"))
            .map(str::to_owned)
    } else {
        None
    };
    let _ = sqlx::query("DROP DATABASE IF EXISTS bench_pgbench")
        .execute(&admin)
        .await;
    out
}
