//! Request fingerprints for idempotency: SHA-256 over the method name and the
//! request's protobuf encoding with `request_id` cleared.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `method` and `payload`.
pub fn fingerprint(method: &str, payload: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(payload);
    hex::encode(hasher.finalize())
}
