//! Prefixed, random, time-ordered ids (`credgr_01J…`).
//!
//! A ULID after the prefix: 48 bits of milliseconds then 80 random bits, in
//! Crockford base32. One process-wide monotonic generator makes ids created
//! in the same millisecond still sort in creation order, so "newest first"
//! lists ordered by id are exact within a process.

use std::sync::{Mutex, PoisonError};

use ulid::{Generator, Ulid};

static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// A new id with the given prefix (without the underscore).
pub fn new_id(prefix: &str) -> String {
    // Ids order by wall time whatever clock the caller runs on (a test's
    // manual clock must not make two processes' ids collide).
    let now = crate::clock::wall_time();
    let ulid = GENERATOR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .generate_from_datetime(now)
        // 2^80 ids in one millisecond overflowed: fall back to a random one.
        .unwrap_or_else(|_| Ulid::from_datetime(now));
    format!("{prefix}_{ulid}")
}

/// Whether `id` looks like an id with this prefix. Used to reject obvious
/// garbage early; unknown well-formed ids are NOT_FOUND later.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_sort_by_creation() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("credgr")).collect();
        assert!(ids.iter().all(|id| has_prefix(id, "credgr")));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(!has_prefix("credgr_", "credgr"));
        assert!(!has_prefix("cus_x", "credgr"));
    }
}
