//! The credit-ledger pod: configuration from the environment, run until SIGTERM.

use billing_server::clock::Clock;
use billing_server::serve::shutdown_signal;
use credit_ledger::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = billing_telemetry::init("credit-ledger");
    let config = Config::from_env()?;
    if config.api_keys.is_empty() {
        tracing::warn!("BILLING_API_KEYS is empty: every RPC will be UNAUTHENTICATED");
    }
    let app = App::build(config, Clock::system()).await?;
    if let Some(addr) = app.metrics_addr() {
        println!("credit-ledger metrics at http://{addr}/metrics");
    }
    println!("credit-ledger listening on {}", app.local_addr()?);
    let served = app.run_until(shutdown_signal()).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
