//! Prefixed, random, time-ordered ids (`credgr_01J…`).
//!
//! A ULID after the prefix: 48 bits of milliseconds then 80 random bits, in
//! Crockford base32, so ids sort by creation time to the millisecond.

use std::time::SystemTime;

/// A new id with the given prefix (without the underscore).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::from_datetime(SystemTime::now()))
}

/// Whether `id` looks like an id with this prefix. Used to reject obvious
/// garbage early; unknown well-formed ids are NOT_FOUND later.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_sort_by_time() {
        let first = new_id("credgr");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("credgr");
        assert!(has_prefix(&first, "credgr"));
        assert!(first < second);
        assert!(!has_prefix("credgr_", "credgr"));
        assert!(!has_prefix("cus_x", "credgr"));
    }
}
