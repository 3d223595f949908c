//! Runs `examples/python/billing_example.py` against `billing up`.
//!
//! Needs python3 with grpcio and grpcio-tools (`.ci/run` installs them);
//! without them the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, require};

const DEV_KEY: &str = "sk_python_example_key";

#[test]
fn python_client_ingests_grants_and_reads_the_balance() {
    let mut probe = Command::new("python3");
    probe.args(["-c", "import grpc, grpc_tools"]);
    if !require(
        "python3 with grpcio and grpcio-tools",
        probe,
        "pip install -r examples/python/requirements.txt",
    ) {
        return;
    }
    let up = Up::start("python", DEV_KEY);
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/python/billing_example.py"
        ))
        .env("BILLING_API_KEY", DEV_KEY)
        .env("METER_ADDR", &up.meter)
        .env("LEDGER_ADDR", &up.ledger)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ingested: 2 accepted, 1 duplicate"),
        "{stdout}"
    );
    assert!(stdout.contains("usage: 42.5"), "{stdout}");
    assert!(stdout.contains("available balance: 2500 usd"), "{stdout}");
    assert!(
        stdout.contains("invalid grant refused: INVALID_ARGUMENT"),
        "{stdout}"
    );
}
