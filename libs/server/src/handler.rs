//! The one shape of a unary gRPC handler, so that a handler is only what is
//! its own: check and convert the body, call one use case, convert the
//! answer.
//!
//! [`unary`] authenticates (the interceptor put a [`Principal`] in the
//! request) and wraps the answer; [`mutation`] also turns the AIP-155
//! `request_id` into the idempotency key that the use case records in its
//! write transaction. Service errors become statuses through each service's
//! `From<ServiceError> for Status` (its `grpc/status.rs`), so a handler
//! writes `?`.

use std::future::Future;

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_proto::HasRequestId;
use tonic::{Request, Response, Status};

use crate::auth::{Principal, principal};
use crate::idempotent::idempotency_key;
use crate::page::PageRequest;
use crate::status::invalid_argument;

/// Runs a unary RPC: who calls, what they sent, and the answer or a status.
pub async fn unary<Req, Resp, Fut>(
    request: Request<Req>,
    call: impl FnOnce(Principal, Req) -> Fut,
) -> Result<Response<Resp>, Status>
where
    Fut: Future<Output = Result<Resp, Status>>,
{
    let caller = principal(&request)?;
    call(caller, request.into_inner()).await.map(Response::new)
}

/// Runs a create or mutate RPC: as [`unary`], with the request's idempotency
/// key (None without a `request_id`; INVALID_ARGUMENT when it is too long).
pub async fn mutation<Req, Resp, Fut>(
    request: Request<Req>,
    call: impl FnOnce(Principal, Req, Option<IdempotencyKey>) -> Fut,
) -> Result<Response<Resp>, Status>
where
    Req: HasRequestId,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let caller = principal(&request)?;
    let body = request.into_inner();
    let key = idempotency_key(&body)?;
    call(caller, body, key).await.map(Response::new)
}

/// INVALID_ARGUMENT listing the violations.
pub fn invalid(violations: Vec<FieldViolation>) -> Status {
    invalid_argument(&violations)
}

/// An AIP-158 page request, or INVALID_ARGUMENT naming the bad field.
pub fn page(page_size: i32, page_token: &str) -> Result<PageRequest, Status> {
    PageRequest::parse(page_size, page_token).map_err(|v| invalid(vec![v]))
}

/// INVALID_ARGUMENT naming `field` when `value` is empty.
pub fn required(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(vec![FieldViolation::new(field, "is required")]));
    }
    Ok(())
}

/// `None` for proto3's empty string (an optional filter left unset).
pub fn optional(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}
