//! Portable SQL building helpers.
//!
//! Both backends accept `$N` placeholders, so statements are written once.

use std::fmt::Write;

/// `SELECT {columns} FROM {table} WHERE account = $1 AND id = $2`, both
/// bound: one object of one account (every table's primary key starts with
/// `(account, id)`), for `fetch_optional` or, under a lock, `fetch_one`.
pub fn one_of_account<'a>(
    columns: &str,
    table: &str,
    account: &'a str,
    id: &'a str,
) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments> {
    let sql = format!("SELECT {columns} FROM {table} WHERE account = $1 AND id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account).bind(id)
}

/// `($s, $s+1, …), (…)` for `rows` rows of `columns` values, numbering from `start`.
///
/// Used for multi-row inserts: one statement per table for a whole batch.
pub fn values_rows(rows: usize, columns: usize, start: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    let mut n = start;
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(out, "${n}");
            n += 1;
        }
        out.push(')');
    }
    out
}

/// `$s, $s+1, …` for an `IN (…)` list of `count` values.
pub fn list(count: usize, start: usize) -> String {
    (start..start + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_placeholders() {
        assert_eq!(values_rows(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_rows(1, 1, 4), "($4)");
        assert_eq!(list(3, 2), "$2, $3, $4");
    }
}

/// A `WHERE` clause holding only the conditions a request actually sets.
///
/// One SQL text with `($2 IS NULL OR customer = $2)` for every optional
/// filter cannot use the filter's index once PostgreSQL switches to a
/// generic plan for the prepared statement: it walks the account's whole
/// primary key instead, so a list got slower as the account grew. Each
/// combination of filters gets its own text here, and its own plan.
#[derive(Debug, Clone)]
pub struct Conditions<'a> {
    sql: String,
    binds: Vec<&'a str>,
}

impl<'a> Conditions<'a> {
    /// `column = $1`: the condition every list starts with (the account).
    pub fn new(column: &str, value: &'a str) -> Self {
        Self {
            sql: format!("{column} = $1"),
            binds: vec![value],
        }
    }

    /// `AND column = $n` when `value` is set.
    pub fn eq(self, column: &str, value: Option<&'a str>) -> Self {
        self.add(column, "=", value)
    }

    /// The page's SQL text: conditions, newest first, `LIMIT` the next parameter.
    fn page_sql(&self, select: &str, id: &str) -> String {
        format!(
            "{select} WHERE {} ORDER BY {id} DESC LIMIT ${}",
            self.sql,
            self.binds.len() + 1
        )
    }

    /// `AND column < $n` when `value` is set (keyset paging on ids).
    fn before(self, column: &str, value: Option<&'a str>) -> Self {
        self.add(column, "<", value)
    }

    fn add(mut self, column: &str, operator: &str, value: Option<&'a str>) -> Self {
        if let Some(value) = value {
            self.binds.push(value);
            self.sql
                .push_str(&format!(" AND {column} {operator} ${}", self.binds.len()));
        }
        self
    }

    /// `{select} WHERE {conditions} [AND {id} < before] ORDER BY {id} DESC
    /// LIMIT {limit}` with every value bound: one keyset page, newest first.
    /// `select` is `SELECT columns FROM table [JOIN …]`.
    pub fn newest_first(
        self,
        select: &str,
        id: &str,
        before: Option<&'a str>,
        limit: i64,
    ) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments> {
        let paged = self.before(id, before);
        let sql = paged.page_sql(select, id);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in paged.binds {
            query = query.bind(value);
        }
        query.bind(limit)
    }
}

#[cfg(test)]
mod conditions_tests {
    use super::Conditions;

    #[test]
    fn only_set_conditions_are_written() {
        let all = Conditions::new("account", "a")
            .eq("customer", Some("c"))
            .eq("status", None)
            .before("id", Some("x"));
        assert_eq!(all.sql, "account = $1 AND customer = $2 AND id < $3");
        assert_eq!(all.binds, ["a", "c", "x"]);
        let bare = Conditions::new("account", "a").eq("customer", None);
        assert_eq!(bare.sql, "account = $1");
        assert_eq!(
            bare.page_sql("SELECT id FROM t", "id"),
            "SELECT id FROM t WHERE account = $1 ORDER BY id DESC LIMIT $2"
        );
    }
}
