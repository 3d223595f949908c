//! The operator commands that need no server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn api_key_create_prints_a_key_and_its_hashed_entry() {
    let output = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args([
            "api-key",
            "create",
            "--account",
            "acct_acme",
            "--scope",
            "apply_credits",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let values: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    let (key, entry) = (values[0], values[1]);
    assert!(key.starts_with("sk_"));
    assert_eq!(
        entry,
        format!(
            "acct_acme:{}:apply_credits",
            billing_server::auth::hash_hex(key)
        )
    );

    let keys = billing_server::auth::ApiKeys::parse(entry).unwrap();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {key}").parse().unwrap());
    let principal = keys.authenticate(&metadata).unwrap();
    assert_eq!(principal.account, "acct_acme");
    assert!(principal.can_apply_credits);
}

#[test]
fn api_key_create_refuses_unknown_scopes() {
    let output = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args([
            "api-key",
            "create",
            "--account",
            "acct_acme",
            "--scope",
            "root",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown API key scope"));
}
