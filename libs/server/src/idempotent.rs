//! The idempotency key of a request carrying an AIP-155 `request_id`.

use billing_db::idempotency::IdempotencyKey;
use billing_proto::HasRequestId;
use tonic::Status;

use crate::status::{check_request_id, invalid_argument};

/// The key with the fingerprint of the method and the request without the
/// key; None when the request has no key; INVALID_ARGUMENT when too long.
pub fn idempotency_key<M: HasRequestId>(request: &M) -> Result<Option<IdempotencyKey>, Status> {
    let request_id = request.request_id();
    if request_id.is_empty() {
        return Ok(None);
    }
    check_request_id(request_id).map_err(|v| invalid_argument(&[v]))?;
    let mut payload = request.clone();
    payload.clear_request_id();
    Ok(Some(IdempotencyKey {
        request_id: request_id.to_owned(),
        fingerprint: crate::fingerprint::fingerprint(M::METHOD, &payload.encode_to_vec()),
    }))
}
