//! The notifier pod: configuration from the environment, run until SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(billing_server::host::main::<notifier::NotifierService>().await?)
}
