//! `billing up` as a child process for the CLI-level tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `billing up` on free ports with a fresh data directory; killed on drop.
pub struct Up {
    child: Child,
    /// The data directory (removed on drop).
    pub data_dir: PathBuf,
    /// credit-ledger's address.
    pub ledger: String,
    /// meter-ingest's address.
    pub meter: String,
    /// invoicing's address.
    pub invoicing: String,
    /// the notifier's address.
    pub notifier: String,
    /// the console's address.
    pub console: String,
    /// Every line it printed so far (stdout: its logs and its messages).
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Up {
    /// Starts it with `dev_key` as the development key and waits for the addresses.
    pub fn start(name: &str, dev_key: &str) -> Self {
        Self::start_with(name, dev_key, &[])
    }

    /// Starts it with extra environment variables.
    pub fn start_with(name: &str, dev_key: &str, env: &[(&str, &str)]) -> Self {
        let data_dir = std::env::temp_dir().join(format!("billing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = Command::new(env!("CARGO_BIN_EXE_billing"))
            .args([
                "up",
                "--ledger-addr",
                "127.0.0.1:0",
                "--meter-addr",
                "127.0.0.1:0",
            ])
            .args(["--invoicing-addr", "127.0.0.1:0"])
            .args(["--notifier-addr", "127.0.0.1:0"])
            .args(["--console-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("BILLING_DEV_API_KEY", dev_key)
            .env_remove("BILLING_API_KEYS")
            .env_remove("LEDGER_DATABASE_URL")
            .env_remove("METER_DATABASE_URL")
            .env_remove("INVOICING_DATABASE_URL")
            .env_remove("NOTIFIER_DATABASE_URL")
            .env_remove("NOTIFIER_NATS_URL")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if let Some((service, addr)) = line.split_once(" listening on ") {
                    let _ = tx.send((service.to_owned(), addr.trim().to_owned()));
                }
            }
        });
        let mut up = Self {
            child,
            data_dir,
            ledger: String::new(),
            meter: String::new(),
            invoicing: String::new(),
            notifier: String::new(),
            console: String::new(),
            output,
        };
        while up.ledger.is_empty()
            || up.meter.is_empty()
            || up.invoicing.is_empty()
            || up.notifier.is_empty()
            || up.console.is_empty()
        {
            let (service, addr) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("billing up did not report its addresses");
            match service.as_str() {
                "credit-ledger" => up.ledger = addr,
                "meter-ingest" => up.meter = addr,
                "invoicing" => up.invoicing = addr,
                "notifier" => up.notifier = addr,
                "console" => up.console = addr,
                _ => {}
            }
        }
        up
    }
}

/// Whether a command runs (skip locally, fail in CI when it does not).
pub fn require(what: &str, mut command: Command, hint: &str) -> bool {
    if command.output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        !billing_db::testing::in_ci(),
        "CI is set but {what} is not available ({hint})"
    );
    billing_db::testing::skip(&format!("{what} not available ({hint})"));
    false
}

/// The shell commands of the README's `sh` blocks between
/// `<!-- {name}:begin -->` and `<!-- {name}:end -->` (a walkthrough the
/// tests run verbatim).
pub fn readme_section(name: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find(&format!("<!-- {name}:begin -->"))
        .expect("begin marker");
    let end = readme
        .find(&format!("<!-- {name}:end -->"))
        .expect("end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = line.starts_with("```sh");
            continue;
        }
        if in_block {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}
