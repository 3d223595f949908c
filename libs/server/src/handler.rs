//! The one shape of a unary gRPC handler, so that a handler is only what is
//! its own: check and convert the body, call one use case, convert the
//! answer.
//!
//! [`unary_service!`] implements a generated tonic service trait: each
//! listed method authenticates through [`serve`] (the interceptor put a
//! [`Principal`] in the request) and hands a [`Call`] to the inherent method
//! of the same name, whose answer it wraps. For the methods listed as
//! mutations, [`serve_mutation`] first turns the AIP-155 `request_id` into
//! the idempotency key ([`Call::key`]) that the use case records in its
//! write transaction, so a bad key is refused before anything else. Service errors become statuses through each
//! service's `From<ServiceError> for Status` (its `grpc/status.rs`), so a
//! handler writes `?`.

use std::future::Future;

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_proto::HasRequestId;
use billing_proto::strings::Strings;
use tonic::{Request, Response, Status};

use crate::auth::{Principal, principal};
use crate::idempotent::idempotency_key;
use crate::page::PageRequest;
use crate::status::invalid_argument;

#[doc(hidden)]
pub use pastey as __pastey;
#[doc(hidden)]
pub use tonic as __tonic;

/// One unary call as its handler sees it: who calls, what they sent, and
/// the idempotency key of a mutation.
#[derive(Debug)]
pub struct Call<B> {
    /// The authenticated caller.
    pub caller: Principal,
    /// The request message.
    pub body: B,
    /// A mutation's idempotency key (None without a `request_id`, and for
    /// reads).
    pub key: Option<IdempotencyKey>,
}

impl<B> Call<B> {
    /// The caller's account: every read and write is scoped to it.
    pub fn account(&self) -> &str {
        &self.caller.account
    }

    /// The idempotency key, for the use case.
    pub fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }
}

/// What a handler returns: the response message or a status.
pub type Reply<T> = Result<T, Status>;

/// Runs one unary RPC: authenticates, hands the [`Call`] to `handle`, wraps
/// its answer.
pub async fn serve<B, R, Fut>(
    request: Request<B>,
    handle: impl FnOnce(Call<B>) -> Fut,
) -> Result<Response<R>, Status>
where
    B: Strings,
    Fut: Future<Output = Reply<R>>,
{
    handle(accept(request)?).await.map(Response::new)
}

/// The caller and the body, once the body's strings pass the checks.
fn accept<B: Strings>(request: Request<B>) -> Result<Call<B>, Status> {
    let caller = principal(&request)?;
    let body = request.into_inner();
    check_strings(&body)?;
    Ok(Call {
        caller,
        body,
        key: None,
    })
}

/// Runs one create or mutate RPC: as [`serve`], with the request's
/// idempotency key checked first (INVALID_ARGUMENT when too long).
pub async fn serve_mutation<B, R, Fut>(
    request: Request<B>,
    handle: impl FnOnce(Call<B>) -> Fut,
) -> Result<Response<R>, Status>
where
    B: HasRequestId + Strings,
    Fut: Future<Output = Reply<R>>,
{
    let mut call = accept(request)?;
    call.key = idempotency_key(&call.body)?;
    handle(call).await.map(Response::new)
}

/// Implements a generated tonic service trait whose unary methods are
/// listed by name: `get_meter` takes `pb::GetMeterRequest`, answers
/// `pb::GetMeterResponse`, and is handled by the inherent method
/// `get_meter(&self, Call<pb::GetMeterRequest>) -> Reply<pb::GetMeterResponse>`.
/// Methods under `mutations` go through [`serve_mutation`], the others
/// through [`serve`]. Anything after the `;` (streaming methods,
/// associated types) is copied into the impl as written.
///
/// ```ignore
/// unary_service! {
///     impl MeterService for MeterGrpc, pb { get_meter } mutations { create_meter };
/// }
/// ```
#[macro_export]
macro_rules! unary_service {
    (
        impl $trait:ident for $ty:ident, $pb:ident { $($read:ident)* }
        mutations { $($write:ident)* };
        $($extra:tt)*
    ) => {
        $crate::handler::__pastey::paste! {
            #[$crate::handler::__tonic::async_trait]
            impl $trait for $ty {
                $(
                    async fn $read(
                        &self,
                        request: $crate::handler::__tonic::Request<$pb::[<$read:camel Request>]>,
                    ) -> ::std::result::Result<
                        $crate::handler::__tonic::Response<$pb::[<$read:camel Response>]>,
                        $crate::handler::__tonic::Status,
                    > {
                        $crate::handler::serve(request, |call| <$ty>::$read(self, call)).await
                    }
                )*
                $(
                    async fn $write(
                        &self,
                        request: $crate::handler::__tonic::Request<$pb::[<$write:camel Request>]>,
                    ) -> ::std::result::Result<
                        $crate::handler::__tonic::Response<$pb::[<$write:camel Response>]>,
                        $crate::handler::__tonic::Status,
                    > {
                        $crate::handler::serve_mutation(request, |call| <$ty>::$write(self, call))
                            .await
                    }
                )*
                $($extra)*
            }
        }
    };
}

/// INVALID_ARGUMENT naming every string of `body` that holds a control
/// character or is over 4 KiB (`billing_proto::strings`), identically on
/// both backends and before anything is read or written.
pub fn check_strings(body: &impl Strings) -> Result<(), Status> {
    let violations = billing_proto::strings::check(body);
    if violations.is_empty() {
        return Ok(());
    }
    Err(invalid(
        violations
            .into_iter()
            .map(|v| FieldViolation::new(v.field, v.problem))
            .collect(),
    ))
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
