//! The meter-ingest pod: configuration from the environment, run until SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(billing_server::host::main::<meter_ingest::MeterIngest>().await?)
}
