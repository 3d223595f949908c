//! The operator commands that need no server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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

fn billing(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_billing"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_URL")
        .env_remove("BILLING_API_KEY")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn api_key_create_says_what_is_wrong_with_an_account_name() {
    let (ok, output) = billing(&["api-key", "create", "--account", "acme corp!"]);
    assert!(!ok);
    assert!(
        output.contains("--account") && output.contains("letters, digits"),
        "{output}"
    );
    assert!(!output.contains("BILLING_API_KEYS"), "{output}");
}

#[test]
fn migrate_needs_the_service_and_refuses_another_services_database() {
    let dir = std::env::temp_dir().join(format!("billing-cli-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/meter.db", dir.display());

    let (ok, output) = billing(&["migrate", "--database-url", &url]);
    assert!(!ok, "no silent default service: {output}");
    assert!(output.contains("--service"), "{output}");

    let (ok, output) = billing(&["migrate", "--service", "meter", "--database-url", &url]);
    assert!(ok, "{output}");
    let (ok, output) = billing(&["migrate", "--service", "ledger", "--database-url", &url]);
    assert!(!ok);
    assert!(
        output.contains("another schema") && output.contains("\"meter\""),
        "{output}"
    );
    // Its own schema again is fine (idempotent).
    let (ok, output) = billing(&["migrate", "--service", "meter", "--database-url", &url]);
    assert!(ok, "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audit_errors_name_the_ledger_url() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, output) = billing(&["audit", "--ledger-url", &url, "--api-key", "sk_x"]);
    assert!(!ok);
    assert!(output.contains(&url), "{output}");
}

/// PostgreSQL's notices on start-up (`relation "_sqlx_migrations" already
/// exists, skipping` on every restart) are not logged by default.
#[test]
fn a_restart_on_postgresql_logs_no_notices() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(billing_db::testing::TestDatabase::postgres()) else {
        return;
    };
    for round in ["first", "restart"] {
        let up = common::Up::start_with(
            &format!("notices-{round}"),
            "sk_notices",
            &[("LEDGER_DATABASE_URL", db.url())],
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let output = up.output.lock().unwrap().clone();
        assert!(
            !output.iter().any(|l| l.contains("already exists")),
            "{round}: {output:?}"
        );
    }
    runtime.block_on(db.drop_database());
}
