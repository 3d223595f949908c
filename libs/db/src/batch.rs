//! Statements that return nothing, sent together.
//!
//! On SQLite every statement is a round trip to the connection's worker
//! thread, and the one writer's turnaround is every write path's
//! throughput: a [`Batch`] sends its statements as one multi-statement call
//! there (each statement's `$N` placeholders renumbered past the previous
//! ones'; SQLite binds `$N` across the statements of one call). PostgreSQL's
//! extended protocol takes one statement per message, so there they become
//! one statement: every statement but the last a data-modifying `WITH`
//! clause. Its parts see the same snapshot and run in no set order, so a
//! batch's statements must write different rows and not read each other's
//! writes (independent INSERTs and UPDATEs of one change).

use crate::{Backend, Tx};

/// A value bound to a batched statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A 64-bit integer.
    Int(i64),
    /// A nullable integer.
    OptInt(Option<i64>),
    /// Text.
    Text(String),
    /// Nullable text.
    OptText(Option<String>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Self {
        Self::OptInt(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        Self::OptText(value)
    }
}

/// Write statements to run together, in order, in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    statements: Vec<(String, Vec<Value>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a statement whose placeholders are `$1..$n`, bound to `values`
    /// in order. It must return no rows and hold no `$` but its
    /// placeholders.
    pub fn push(&mut self, sql: String, values: Vec<Value>) {
        self.statements.push((sql, values));
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the statements in `tx`, in one call.
    pub async fn run(self, tx: &mut Tx, backend: Backend) -> Result<(), sqlx::Error> {
        if self.statements.len() < 2 {
            return self.run_each(tx).await.map(|_| ());
        }
        let last = self.statements.len() - 1;
        let mut sql = String::new();
        let mut values = Vec::new();
        for (i, (text, bound)) in self.statements.into_iter().enumerate() {
            let text = renumber(&text, values.len());
            match backend {
                Backend::Sqlite => {
                    sql.push_str(&text);
                    sql.push_str(";\n");
                }
                Backend::Postgres if i == last => {
                    sql.push(' ');
                    sql.push_str(&text);
                }
                Backend::Postgres => {
                    sql.push_str(if i == 0 { "WITH " } else { ", " });
                    sql.push_str(&format!("batched_{i} AS ({text})"));
                }
            }
            values.extend(bound);
        }
        execute(tx, &sql, values).await.map(|_| ())
    }

    /// Runs the statements one call each, in order (either backend).
    pub async fn run_each(self, tx: &mut Tx) -> Result<u64, sqlx::Error> {
        let mut affected = 0;
        for (text, bound) in self.statements {
            affected += execute(tx, &text, bound).await?;
        }
        Ok(affected)
    }
}

async fn execute(tx: &mut Tx, sql: &str, values: Vec<Value>) -> Result<u64, sqlx::Error> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::OptInt(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::OptText(v) => query.bind(v),
        };
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// `sql` with every `$N` placeholder moved to `$(N + offset)`.
fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn placeholders_move_past_the_previous_statements() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE id = $2", 10),
            "UPDATE t SET a = $11, b = $22 WHERE id = $12"
        );
        assert_eq!(renumber("SELECT $1", 0), "SELECT $1");
    }
}
