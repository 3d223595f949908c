//! Portable SQL building helpers.
//!
//! Both backends accept `$N` placeholders, so statements are written once.

use std::fmt::Write;

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
