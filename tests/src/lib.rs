//! Starts the service binaries as separate processes for end-to-end tests.
//!
//! The binaries are the ones `cargo test --workspace` builds next to the
//! test executable (`target/<profile>/`); debug builds of invoicing honour
//! `INVOICING_FAILPOINT`, so a test can crash it on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod latency;
pub mod model;
pub mod sim;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use billing_server::auth::hash_hex;
use billing_testkit::{Backend, TestDatabase};
use tonic::transport::Channel;

/// The account the tests act as.
pub const ACCOUNT_KEY: &str = "sk_e2e_account";
/// Invoicing's service key.
pub const INTERNAL_KEY: &str = "sk_e2e_internal";
/// The same account's key without the `test_clock` scope.
pub const PLAIN_KEY: &str = "sk_e2e_plain";

/// `BILLING_API_KEYS` for every process.
pub fn api_keys() -> String {
    format!(
        "acct_e2e:{}:test_clock, acct_e2e:{}, _invoicing:{}:apply_credits+internal",
        hash_hex(ACCOUNT_KEY),
        hash_hex(PLAIN_KEY),
        hash_hex(INTERNAL_KEY)
    )
}

/// Path of a workspace binary built next to the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every binary) or \
         `cargo build -p credit-ledger -p meter-ingest -p invoicing --features invoicing/failpoints` first",
        path.display()
    );
    path
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running service process; killed (SIGKILL) on drop.
pub struct Service {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`.
    pub metrics: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `binary` with `env` and waits for its "listening on" line.
    pub fn start(name: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("BILLING_API_KEYS", api_keys())
            .env("METRICS_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        // Killed if start-up fails below (a stale binary, a crash).
        let mut guard = KillOnDrop(Some(child));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // E2E_SERVICE_LOGS=1 shows the services' own logs (stdout).
            let echo = std::env::var_os("E2E_SERVICE_LOGS").is_some();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[service] {line}");
                }
                if let Some((_, addr)) = line.split_once(" metrics at http://") {
                    let _ = tx.send(("metrics", addr.trim_end_matches("/metrics").to_owned()));
                }
                if let Some((_, addr)) = line.split_once(" listening on ") {
                    let _ = tx.send(("grpc", addr.trim().to_owned()));
                }
            }
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let (kind, value) = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
                panic!(
                    "{name} did not report its addresses (a stale binary? `cargo test --workspace` rebuilds it)"
                )
            });
            let parsed: SocketAddr = value.parse().unwrap();
            match kind {
                "metrics" => metrics = Some(parsed),
                _ => addr = Some(parsed),
            }
        }
        Self {
            child: guard.0.take().unwrap(),
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
        }
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as an OOM kill or a node loss would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (a failpoint), at most `limit`.
    pub fn wait_exit(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A lazily connecting channel to it.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }
}

/// `GET /metrics` of a service, as text.
pub async fn scrape(service: &Service) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(service.metrics)
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The three databases of one test.
pub struct Databases {
    /// credit-ledger's.
    pub ledger: TestDatabase,
    /// meter-ingest's.
    pub meter: TestDatabase,
    /// invoicing's.
    pub invoicing: TestDatabase,
}

impl Databases {
    /// Fresh databases on `backend`; None when PostgreSQL is unavailable locally.
    pub async fn new(backend: Backend) -> Option<Self> {
        Some(Self {
            ledger: backend.database().await?,
            meter: backend.database().await?,
            invoicing: backend.database().await?,
        })
    }

    /// Drops them.
    pub async fn drop_all(self) {
        self.ledger.drop_database().await;
        self.meter.drop_database().await;
        self.invoicing.drop_database().await;
    }
}

/// Fresh databases with credit-ledger and meter-ingest running on them
/// (any ports), for a test that then starts invoicing its own way; None
/// when PostgreSQL is unavailable locally.
pub async fn upstreams(backend: Backend) -> Option<(Databases, Service, Service)> {
    let dbs = Databases::new(backend).await?;
    let ledger_process = ledger(&dbs.ledger, "127.0.0.1:0");
    let meter_process = meter(&dbs.meter);
    Some((dbs, ledger_process, meter_process))
}

/// Starts credit-ledger on `addr` (port 0: any).
pub fn ledger(db: &TestDatabase, addr: &str) -> Service {
    ledger_with(db, addr, &[])
}

/// Starts credit-ledger with extra environment variables.
pub fn ledger_with(db: &TestDatabase, addr: &str, extra: &[(&str, String)]) -> Service {
    let mut env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("LISTEN_ADDR", addr.to_owned()),
    ];
    env.extend_from_slice(extra);
    Service::start("credit-ledger", &env)
}

/// Starts meter-ingest on any port.
pub fn meter(db: &TestDatabase) -> Service {
    meter_with(db, &[])
}

/// Starts meter-ingest with extra environment variables.
pub fn meter_with(db: &TestDatabase, extra: &[(&str, String)]) -> Service {
    let mut env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
    ];
    env.extend_from_slice(extra);
    Service::start("meter-ingest", &env)
}

/// Starts invoicing with the test clock, pointing at the two others;
/// `failpoint` sets `INVOICING_FAILPOINT`.
pub fn invoicing(
    db: &TestDatabase,
    ledger: SocketAddr,
    meter: SocketAddr,
    failpoint: Option<&str>,
) -> Service {
    invoicing_with(db, ledger, meter, failpoint, &[])
}

/// Starts invoicing with extra environment variables.
pub fn invoicing_with(
    db: &TestDatabase,
    ledger: SocketAddr,
    meter: SocketAddr,
    failpoint: Option<&str>,
    extra: &[(&str, String)],
) -> Service {
    let mut env = invoicing_env(db, ledger, meter, failpoint);
    env.extend_from_slice(extra);
    Service::start("invoicing", &env)
}

/// Invoicing's environment (any port, the test clock, the two upstreams).
pub fn invoicing_env(
    db: &TestDatabase,
    ledger: SocketAddr,
    meter: SocketAddr,
    failpoint: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("LEDGER_URL", format!("http://{ledger}")),
        ("METER_URL", format!("http://{meter}")),
        ("INVOICING_INTERNAL_API_KEY", INTERNAL_KEY.to_owned()),
        ("INVOICING_TEST_CLOCK", "true".to_owned()),
        ("INVOICING_UPSTREAM_DEADLINE_MS", "3000".to_owned()),
        // The tests drive the worker through AdvanceTestClock; a timer tick
        // only happens at start-up (recovery).
        ("INVOICING_WORKER_INTERVAL_SECONDS", "3600".to_owned()),
    ];
    if let Some(name) = failpoint {
        env.push(("INVOICING_FAILPOINT", name.to_owned()));
    }
    env
}

/// A service process that a test kills (SIGKILL) and starts again, on the
/// same port and database, while clients keep calling it.
pub struct Restartable {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    running: std::sync::Mutex<Option<Service>>,
    restarts: std::sync::atomic::AtomicU64,
    /// Where it listens, across restarts.
    pub addr: SocketAddr,
}

impl Restartable {
    /// Starts `name` with `env` on a free loopback port.
    pub fn start(name: &'static str, mut env: Vec<(&'static str, String)>) -> std::sync::Arc<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        env.push(("LISTEN_ADDR", addr.to_string()));
        let first = Service::start(name, &env);
        std::sync::Arc::new(Self {
            name,
            env,
            running: std::sync::Mutex::new(Some(first)),
            restarts: std::sync::atomic::AtomicU64::new(0),
            addr,
        })
    }

    /// SIGKILL, then the same binary again.
    pub fn restart(&self) {
        self.restart_with(&[]);
    }

    /// SIGKILL, then the same binary with `extra` set for this run only
    /// (a failpoint, say).
    pub fn restart_with(&self, extra: &[(&str, String)]) {
        let mut slot = self.running.lock().unwrap();
        if let Some(process) = slot.take() {
            process.kill();
        }
        let mut env = self.env.clone();
        env.extend_from_slice(extra);
        *slot = Some(Service::start(self.name, &env));
        self.restarts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Starts it again if it exited by itself (a failpoint); whether it did.
    pub fn revive(&self) -> bool {
        let mut slot = self.running.lock().unwrap();
        let exited = slot
            .as_mut()
            .is_some_and(|process| matches!(process.child.try_wait(), Ok(Some(_))));
        if exited {
            *slot = Some(Service::start(self.name, &self.env));
            self.restarts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        exited
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A lazily connecting channel, which reconnects after a restart.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }

    /// Stops it for good.
    pub fn stop(&self) {
        drop(self.running.lock().unwrap().take());
    }
}

/// Restarts `process` after a random 0–`within_ms` ms, in the background,
/// `percent` times in 100; the handle ends when it is running again.
pub fn kill_soon(
    process: &std::sync::Arc<Restartable>,
    rng: &mut billing_testkit::fuzz::Rng,
    percent: u64,
    within_ms: usize,
) -> Option<tokio::task::JoinHandle<()>> {
    if !rng.chance(percent) {
        return None;
    }
    let delay = Duration::from_millis(rng.below(within_ms) as u64);
    let process = process.clone();
    Some(tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        tokio::task::spawn_blocking(move || process.restart())
            .await
            .unwrap();
    }))
}

/// Starts the notifier following `ledger`'s feed (the other feeds point
/// nowhere) with extra environment variables.
pub fn notifier_with(db: &TestDatabase, ledger: SocketAddr, extra: &[(&str, String)]) -> Service {
    let mut env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("LEDGER_URL", format!("http://{ledger}")),
        ("METER_URL", "http://127.0.0.1:9".to_owned()),
        ("INVOICING_URL", "http://127.0.0.1:9".to_owned()),
        ("NOTIFIER_INTERNAL_API_KEY", INTERNAL_KEY.to_owned()),
        ("NOTIFIER_ALLOW_INSECURE_URLS", "true".to_owned()),
        ("NOTIFIER_ALLOW_PRIVATE_URLS", "true".to_owned()),
    ];
    env.extend_from_slice(extra);
    Service::start("notifier", &env)
}

/// Wraps a message with the account key.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    billing_testkit::authed(ACCOUNT_KEY, message)
}

/// The first 100 events of `types` on a service's feed, oldest first.
pub async fn events_of(channel: Channel, types: &[&str]) -> Vec<billing_proto::events::v1::Event> {
    billing_testkit::events_of(channel, ACCOUNT_KEY, types).await
}

/// Subscribes a webhook endpoint at `http://127.0.0.1:{port}/hook` to
/// `credit_balance.created` through the notifier at `channel`.
pub async fn hook_grants_created(channel: Channel, port: u16) {
    use billing_proto::webhooks::v1 as wh;
    wh::webhook_service_client::WebhookServiceClient::new(channel)
        .create_webhook_endpoint(authed(wh::CreateWebhookEndpointRequest {
            url: format!("http://127.0.0.1:{port}/hook"),
            enabled_events: vec!["credit_balance.created".into()],
            ..Default::default()
        }))
        .await
        .unwrap();
}

pub mod scenario;
