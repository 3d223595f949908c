//! The console pod: configuration from the environment, serve until SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = billing_telemetry::init("console");
    let config = console::Config::from_env()?;
    let console = console::Console::build(&config).await?;
    tracing::info!(addr = %console.local_addr()?, "console listening");
    console
        .run_until(billing_server::serve::shutdown_signal())
        .await?;
    telemetry.shutdown().await;
    Ok(())
}
