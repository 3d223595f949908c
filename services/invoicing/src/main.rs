//! The invoicing pod: configuration from the environment, run until SIGTERM.

use billing_server::clock::Clock;
use billing_server::serve::shutdown_signal;
use invoicing::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = billing_telemetry::init("invoicing");
    let config = Config::from_env()?;
    if config.api_keys.is_empty() {
        tracing::warn!("BILLING_API_KEYS is empty: every RPC will be UNAUTHENTICATED");
    }
    if config.upstream.internal_api_key.is_empty() {
        tracing::warn!(
            "INVOICING_INTERNAL_API_KEY is empty: calls to the ledger and meter-ingest will fail"
        );
    }
    let clock = if config.test_clock {
        Clock::manual(chrono::Utc::now())
    } else {
        Clock::system()
    };
    let app = App::build(config, clock).await?;
    if let Some(addr) = app.metrics_addr() {
        println!("invoicing metrics at http://{addr}/metrics");
    }
    println!("invoicing listening on {}", app.local_addr()?);
    let served = app.run_until(shutdown_signal()).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
