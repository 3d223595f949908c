//! Documentation that cannot drift from the code:
//!
//! - `docs/errors.md` lists exactly the ErrorInfo reasons the services can
//!   send (read from their source: the reason literals of `with_reason(…)`
//!   and `conflict(…)` calls and the ledger's `ConflictReason`) and the
//!   invariants AuditLedger reports.
//! - `docs/api.md` is generated from the proto descriptors (services,
//!   methods, messages, fields, enums, with their comments); the test fails
//!   when the file differs. `UPDATE_DOCS=1 cargo test -p billing-e2e --test
//!   docs` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// UPPER_SNAKE string literals with at least one underscore in `text`.
fn upper_snake_literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains('_')
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The text of every call to a function named `name` (up to its closing
/// parenthesis).
fn call_arguments<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}(");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let start = at + needle.len();
        let mut depth = 1;
        let mut end = start;
        for (i, c) in rest[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + i;
                break;
            }
        }
        out.push(&rest[start..end]);
        rest = &rest[start..];
    }
    out
}

/// Every ErrorInfo reason the services can send, and every audit invariant.
fn reasons_in_source() -> (BTreeSet<String>, BTreeSet<String>) {
    let root = root();
    let mut files = Vec::new();
    for dir in ["services", "libs/server/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut reasons = BTreeSet::new();
    let mut invariants = BTreeSet::new();
    for file in files {
        let path = file.to_string_lossy().replace('\\', "/");
        if !path.contains("/src/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for name in ["with_reason", "conflict"] {
            for arguments in call_arguments(text, name) {
                reasons.extend(upper_snake_literals(arguments));
            }
        }
        if path.ends_with("credit-ledger/src/domain/error.rs") {
            for line in text.lines().filter(|l| l.contains("=> \"")) {
                reasons.extend(upper_snake_literals(line));
            }
        }
        if path.ends_with("credit-ledger/src/domain/invariants.rs") {
            for line in text.lines().filter(|l| l.contains("invariant: \"")) {
                invariants.extend(upper_snake_literals(line));
            }
        }
    }
    (reasons, invariants)
}

/// The first-column codes of the table rows under `heading` in `doc`.
fn table_keys(doc: &str, heading: &str) -> BTreeSet<String> {
    let section = doc
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/errors.md has no {heading:?}"));
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn errors_md_lists_every_reason_and_no_other() {
    let (reasons, invariants) = reasons_in_source();
    assert!(reasons.len() > 15, "found only {reasons:?}");
    let doc = std::fs::read_to_string(root().join("docs/errors.md")).unwrap();
    for (what, heading, expected) in [
        ("reason", "## Reasons", &reasons),
        ("invariant", "## AuditLedger invariants", &invariants),
    ] {
        let documented = table_keys(&doc, heading);
        let missing: Vec<_> = expected.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(expected).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "docs/errors.md: {what}s the source has but the table lacks: {missing:?}; \
             rows for {what}s the source no longer has: {stale:?}"
        );
    }
}

#[test]
fn api_md_is_generated_from_the_descriptors() {
    let set = FileDescriptorSet::decode(billing_proto::FILE_DESCRIPTOR_SET).unwrap();
    let generated = api_reference(&set);
    let path = root().join("docs/api.md");
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/api.md is stale: run `UPDATE_DOCS=1 cargo test -p billing-e2e --test docs`"
    );
}

/// Which port serves a package's services.
fn port_of(package: &str) -> &'static str {
    match package {
        "billing.meter.v1" => "meter-ingest, port 50051",
        "billing.ledger.v1" => "credit-ledger, port 50052",
        "billing.invoicing.v1" => "invoicing, port 50053",
        _ => "shared",
    }
}

/// The leading comment at `path` in `file`, joined into one paragraph.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
        .replace('|', "\\|")
}

fn short(type_name: &str) -> String {
    type_name
        .trim_start_matches('.')
        .trim_start_matches("billing.")
        .to_owned()
}

fn field_type(field: &prost_types::FieldDescriptorProto, message: &DescriptorProto) -> String {
    let scalar = match field.r#type() {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => "",
    };
    let name = if scalar.is_empty() {
        short(field.type_name())
    } else {
        scalar.to_owned()
    };
    if field.label() == Label::Repeated {
        let entry = message.nested_type.iter().find(|n| {
            n.options.as_ref().is_some_and(|o| o.map_entry())
                && field.type_name().ends_with(&format!(".{}", n.name()))
        });
        if let Some(entry) = entry {
            let key = field_type(&entry.field[0], entry);
            let value = field_type(&entry.field[1], entry);
            return format!("map<{key}, {value}>");
        }
        return format!("repeated {name}");
    }
    name
}

fn message_section(
    out: &mut String,
    file: &FileDescriptorProto,
    message: &DescriptorProto,
    prefix: &str,
    path: &[i32],
) {
    if message.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    let name = format!("{prefix}{}", message.name());
    let _ = writeln!(out, "### {name}\n");
    let about = comment(file, path);
    if !about.is_empty() {
        let _ = writeln!(out, "{about}\n");
    }
    if !message.field.is_empty() {
        let _ = writeln!(out, "| field | type | description |\n|---|---|---|");
        for (i, field) in message.field.iter().enumerate() {
            let mut field_path = path.to_vec();
            field_path.extend([2, i32::try_from(i).unwrap()]);
            let mut about = comment(file, &field_path);
            if let Some(index) = field.oneof_index
                && !field.proto3_optional()
            {
                let oneof = message.oneof_decl[usize::try_from(index).unwrap()].name();
                about = format!("(one of `{oneof}`) {about}");
            }
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} |",
                field.name(),
                field_type(field, message),
                about.trim()
            );
        }
        out.push('\n');
    }
    for (i, nested) in message.nested_type.iter().enumerate() {
        let mut nested_path = path.to_vec();
        nested_path.extend([3, i32::try_from(i).unwrap()]);
        message_section(out, file, nested, &format!("{name}."), &nested_path);
    }
    for (i, nested) in message.enum_type.iter().enumerate() {
        let mut enum_path = path.to_vec();
        enum_path.extend([4, i32::try_from(i).unwrap()]);
        enum_section(out, file, nested, &format!("{name}."), &enum_path);
    }
}

fn enum_section(
    out: &mut String,
    file: &FileDescriptorProto,
    item: &prost_types::EnumDescriptorProto,
    prefix: &str,
    path: &[i32],
) {
    let _ = writeln!(out, "### {prefix}{}\n", item.name());
    let about = comment(file, path);
    if !about.is_empty() {
        let _ = writeln!(out, "{about}\n");
    }
    let _ = writeln!(out, "| value | number | description |\n|---|---|---|");
    for (i, value) in item.value.iter().enumerate() {
        let mut value_path = path.to_vec();
        value_path.extend([2, i32::try_from(i).unwrap()]);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            value.name(),
            value.number(),
            comment(file, &value_path)
        );
    }
    out.push('\n');
}

/// docs/api.md: every billing service, method, message and enum.
fn api_reference(set: &FileDescriptorSet) -> String {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the proto descriptors by `tests/tests/docs.rs`; do not edit\n\
         (`UPDATE_DOCS=1 cargo test -p billing-e2e --test docs` rewrites it). Errors:\n\
         [errors.md](errors.md). Every call needs `authorization: Bearer <key>`.\n\n",
    );
    let mut files: Vec<&FileDescriptorProto> = set
        .file
        .iter()
        .filter(|f| f.package().starts_with("billing."))
        .collect();
    files.sort_by(|a, b| a.name().cmp(b.name()));
    for file in files {
        let _ = writeln!(out, "## {} (`{}`)\n", file.package(), file.name());
        for (s, service) in file.service.iter().enumerate() {
            let s = i32::try_from(s).unwrap();
            let _ = writeln!(
                out,
                "### service {}.{} ({})\n",
                file.package(),
                service.name(),
                port_of(file.package())
            );
            let about = comment(file, &[6, s]);
            if !about.is_empty() {
                let _ = writeln!(out, "{about}\n");
            }
            let _ = writeln!(
                out,
                "| method | request | response | description |\n|---|---|---|---|"
            );
            for (m, method) in service.method.iter().enumerate() {
                let stream = |yes: bool| if yes { "stream " } else { "" };
                let _ = writeln!(
                    out,
                    "| `{}` | `{}{}` | `{}{}` | {} |",
                    method.name(),
                    stream(method.client_streaming()),
                    short(method.input_type()),
                    stream(method.server_streaming()),
                    short(method.output_type()),
                    comment(file, &[6, s, 2, i32::try_from(m).unwrap()])
                );
            }
            out.push('\n');
        }
        let package = file.package().trim_start_matches("billing.");
        for (i, message) in file.message_type.iter().enumerate() {
            message_section(
                &mut out,
                file,
                message,
                &format!("{package}."),
                &[4, i32::try_from(i).unwrap()],
            );
        }
        for (i, item) in file.enum_type.iter().enumerate() {
            enum_section(
                &mut out,
                file,
                item,
                &format!("{package}."),
                &[5, i32::try_from(i).unwrap()],
            );
        }
    }
    out
}
