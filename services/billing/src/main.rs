//! `billing`: the operator's command line.
//!
//! - `billing up`: every service in one process on embedded SQLite files
//!   under `./data/`, talking over real gRPC on loopback, with a development
//!   API key printed at start.
//! - `billing migrate`: runs the embedded migrations against a database.
//! - `billing api-key create`: makes a key and its `BILLING_API_KEYS` entry.
//! - `billing audit`: asks a running ledger to check its invariants.
//! - `billing ledger export`: streams the ledger's transactions to CSV or
//!   JSON Lines.

mod ledger;
mod up;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "billing",
    version,
    about = "Prepaid billing credits: run, migrate, manage keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all services locally on embedded SQLite (Ctrl-C to stop).
    Up(Box<up::UpArgs>),
    /// Run the embedded migrations of a service against its database.
    Migrate {
        /// Which service's schema (required: each service has its own database).
        #[arg(long, value_enum)]
        service: Service,
        /// The database (sqlite://… or postgres://…).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Check the ledger invariants of the key's account on a running ledger.
    Audit {
        /// The ledger's address.
        #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:50052")]
        ledger_url: String,
        /// An API key of the account to audit.
        #[arg(long, env = "BILLING_API_KEY")]
        api_key: String,
    },
    /// Read the ledger of the key's account.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Stream the balance transactions taking effect in [--from, --to) as CSV or JSON Lines.
    Export(Box<ledger::ExportArgs>),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Service {
    Ledger,
    Meter,
    Invoicing,
    Notifier,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Print a new random key and the BILLING_API_KEYS entry (its SHA-256) to configure.
    Create {
        /// The account the key belongs to (letters, digits, '_' or '-').
        #[arg(long)]
        account: String,
        /// Extra scopes: apply_credits, internal, test_clock (development only).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => {
            let telemetry = billing_telemetry::init("billing");
            let result = up::run(*args).await;
            telemetry.shutdown().await;
            result
        }
        Command::Migrate {
            service,
            database_url,
        } => {
            let shown = redact_url(&database_url);
            let db = billing_db::Db::connect(&database_url, &billing_db::DbOptions::default())
                .await
                .with_context(|| format!("cannot open the database at {shown}"))?;
            let migrations = match service {
                Service::Ledger => &credit_ledger::MIGRATIONS,
                Service::Meter => &meter_ingest::MIGRATIONS,
                Service::Invoicing => &invoicing::MIGRATIONS,
                Service::Notifier => &notifier::MIGRATIONS,
            };
            let migrated = db.migrate(migrations).await;
            db.close().await;
            migrated.with_context(|| {
                format!("migrating the {service:?} schema at {shown} (is this the {service:?} database?)")
            })?;
            println!("migrated {service:?} schema at {shown}");
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create { account, scopes }) => {
            if !billing_server::auth::valid_account(&account) {
                anyhow::bail!(
                    "--account {:?} is not a valid account name: use 1 to 64 letters, digits, \
                     '_' or '-' (e.g. acct_acme)",
                    billing_server::status::clip(&account, 64)
                );
            }
            for scope in &scopes {
                billing_server::auth::Scope::parse(scope)
                    .with_context(|| format!("--scope {scope:?}"))?;
            }
            let key = billing_server::auth::generate_key()?;
            let mut entry = format!("{account}:{}", billing_server::auth::hash_hex(&key));
            if !scopes.is_empty() {
                entry.push(':');
                entry.push_str(&scopes.join("+"));
            }
            // Validate the entry the way the services will read it.
            billing_server::auth::ApiKeys::parse(&entry)?;
            println!("API key (shown once; give it to the client):\n  {key}");
            println!("BILLING_API_KEYS entry (configure on every service):\n  {entry}");
            Ok(())
        }
        Command::Audit {
            ledger_url,
            api_key,
        } => audit(ledger_url, api_key).await,
        Command::Ledger(LedgerCommand::Export(args)) => {
            let written = ledger::export(*args).await?;
            eprintln!("exported {written} transactions");
            Ok(())
        }
    }
}

async fn audit(ledger_url: String, api_key: String) -> anyhow::Result<()> {
    use billing_proto::ledger::v1::AuditLedgerRequest;
    use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
    let mut client = LedgerServiceClient::connect(ledger_url.clone())
        .await
        .with_context(|| format!("cannot reach the ledger at {ledger_url} (--ledger-url)"))?;
    let mut request = tonic::Request::new(AuditLedgerRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {api_key}")
            .parse()
            .context("the API key has characters a header cannot carry")?,
    );
    let report = client
        .audit_ledger(request)
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "the ledger at {ledger_url} answered {:?}: {}",
                status.code(),
                status.message()
            )
        })?
        .into_inner();
    println!(
        "checked {} grants and {} invoices: {} violations",
        report.grants_checked,
        report.invoices_checked,
        report.violations.len()
    );
    for violation in &report.violations {
        println!(
            "  {} {}: {}",
            violation.invariant, violation.subject, violation.detail
        );
    }
    if report.violations.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the ledger has invariant violations")
    }
}

/// Hides a password in a database URL before printing it.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
