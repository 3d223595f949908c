//! `billing ledger export`: the account's balance transactions over a
//! period, streamed from ExportLedgerEntries to CSV or JSON Lines, one
//! batch in memory at a time.

use std::io::Write;

use anyhow::Context;
use billing_proto::common::v1 as common;
use billing_proto::ledger::v1 as pb;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use chrono::{DateTime, Utc};

/// The file formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header line, then one comma-separated line per transaction.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `billing ledger export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// csv or jsonl.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// First effective time included (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    from: DateTime<Utc>,
    /// First effective time excluded (RFC 3339).
    #[arg(long)]
    to: DateTime<Utc>,
    /// Only this customer's transactions.
    #[arg(long)]
    customer: Option<String>,
    /// Write here instead of to standard output.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// The ledger's address.
    #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:50052")]
    ledger_url: String,
    /// An API key of the account to export.
    #[arg(long, env = "BILLING_API_KEY")]
    api_key: String,
}

/// The CSV columns, in order.
const COLUMNS: [&str; 14] = [
    "id",
    "effective_at",
    "created",
    "customer",
    "credit_grant",
    "category",
    "direction",
    "type",
    "asset",
    "amount",
    "invoice",
    "invoice_line_item",
    "cost_basis_currency",
    "cost_basis_unit_amount_decimal",
];

/// One transaction as the export's columns (amounts as the API gives
/// them: money in minor units, pricing units as decimal strings).
fn fields(entry: &pb::LedgerEntry) -> [String; 14] {
    let tx = entry.transaction.clone().unwrap_or_default();
    let (direction, kind, amount, invoice, line) = match (&tx.credit, &tx.debit) {
        (Some(c), _) => (
            "credit",
            name(c.r#type().as_str_name(), "CREDIT_TYPE_"),
            c.amount.clone(),
            c.invoice.clone(),
            c.invoice_line_item.clone(),
        ),
        (None, Some(d)) => (
            "debit",
            name(d.r#type().as_str_name(), "DEBIT_TYPE_"),
            d.amount.clone(),
            d.invoice.clone(),
            d.invoice_line_item.clone(),
        ),
        (None, None) => ("", String::new(), None, String::new(), String::new()),
    };
    let (asset, value) = match amount.and_then(|a| a.kind) {
        Some(common::amount::Kind::Monetary(m)) => (m.currency, m.value.to_string()),
        Some(common::amount::Kind::CustomPricingUnit(p)) => (p.id, p.value),
        None => (String::new(), String::new()),
    };
    let time = |t: Option<prost_types::Timestamp>| {
        t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default()
    };
    let basis = tx.cost_basis.clone().unwrap_or_default();
    [
        tx.id,
        time(tx.effective_at),
        time(tx.created),
        tx.customer,
        tx.credit_grant,
        name(entry.category().as_str_name(), "CREDIT_GRANT_CATEGORY_"),
        direction.to_owned(),
        kind,
        asset,
        value,
        invoice,
        line,
        basis.currency,
        basis.unit_amount_decimal,
    ]
}

/// An enum value as the API's JSON clients know it in lower case, without
/// its type's prefix: `CREDIT_TYPE_CREDITS_GRANTED` is `credits_granted`.
fn name(value: &str, prefix: &str) -> String {
    value
        .strip_prefix(prefix)
        .unwrap_or(value)
        .to_ascii_lowercase()
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its
/// quotes doubled.
fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

/// Streams the export to the output; returns how many transactions.
pub async fn export(args: ExportArgs) -> anyhow::Result<u64> {
    let url = args.ledger_url.clone();
    let mut client = LedgerServiceClient::connect(url.clone())
        .await
        .with_context(|| format!("cannot reach the ledger at {url} (--ledger-url)"))?
        .max_decoding_message_size(16 * 1024 * 1024);
    let mut request = tonic::Request::new(pb::ExportLedgerEntriesRequest {
        from: Some(billing_server::time::to_proto(args.from)),
        to: Some(billing_server::time::to_proto(args.to)),
        customer: args.customer.clone().unwrap_or_default(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", args.api_key)
            .parse()
            .context("the API key has characters a header cannot carry")?,
    );
    let answered = |status: tonic::Status| {
        anyhow::anyhow!(
            "the ledger at {url} answered {:?}: {}",
            status.code(),
            status.message()
        )
    };
    let mut stream = client
        .export_ledger_entries(request)
        .await
        .map_err(answered)?
        .into_inner();
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(sink);
    if args.format == Format::Csv {
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    let mut written = 0_u64;
    while let Some(batch) = stream.message().await.map_err(answered)? {
        for entry in &batch.entries {
            let values = fields(entry);
            match args.format {
                Format::Csv => {
                    let line: Vec<_> = values.iter().map(|v| csv_field(v)).collect();
                    writeln!(out, "{}", line.join(","))?;
                }
                Format::Jsonl => {
                    let object: serde_json::Map<String, serde_json::Value> = COLUMNS
                        .iter()
                        .zip(values)
                        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v)))
                        .collect();
                    serde_json::to_writer(&mut out, &object)?;
                    writeln!(out)?;
                }
            }
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("in_1"), "in_1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
