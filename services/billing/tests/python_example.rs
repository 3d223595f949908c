//! Runs `examples/python/billing_example.py` against `billing up`.
//!
//! Needs python3 with grpcio and grpcio-tools (`.ci/run` installs them);
//! without them the test prints a skip line, and fails when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Up, require};

const DEV_KEY: &str = "sk_python_example_key";

/// python3 with the example's packages; a skip line (a failure with `CI`)
/// without them.
fn python_ready() -> bool {
    let mut probe = Command::new("python3");
    probe.args(["-c", "import grpc, grpc_tools, grpc_status"]);
    require(
        "python3 with grpcio, grpcio-tools and grpcio-status",
        probe,
        "pip install -r examples/python/requirements.txt",
    )
}

#[test]
fn python_client_ingests_grants_and_reads_the_balance() {
    if !python_ready() {
        return;
    }
    let up = Up::start("python", DEV_KEY);
    // Run where `billing up` keeps its data, without BILLING_API_KEY: the
    // example falls back to data/dev_api_key.
    let cwd = up.data_dir.join("python-cwd");
    std::fs::create_dir_all(cwd.join("data")).unwrap();
    std::fs::write(cwd.join("data/dev_api_key"), format!("{DEV_KEY}\n")).unwrap();
    let stubs_before = stub_dirs();
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/python/billing_example.py"
        ))
        .current_dir(&cwd)
        .env_remove("BILLING_API_KEY")
        .env("METER_ADDR", &up.meter)
        .env("LEDGER_ADDR", &up.ledger)
        .env("INVOICING_ADDR", &up.invoicing)
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
    // 42.5 units × 10¢, paid by the credits.
    assert!(
        stdout.contains("INVOICE_STATUS_PAID, subtotal 425, credits applied 425, amount due 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("available balance after the invoice: 2075 usd"),
        "{stdout}"
    );
    assert!(
        stdout.contains("invalid grant refused: INVALID_ARGUMENT"),
        "{stdout}"
    );
    // The BadRequest details, decoded.
    assert!(stdout.contains("  field amount: is required"), "{stdout}");
    assert_eq!(
        stub_dirs(),
        stubs_before,
        "the generated stubs were removed"
    );
}

/// `examples/python/gate.py` (quoted in docs/realtime.md): five renders
/// reserve, run and release; the sixth is refused once the credits are used.
#[test]
fn python_gate_reserves_runs_and_stops_at_the_credits() {
    if !python_ready() {
        return;
    }
    let up = Up::start("python-gate", DEV_KEY);
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/python/gate.py"
        ))
        .env("BILLING_API_KEY", DEV_KEY)
        .env("METER_ADDR", &up.meter)
        .env("LEDGER_ADDR", &up.ledger)
        .env("INVOICING_ADDR", &up.invoicing)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (n, ongoing) in [(1, 400), (2, 300), (3, 200), (4, 100), (5, 0)] {
        let line = format!("render {n}: done, ongoing balance with its hold {ongoing}");
        assert!(stdout.contains(&line), "{line} in:\n{stdout}");
    }
    assert!(
        stdout.contains("render 6: refused, ACCESS_REASON_DEPLETED, ongoing balance 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("available 500, unbilled usage 500, reserved 0, ongoing 0"),
        "{stdout}"
    );
}

/// The example's temporary stub directories.
fn stub_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("billing-stubs-"))
        })
        .collect();
    dirs.sort();
    dirs
}
