//! `billing up`: the whole suite in one process, for development.
//!
//! Each service keeps its own database (SQLite files under `--data-dir`
//! unless a `*_DATABASE_URL` says otherwise) and listens on its own port;
//! services talk to each other over real gRPC on loopback, as in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use billing_server::app::AppError;
use billing_server::auth::{ApiKeys, Scope};
use billing_server::clock::Clock;
use billing_server::host::{Host, Service};
use billing_server::serve::shutdown_signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The account of the development key.
pub const DEV_ACCOUNT: &str = "acct_dev";

/// Options of `billing up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory of the SQLite files and the saved development key.
    #[arg(long, env = "BILLING_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Where the credit ledger listens.
    #[arg(long, env = "LEDGER_LISTEN_ADDR", default_value = "127.0.0.1:50052")]
    ledger_addr: SocketAddr,
    /// The ledger's database; default a SQLite file in the data directory.
    #[arg(long, env = "LEDGER_DATABASE_URL")]
    ledger_database_url: Option<String>,
    /// Where meter-ingest listens.
    #[arg(long, env = "METER_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    meter_addr: SocketAddr,
    /// meter-ingest's database; default a SQLite file in the data directory.
    #[arg(long, env = "METER_DATABASE_URL")]
    meter_database_url: Option<String>,
    /// Where invoicing listens.
    #[arg(long, env = "INVOICING_LISTEN_ADDR", default_value = "127.0.0.1:50053")]
    invoicing_addr: SocketAddr,
    /// invoicing's database; default a SQLite file in the data directory.
    #[arg(long, env = "INVOICING_DATABASE_URL")]
    invoicing_database_url: Option<String>,
    /// Where the notifier listens.
    #[arg(long, env = "NOTIFIER_LISTEN_ADDR", default_value = "127.0.0.1:50054")]
    notifier_addr: SocketAddr,
    /// The notifier's database; default a SQLite file in the data directory.
    #[arg(long, env = "NOTIFIER_DATABASE_URL")]
    notifier_database_url: Option<String>,
    /// Also publish every event to this NATS JetStream server.
    #[arg(long, env = "NOTIFIER_NATS_URL")]
    nats_url: Option<String>,
    /// Where the console (the browser UI) listens.
    #[arg(long, env = "CONSOLE_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    console_addr: SocketAddr,
    /// Development key to accept (default: generated once, saved in the data directory).
    #[arg(long, env = "BILLING_DEV_API_KEY")]
    dev_api_key: Option<String>,
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)?;
    let dev_key = match args.dev_api_key {
        Some(key) => key,
        None => saved_dev_key(&args.data_dir)?,
    };
    let mut keys = ApiKeys::parse(&std::env::var("BILLING_API_KEYS").unwrap_or_default())?;
    keys.insert_plain(&dev_key, DEV_ACCOUNT, &[Scope::ApplyCredits]);
    // Invoicing's service key lives only in this process.
    let internal_key = billing_server::auth::generate_key()?;
    keys.insert_plain(
        &internal_key,
        "_invoicing",
        &[Scope::ApplyCredits, Scope::Internal],
    );
    let database = |url: Option<String>, file: &str| {
        url.unwrap_or_else(|| sqlite_url(&args.data_dir.join(file)))
    };
    let (stop, stopped) = watch::channel(false);
    let mut running = Vec::new();

    // The ledger and meter-ingest ask invoicing about customers, and
    // invoicing starts after them: fix invoicing's port first.
    let invoicing_addr = reserve(args.invoicing_addr)?;
    let directory = billing_server::customers::DirectoryConfig {
        invoicing_url: format!("http://{invoicing_addr}"),
        internal_api_key: internal_key.clone(),
        deadline: std::time::Duration::from_secs(5),
    };
    let mut meter = meter_ingest::Config::new(
        database(args.meter_database_url, "meter.db"),
        args.meter_addr,
    );
    meter.service.api_keys = keys.clone();
    meter.customers = Some(directory.clone());
    running.push(start::<meter_ingest::MeterIngest>(meter, &stopped).await?);

    let mut ledger = credit_ledger::Config::new(
        database(args.ledger_database_url, "ledger.db"),
        args.ledger_addr,
    );
    ledger.service.api_keys = keys.clone();
    ledger.customers = Some(directory);
    running.push(start::<credit_ledger::LedgerService>(ledger, &stopped).await?);

    let upstream = invoicing::upstream::UpstreamConfig {
        ledger_url: format!("http://{}", running[1].addr),
        meter_url: format!("http://{}", running[0].addr),
        internal_api_key: internal_key.clone(),
        deadline: std::time::Duration::from_secs(5),
    };
    let mut invoicing = invoicing::Config::new(
        database(args.invoicing_database_url, "invoicing.db"),
        invoicing_addr,
        upstream,
    );
    invoicing.service.api_keys = keys.clone();
    running.push(start::<invoicing::InvoicingService>(invoicing, &stopped).await?);

    // The notifier follows the three feeds of every account with a key, and
    // (development) may deliver to http:// and private addresses such as
    // a receiver on localhost.
    let sources = [("meter", 0), ("ledger", 1), ("invoicing", 2)]
        .into_iter()
        .map(|(name, i)| notifier::config::Source {
            name,
            url: format!("http://{}", running[i].addr),
        })
        .collect();
    let mut notifier = notifier::Config::new(
        database(args.notifier_database_url, "notifier.db"),
        args.notifier_addr,
        sources,
    );
    notifier.accounts = keys.accounts();
    notifier.service.api_keys = keys;
    notifier.internal_api_key = internal_key;
    notifier.allow_insecure_urls = true;
    notifier.allow_private_urls = true;
    notifier.nats_url = args.nats_url;
    running.push(start::<notifier::NotifierService>(notifier, &stopped).await?);

    // The console: a client of the others, over the same loopback gRPC.
    let mut console_config = console::Config::new(args.console_addr);
    console_config.ledger_url = format!("http://{}", running[1].addr);
    console_config.invoicing_url = format!("http://{}", running[2].addr);
    console_config.notifier_url = format!("http://{}", running[3].addr);
    let console = console::Console::build(&console_config).await?;
    let console_addr = console.local_addr()?;
    let console_task = tokio::spawn(console.run_until(wait_for(stopped.clone())));

    for service in &running {
        println!("{} listening on {}", service.name, service.addr);
    }
    println!("console listening on {console_addr}");
    println!("development API key (account {DEV_ACCOUNT}, scope apply_credits):");
    println!("  export KEY={dev_key}");
    println!(
        "try: grpcurl -plaintext -H \"authorization: Bearer $KEY\" {} list",
        running[1].addr
    );
    println!("or open http://{console_addr}/ and sign in with the key");

    shutdown_signal().await;
    tracing::info!("stopping (Ctrl-C again to stop at once)");
    // A second Ctrl-C does not wait for the drain.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("second Ctrl-C: stopping now");
            std::process::exit(130);
        }
    });
    // Nobody may be waiting: the services may already have stopped.
    let _ = stop.send(true);
    console_task.await??;
    for service in running.into_iter().rev() {
        service.task.await??;
    }
    Ok(())
}

/// A service `billing up` started.
struct Running {
    name: &'static str,
    addr: SocketAddr,
    task: JoinHandle<Result<(), AppError>>,
}

/// Builds a service on the shared host and serves it until `stopped` turns true.
async fn start<S: Service>(
    config: S::Config,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let host = Host::<S>::build(config, Clock::system()).await?;
    let addr = host.local_addr()?;
    let task = tokio::spawn(host.run_until(wait_for(stopped.clone())));
    Ok(Running {
        name: S::NAME,
        addr,
        task,
    })
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// `addr` itself, or for port 0 a free port chosen now (the listener is
/// released at once and bound again moments later by the service).
fn reserve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    Ok(std::net::TcpListener::bind(addr)?.local_addr()?)
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The development key saved in the data directory, created on first use so
/// it stays the same across restarts.
fn saved_dev_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("dev_api_key");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_owned();
        if !saved.is_empty() {
            return Ok(saved);
        }
    }
    let key = billing_server::auth::generate_key()?;
    std::fs::write(&path, format!("{key}\n"))?;
    Ok(key)
}
