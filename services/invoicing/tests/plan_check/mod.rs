//! The plan test's machinery: a tracing layer that records the statements
//! sqlx sends, and the check of each statement's generic plan.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// RPCs the workload called successfully.
pub static CALLED: LazyLock<Mutex<BTreeSet<&'static str>>> = LazyLock::new(Mutex::default);

/// Awaits one RPC, requires success, records its name in [`CALLED`].
macro_rules! rpc {
    ($name:literal, $call:expr) => {{
        let response = $call.await.expect($name).into_inner();
        plan_check::CALLED.lock().unwrap().insert($name);
        response
    }};
}

/// The RPCs of the descriptors whose path `covered` accepts that the
/// workload never called.
pub fn missed(covered: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let schema = billing_testkit::fuzz::Schema::load();
    let called = CALLED.lock().unwrap().clone();
    schema
        .rpcs
        .iter()
        .filter(|rpc| covered(rpc.path))
        .map(|rpc| rpc.path.rsplit('/').next().unwrap_or(rpc.path))
        .filter(|name| !called.contains(name))
        .collect()
}

/// Every statement sqlx logged while the test ran.
pub static STATEMENTS: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Mutex::default);

/// Records the text of each `sqlx::query` event.
pub struct Recorder;

#[derive(Default)]
struct Statement {
    summary: String,
    full: String,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.full = value.trim().to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.target() == "sqlx::query" {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut statement = Statement::default();
        event.record(&mut statement);
        let text = if statement.full.is_empty() {
            statement.summary
        } else {
            statement.full
        };
        STATEMENTS.lock().unwrap().insert(text);
    }
}

/// Explains every recorded query on the databases at `urls` (each on the
/// first that has its tables); returns how many were explained and what is
/// wrong with the others.
pub async fn check_recorded(urls: &[&str]) -> (usize, Vec<String>) {
    let statements: Vec<String> = STATEMENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|s| is_query(s))
        .cloned()
        .collect();
    let mut connections = Vec::new();
    for url in urls {
        let mut connection = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
            .execute(&mut connection)
            .await
            .unwrap();
        connections.push(connection);
    }
    let mut failures = Vec::new();
    let mut explained = 0;
    for statement in &statements {
        match explain(&mut connections, statement).await {
            Ok(plan) => {
                explained += 1;
                let mut problems = Vec::new();
                check_plan(&mut connections, &plan["Plan"], &mut problems).await;
                if !problems.is_empty() {
                    failures.push(format!(
                        "{statement}\n  {}\n  plan: {plan}",
                        problems.join("; ")
                    ));
                }
            }
            Err(error) => failures.push(format!("{statement}\n  could not be explained: {error}")),
        }
    }
    for connection in connections {
        connection.close().await.unwrap();
    }
    (explained, failures)
}

/// A statement the planner plans (not BEGIN, COMMIT, SET, migrations' DDL).
fn is_query(statement: &str) -> bool {
    let first = statement
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"
    ) && !statement.contains("_sqlx_migrations")
}

/// The generic plan of `statement` on the first database that has its tables.
async fn explain(
    connections: &mut [PgConnection],
    statement: &str,
) -> Result<serde_json::Value, String> {
    let mut errors = Vec::new();
    for connection in connections.iter_mut() {
        let _ = sqlx::raw_sql("DEALLOCATE q")
            .execute(&mut *connection)
            .await;
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(format!("PREPARE q AS {statement}")))
            .execute(&mut *connection)
            .await
        {
            errors.push(error.to_string());
            continue;
        }
        let parameters: i32 = sqlx::query_scalar(
            "SELECT coalesce(cardinality(parameter_types), 0) FROM pg_prepared_statements WHERE name = 'q'",
        )
        .fetch_one(&mut *connection)
        .await
        .map_err(|e| e.to_string())?;
        let arguments = if parameters == 0 {
            String::new()
        } else {
            format!("({})", vec!["NULL"; parameters as usize].join(", "))
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN (FORMAT JSON) EXECUTE q{arguments}"
        )))
        .fetch_one(&mut *connection)
        .await
        .map_err(|e| e.to_string())?;
        // JSON's binary form is its text; sqlx is built without its json feature.
        let text: String = row.try_get_unchecked(0).map_err(|e| e.to_string())?;
        let plan: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        return Ok(plan[0].clone());
    }
    Err(errors.join(" / "))
}

/// Appends what is wrong with `node` and its children to `problems`.
async fn check_plan(
    connections: &mut [PgConnection],
    node: &serde_json::Value,
    problems: &mut Vec<String>,
) {
    let mut stack = vec![node.clone()];
    while let Some(node) = stack.pop() {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        let relation = node["Relation Name"].as_str().unwrap_or_default();
        if kind == "Seq Scan" && !relation.starts_with("pg_") {
            problems.push(format!("sequential scan of {relation}"));
        }
        let condition = node["Index Cond"]
            .as_str()
            .or(node["Recheck Cond"].as_str())
            .unwrap_or_default();
        let filter = node["Filter"].as_str().unwrap_or_default();
        if has_parameter_equality(filter) && !narrows_to_an_object(condition) {
            problems.push(format!(
                "{kind} of {relation} filters {filter} after an index condition {condition:?} \
                 that only narrows to the account"
            ));
        }
        if let Some(index) = node["Index Name"].as_str() {
            match leading_column(connections, index).await {
                Some((column, _)) if condition.contains(&column) => {}
                // A partial index whose predicate is the filter (the worker's
                // queues): it holds only the rows the query wants.
                Some((_, true)) if condition.is_empty() => {}
                Some((column, _)) => problems.push(format!(
                    "{kind} on {index} without a condition on its leading column {column} ({condition:?})"
                )),
                None => problems.push(format!("{index}: unknown index")),
            }
        }
        if let Some(children) = node["Plans"].as_array() {
            stack.extend(children.iter().cloned());
        }
    }
}

/// Whether a plan condition compares a column with a request parameter.
fn has_parameter_equality(condition: &str) -> bool {
    condition.contains(" = $")
}

/// Whether an index condition narrows the scan to one object: an equality
/// on a column other than the tenant (`account`) and low-cardinality
/// `status`. A filter applied after such a condition costs what the object
/// holds (a customer's grants, an invoice's lines), which is the point.
fn narrows_to_an_object(condition: &str) -> bool {
    condition
        .split("AND")
        .filter_map(|part| {
            part.trim_matches(|c: char| c == '(' || c == ')' || c == ' ')
                .split_once(" = ")
        })
        .any(|(column, _)| {
            let column = column.rsplit('.').next().unwrap_or(column);
            column != "account" && column != "status"
        })
}

/// The first column of `index` and whether the index is partial, from
/// whichever database has it.
async fn leading_column(connections: &mut [PgConnection], index: &str) -> Option<(String, bool)> {
    for connection in connections.iter_mut() {
        let column: Option<(String, bool)> = sqlx::query_as(
            "SELECT a.attname::text, i.indpred IS NOT NULL FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE c.relname = $1",
        )
        .bind(index)
        .fetch_optional(&mut *connection)
        .await
        .ok()
        .flatten();
        if column.is_some() {
            return column;
        }
    }
    None
}
