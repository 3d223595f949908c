//! Architecture invariants, checked by reading the source tree (the "tidy"
//! idea of rust-analyzer): a rule in ARCHITECTURE.md that nothing checks
//! drifts, so each one here fails the build when it is broken.
//!
//! The rules, over the non-test code of `libs/*/src` and `services/*/src`:
//! 1. sqlx is used only in a service's `store/` and in `libs/db`.
//! 2. tonic, prost and the generated protos (`billing_proto`) are used in a
//!    service only in `grpc/` and `upstream/`, and in the libraries only by
//!    the host (`libs/server`), the generated crate, telemetry and the test
//!    kit. (`services/billing` is the operator CLI and `services/console`
//!    the browser console: gRPC clients whose job is showing the messages,
//!    exempt.)
//! 3. The system clock (`Utc::now`, `SystemTime`) is read only in
//!    `libs/server/src/clock.rs`.
//! 4. `domain/` uses only std, chrono, rust_decimal, billing-money,
//!    thiserror and serde (derives: the stored form of a value is part of
//!    its definition), and only `crate::domain` of its own crate: no I/O,
//!    no clock, no ids, no other layer.
//! 5. Money is rounded only in `libs/money` (`round_to_scale`, half away
//!    from zero): no `round_dp*`, `round_sf*` or `RoundingStrategy` elsewhere.
//!    (Quantity rounding of `transform_quantity`, `ceil`/`floor`, is not
//!    money rounding.)
//!
//! 6. Balance transactions are append-only: no ledger source or migration
//!    holds `UPDATE credit_balance_transactions` or `DELETE FROM
//!    credit_balance_transactions` (checked on the raw text, SQL included).
//!
//! 7. No deployment file (`k8s/`, `Dockerfile`) enables a development tool:
//!    no `INVOICING_TEST_CLOCK`, `test_clock` scope, `test-clock` or
//!    `failpoints` feature, `INVOICING_FAILPOINT` outside comments.
//! 8. Channels to other services are made only by `billing_server::peer`
//!    and its balancer (no `from_shared` or `connect_lazy` elsewhere).
//! 9. The console keeps no state: no database crate, no migrations
//!    (`the_console_has_no_database`).
//!
//! A file is read up to its first `#[cfg(test)]`; comments and string
//! literals are blanked first, so prose may name anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Crates `domain/` may use.
const DOMAIN_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "chrono",
    "rust_decimal",
    "billing_money",
    "thiserror",
    "serde",
];

/// Crates that are the gRPC transport.
const TRANSPORT_CRATES: &[&str] = &[
    "tonic",
    "tonic_health",
    "tonic_reflection",
    "tonic_types",
    "prost",
    "prost_types",
    "billing_proto",
];

/// Libraries allowed to use the transport crates.
const TRANSPORT_LIBS: &[&str] = &[
    "libs/server",
    "libs/proto",
    "libs/telemetry",
    "libs/testkit",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    rule: &'static str,
    found: String,
}

#[test]
fn the_source_tree_keeps_its_boundaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root")
        .to_path_buf();
    let crates = dependency_names(&root);
    let mut files = Vec::new();
    for top in ["libs", "services"] {
        for member in read_dir(&root.join(top)) {
            rust_files(&member.join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("readable source");
        violations.extend(check(&relative, &text, &crates));
    }
    violations.extend(append_only_history(&root));
    violations.extend(no_development_tools_deployed(&root));
    assert!(
        violations.is_empty(),
        "architecture boundaries broken (see tests/tests/boundaries.rs and ARCHITECTURE.md):\n{}",
        violations
            .iter()
            .map(|v| format!("  {}:{}: {} ({})", v.file, v.line, v.rule, v.found))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every rule over one file, given its path from the workspace root.
fn check(path: &str, text: &str, crates: &BTreeSet<String>) -> Vec<Violation> {
    let code = blank_comments_and_strings(text);
    let code = match code.find("#[cfg(test)]") {
        Some(at) => &code[..at],
        None => &code[..],
    };
    let in_service = path.starts_with("services/")
        && !path.starts_with("services/billing/")
        && !path.starts_with("services/console/");
    let layer = service_layer(path);
    let mut out = Vec::new();
    if path != "libs/server/src/peer.rs" && path != "libs/server/src/balance.rs" {
        // Rule 8: channels to peers come from `billing_server::peer` (lazy,
        // traced, with a connect timeout); words, since `.connect_lazy()` is
        // a method call.
        for (number, text) in code.lines().enumerate() {
            let word = text
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .find(|w| *w == "connect_lazy" || *w == "from_shared");
            if let Some(word) = word {
                out.push(Violation {
                    file: path.to_owned(),
                    line: number + 1,
                    rule: "a peer channel made outside billing_server::peer",
                    found: word.to_owned(),
                });
            }
        }
    }
    if !path.starts_with("libs/money/") {
        // Method calls (`.round_dp(2)`) are not paths: scan the words.
        for (number, text) in code.lines().enumerate() {
            let rounds = text
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .find(|w| {
                    w.starts_with("round_dp")
                        || w.starts_with("round_sf")
                        || *w == "RoundingStrategy"
                });
            if let Some(word) = rounds {
                out.push(Violation {
                    file: path.to_owned(),
                    line: number + 1,
                    rule: "money rounded outside libs/money",
                    found: word.to_owned(),
                });
            }
        }
    }
    let mut flag = |line: usize, rule: &'static str, found: &str| {
        out.push(Violation {
            file: path.to_owned(),
            line,
            rule,
            found: found.to_owned(),
        });
    };
    for (line, root, rest) in path_roots(code) {
        if root == "sqlx" && !(layer == Some("store") || path.starts_with("libs/db/")) {
            flag(line, "sqlx outside store/ and libs/db", &root);
        }
        if TRANSPORT_CRATES.contains(&root.as_str()) {
            let allowed = if in_service {
                matches!(layer, Some("grpc" | "upstream"))
            } else {
                !path.starts_with("libs/") || TRANSPORT_LIBS.iter().any(|l| path.starts_with(l))
            };
            if !allowed {
                flag(
                    line,
                    "tonic/proto outside grpc/, upstream/ and the host",
                    &root,
                );
            }
        }
        let full = format!("{root}::{rest}");
        let segments: Vec<&str> = full.split("::").collect();
        let reads_clock =
            segments.contains(&"SystemTime") || segments.windows(2).any(|w| w == ["Utc", "now"]);
        if reads_clock && path != "libs/server/src/clock.rs" {
            flag(line, "system clock read outside the clock", &full);
        }
        if layer == Some("domain") {
            let foreign_crate = crates.contains(&root) && !DOMAIN_CRATES.contains(&root.as_str());
            let other_layer = root == "crate" && !rest.starts_with("domain");
            if foreign_crate || other_layer {
                flag(
                    line,
                    "domain/ uses more than std, chrono, rust_decimal, money, thiserror",
                    &format!("{root}::{rest}"),
                );
            }
        }
    }
    out
}

/// Rule 6: the ledger's SQL never updates or deletes a balance transaction.
fn append_only_history(root: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(&root.join("services/credit-ledger/src"), &mut files);
    files.extend(read_dir(&root.join("services/credit-ledger/migrations")));
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            let upper = line.to_uppercase();
            if upper.contains("UPDATE CREDIT_BALANCE_TRANSACTIONS")
                || upper.contains("DELETE FROM CREDIT_BALANCE_TRANSACTIONS")
            {
                out.push(Violation {
                    file: file.to_string_lossy().into_owned(),
                    line: number + 1,
                    rule: "balance transactions changed after they were written",
                    found: line.trim().to_owned(),
                });
            }
        }
    }
    out
}

/// Rule 7 over `k8s/` and the Dockerfile.
fn no_development_tools_deployed(root: &Path) -> Vec<Violation> {
    let mut files = vec![root.join("Dockerfile")];
    let mut dirs = vec![root.join("k8s")];
    while let Some(dir) = dirs.pop() {
        for entry in read_dir(&dir) {
            if entry.is_dir() {
                dirs.push(entry);
            } else {
                files.push(entry);
            }
        }
    }
    assert!(
        files.len() > 5,
        "found only {} deployment files",
        files.len()
    );
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        out.extend(deployment_violations(&file.to_string_lossy(), &text));
    }
    out
}

fn deployment_violations(file: &str, text: &str) -> Vec<Violation> {
    const TOOLS: [&str; 5] = [
        "INVOICING_TEST_CLOCK",
        "test_clock",
        "test-clock",
        "failpoints",
        "INVOICING_FAILPOINT",
    ];
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        // Comments (YAML and Dockerfile) may explain what is left out.
        let line = line.split_once('#').map_or(line, |(code, _)| code);
        if let Some(tool) = TOOLS.iter().find(|tool| line.contains(*tool)) {
            out.push(Violation {
                file: file.to_owned(),
                line: number + 1,
                rule: "a development tool in a deployment file",
                found: (*tool).to_owned(),
            });
        }
    }
    out
}

/// `store`, `grpc`, `domain`, … for a file in a service's `src/<layer>/`.
fn service_layer(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("services/")?;
    let (_, rest) = rest.split_once("/src/")?;
    let (layer, _) = rest.split_once('/')?;
    Some(layer)
}

/// Each path's first segment (`sqlx` in `sqlx::query`, `use sqlx::Row`,
/// `use {sqlx, …}`) with its line and the text after its `::`.
fn path_roots(code: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let starts_word = is_ident(bytes[i])
                && !bytes[i].is_ascii_digit()
                && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b':'));
            if !starts_word {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &line[start..i];
            let rest = &line[i..];
            if let Some(after) = rest.strip_prefix("::") {
                let after: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push((number + 1, word.to_owned(), after));
            } else if line[..start].trim_end().ends_with("use")
                && (rest.starts_with(';') || rest.starts_with(" as"))
            {
                // `use sqlx;` or `extern crate`-like renames.
                out.push((number + 1, word.to_owned(), String::new()));
            }
        }
    }
    out
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The source with comments and the insides of string and char literals
/// replaced by spaces (newlines kept, so line numbers stay true).
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // Raw string r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    out.push('"');
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() {
                if chars[i] == '\\' {
                    out.push(' ');
                    if let Some(escaped) = chars.get(i + 1) {
                        out.push(blank(*escaped));
                    }
                    i += 2;
                } else if chars[i] == '"' {
                    out.push('"');
                    i += 1;
                    break;
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    out.push('\'');
                    for _ in i + 1..end {
                        out.push(' ');
                    }
                    out.push('\'');
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The names (with `_` for `-`) of every dependency any workspace member
/// declares, so that `domain/` can be checked against crates, not types.
fn dependency_names(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut manifests = vec![root.join("Cargo.toml"), root.join("tests/Cargo.toml")];
    for top in ["libs", "services"] {
        for member in read_dir(&root.join(top)) {
            manifests.push(member.join("Cargo.toml"));
        }
    }
    for manifest in manifests {
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut in_dependencies = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_dependencies = line.contains("dependencies");
                continue;
            }
            if in_dependencies && let Some((name, _)) = line.split_once('=') {
                let name = name.trim().split('.').next().unwrap_or_default();
                if !name.is_empty() && !name.starts_with('#') {
                    names.insert(name.replace('-', "_"));
                }
            }
        }
    }
    names
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for path in read_dir(dir) {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The checker itself: each broken rule is caught, prose and strings are not.
#[test]
fn each_rule_catches_what_it_forbids() {
    let crates: BTreeSet<String> = [
        "sqlx",
        "tonic",
        "billing_proto",
        "billing_server",
        "serde",
        "chrono",
        "ulid",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("services/x/src/store/a.rs", "use sqlx::Row;", None),
        (
            "services/x/src/upstream/a.rs",
            "let channel = Endpoint::from_shared(url)?.connect_lazy();",
            Some("a peer channel made outside billing_server::peer"),
        ),
        (
            "libs/server/src/peer.rs",
            "let channel = Endpoint::from_shared(url)?.connect_lazy();",
            None,
        ),
        (
            "services/x/src/ops/a.rs",
            "use sqlx::Row;",
            Some("sqlx outside store/ and libs/db"),
        ),
        (
            "services/x/src/error.rs",
            "Storage(#[from] sqlx::Error),",
            Some("sqlx outside store/ and libs/db"),
        ),
        ("libs/db/src/lib.rs", "pub use sqlx;", None),
        (
            "libs/money/src/lib.rs",
            "pub use sqlx;",
            Some("sqlx outside store/ and libs/db"),
        ),
        ("services/x/src/grpc/a.rs", "use tonic::Status;", None),
        (
            "services/x/src/upstream/a.rs",
            "use billing_proto::ledger::v1 as ledger;",
            None,
        ),
        (
            "services/x/src/ops/saga.rs",
            "use billing_proto::ledger::v1 as ledger;",
            Some("tonic/proto outside grpc/, upstream/ and the host"),
        ),
        (
            "services/x/src/error.rs",
            "status: tonic::Status,",
            Some("tonic/proto outside grpc/, upstream/ and the host"),
        ),
        (
            "libs/server/src/host.rs",
            "pub use tonic::service::Routes;",
            None,
        ),
        (
            "services/x/src/ops/a.rs",
            "let now = chrono::Utc::now();",
            Some("system clock read outside the clock"),
        ),
        (
            "services/x/src/ops/a.rs",
            "let now = Utc::now();",
            Some("system clock read outside the clock"),
        ),
        (
            "libs/server/src/ids.rs",
            "let now = std::time::SystemTime::now();",
            Some("system clock read outside the clock"),
        ),
        ("libs/server/src/clock.rs", "None => Utc::now(),", None),
        (
            "services/x/src/domain/a.rs",
            "id: billing_server::ids::new_id(\"cbtxn\"),",
            Some("domain/ uses more than std, chrono, rust_decimal, money, thiserror"),
        ),
        (
            "services/x/src/domain/a.rs",
            "use crate::store::Store;",
            Some("domain/ uses more than std, chrono, rust_decimal, money, thiserror"),
        ),
        (
            "services/x/src/domain/a.rs",
            "use crate::domain::grant::Grant;\nuse chrono::Utc;",
            None,
        ),
        (
            "services/x/src/domain/a.rs",
            "use serde::{Deserialize, Serialize};",
            None,
        ),
        (
            "services/x/src/domain/a.rs",
            "// sqlx::query and Utc::now() in prose\nlet s = \"tonic::Status\";",
            None,
        ),
        (
            "services/x/src/ops/a.rs",
            "fn f() {}\n#[cfg(test)]\nmod tests { use sqlx::Row; }",
            None,
        ),
        ("services/billing/src/main.rs", "use tonic::Request;", None),
        (
            "services/x/src/ops/a.rs",
            "let cents = amount.round_dp(2);",
            Some("money rounded outside libs/money"),
        ),
        (
            "services/x/src/domain/a.rs",
            "use rust_decimal::RoundingStrategy;",
            Some("money rounded outside libs/money"),
        ),
        (
            "libs/money/src/lib.rs",
            "d.round_dp_with_strategy(s, RoundingStrategy::MidpointAwayFromZero)",
            None,
        ),
        (
            "services/x/src/domain/a.rs",
            "let q = divided.ceil();",
            None,
        ),
    ];
    for (path, text, expected) in cases {
        let found = check(path, text, &crates);
        let rules: Vec<&str> = found.iter().map(|v| v.rule).collect();
        match expected {
            Some(rule) => assert!(
                rules.contains(rule),
                "{path}: {text:?} should break {rule:?}, got {rules:?}"
            ),
            None => assert!(
                rules.is_empty(),
                "{path}: {text:?} should pass, got {found:?}"
            ),
        }
    }
    let deployed = deployment_violations(
        "k8s/overlays/dev/invoicing.yaml",
        "  - name: INVOICING_TEST_CLOCK\n    value: \"true\"\n",
    );
    assert_eq!(deployed.len(), 1, "{deployed:?}");
    assert!(
        deployment_violations("k8s/base/x.yaml", "  - name: LEDGER_URL # not failpoints\n")
            .is_empty()
    );
}

/// `billing_db::events` reads and writes one `events` table shape: every
/// service's migration that creates it must create the same table.
#[test]
fn every_events_table_is_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root")
        .to_path_buf();
    let mut files = Vec::new();
    let mut dirs = vec![root.join("services")];
    while let Some(dir) = dirs.pop() {
        for entry in read_dir(&dir) {
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry.extension().is_some_and(|e| e == "sql") {
                files.push(entry);
            }
        }
    }
    let tables: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).ok()?;
            let start = text.find("CREATE TABLE events (")?;
            // The table and its indexes, without comments or blank lines.
            let body: Vec<&str> = text[start..]
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("--"))
                .collect();
            Some((file, body.join("\n")))
        })
        .collect();
    assert!(tables.len() >= 3, "found {} events tables", tables.len());
    for (file, table) in &tables[1..] {
        assert_eq!(
            table,
            &tables[0].1,
            "{} creates another events table than {}",
            file.display(),
            tables[0].0.display()
        );
    }
}

/// Rule 9: the console keeps no state of its own (DESIGN.md §14): its crate
/// depends on no database crate and has no migrations, and it writes only
/// through the services' gRPC APIs.
#[test]
fn the_console_has_no_database() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root")
        .to_path_buf();
    let manifest = std::fs::read_to_string(root.join("services/console/Cargo.toml"))
        .expect("the console's manifest");
    for forbidden in ["sqlx", "billing-db", "rusqlite", "tokio-postgres"] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(forbidden)),
            "services/console depends on {forbidden}: the console keeps no state"
        );
    }
    assert!(
        !root.join("services/console/migrations").exists(),
        "services/console has migrations: the console keeps no state"
    );
}
