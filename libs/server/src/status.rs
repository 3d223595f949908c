//! `tonic::Status` builders carrying google.rpc details (AIP-193).
//!
//! Each service maps its own error enum to a status in one function, using
//! these builders so that every service speaks the same way.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use billing_money::FieldViolation;

/// Most field violations one BadRequest lists; the message says how many
/// there were in all. A request with 100,000 bad items gets a short answer.
pub const VIOLATIONS_LISTED_MAX: usize = 20;

/// Most characters of a field path or of an echoed client value in an error.
pub const ECHO_CHARS_MAX: usize = 64;

/// Most characters of a violation's description.
const DESCRIPTION_CHARS_MAX: usize = 256;

/// Most characters of a status message built from violations.
const MESSAGE_CHARS_MAX: usize = 900;

/// `text` cut to `max` characters, marked with `…` when cut: client input
/// echoed in an error stays small (a 1 MB id must not become a 1 MB trailer).
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// `INVALID_ARGUMENT` with a BadRequest listing the first
/// [`VIOLATIONS_LISTED_MAX`] violations (paths and descriptions clipped).
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let listed: Vec<FieldViolation> = violations
        .iter()
        .take(VIOLATIONS_LISTED_MAX)
        .map(|v| {
            FieldViolation::new(
                clip(&v.field, ECHO_CHARS_MAX),
                clip(&v.description, DESCRIPTION_CHARS_MAX),
            )
        })
        .collect();
    let mut message = String::new();
    for violation in &listed {
        let next = violation.to_string();
        if message.chars().count() + next.chars().count() > MESSAGE_CHARS_MAX {
            break;
        }
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&next);
    }
    if violations.len() > listed.len() {
        message = format!(
            "{} invalid fields, the first {} listed: {message}",
            violations.len(),
            listed.len()
        );
    }
    let mut details = ErrorDetails::new();
    for violation in listed {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A status with an ErrorInfo `{reason, domain}` (reason is UPPER_SNAKE).
pub fn with_reason(code: Code, reason: &str, domain: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, domain, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// What every service refuses the same way. Each service's error has a
/// `Refused` variant holding one; its `to_status` maps it with
/// [`Refusal::into_status`] under the service's ErrorInfo domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Invalid fields, each named by its path: INVALID_ARGUMENT + BadRequest.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// No such object in the caller's account: NOT_FOUND.
    #[error("no {kind} with id {id:?}")]
    NotFound {
        /// "credit grant", "meter", "invoice", …
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A state conflict: FAILED_PRECONDITION + ErrorInfo{reason}.
    #[error("{message}")]
    Conflict {
        /// UPPER_SNAKE reason, e.g. GRANT_ALREADY_APPLIED.
        reason: &'static str,
        /// Explanation for the client developer.
        message: String,
    },
    /// The same `request_id` with another payload: ALREADY_EXISTS +
    /// IDEMPOTENCY_KEY_REUSED.
    #[error("request_id was already used with a different request")]
    IdempotencyKeyReused,
}

impl Refusal {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// NOT_FOUND for `kind` `id`.
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        Self::NotFound {
            kind,
            id: id.to_owned(),
        }
    }

    /// FAILED_PRECONDITION with `reason`.
    pub fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            reason,
            message: message.into(),
        }
    }

    /// The status, with ErrorInfo reasons under `domain` (`ledger.billing`).
    pub fn into_status(self, domain: &str) -> Status {
        match self {
            Self::Invalid(violations) => invalid_argument(&violations),
            Self::NotFound { kind, id } => not_found(kind, &id),
            Self::Conflict { reason, message } => {
                with_reason(Code::FailedPrecondition, reason, domain, message)
            }
            Self::IdempotencyKeyReused => with_reason(
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
                domain,
                "request_id was already used with a different request",
            ),
        }
    }
}

/// The shorthands of a service error that can hold a [`Refusal`]
/// (implemented for every such error; bring it into scope to use them).
pub trait Refuse: From<Refusal> {
    /// INVALID_ARGUMENT listing the violations.
    fn fields(violations: Vec<FieldViolation>) -> Self {
        Refusal::Invalid(violations).into()
    }

    /// One invalid field.
    fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Refusal::invalid(field, description).into()
    }

    /// NOT_FOUND in the caller's account.
    fn not_found(kind: &'static str, id: &str) -> Self {
        Refusal::not_found(kind, id).into()
    }

    /// FAILED_PRECONDITION with an UPPER_SNAKE reason.
    fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal::conflict(reason, message).into()
    }
}

impl<E: From<Refusal>> Refuse for E {}

/// The status of a storage failure: a reused `request_id` is the caller's
/// ALREADY_EXISTS, an unreachable database is a retryable UNAVAILABLE, and
/// anything else is logged and answered as an opaque INTERNAL.
pub fn storage_status(error: billing_db::StoreError, service: &str, domain: &str) -> Status {
    match error {
        billing_db::StoreError::KeyReused => Refusal::IdempotencyKeyReused.into_status(domain),
        error if error.is_unavailable() => {
            tracing::warn!(%error, "database unavailable");
            Status::unavailable(format!("the {service} database is unavailable; retry"))
        }
        error => {
            tracing::error!(%error, "internal error");
            Status::internal("internal error")
        }
    }
}

/// `NOT_FOUND` for an object of the caller's account.
pub fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("no {kind} with id {:?}", clip(id, ECHO_CHARS_MAX)))
}

/// Checks `request_id`: at most 100 characters.
pub fn check_request_id(request_id: &str) -> Result<(), FieldViolation> {
    if request_id.chars().count() > 100 {
        return Err(FieldViolation::new(
            "request_id",
            "must be at most 100 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_fields() {
        let status = invalid_argument(&[
            FieldViolation::new("value", "must be positive").under("amount.monetary")
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "amount.monetary.value");
    }

    #[test]
    fn many_violations_are_capped_and_counted() {
        let violations: Vec<FieldViolation> = (0..100_000)
            .map(|i| FieldViolation::new(format!("items[{i}].price"), "is required"))
            .collect();
        let status = invalid_argument(&violations);
        let listed = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .len();
        assert_eq!(listed, VIOLATIONS_LISTED_MAX);
        assert!(
            status
                .message()
                .starts_with("100000 invalid fields, the first 20 listed")
        );
        assert!(status.message().len() < 1024, "{}", status.message().len());
    }

    #[test]
    fn echoed_client_input_is_clipped() {
        let huge = "x".repeat(1_000_000);
        let status =
            invalid_argument(&[FieldViolation::new(format!("metadata.{huge}"), "too long")]);
        let details = status.get_error_details();
        let field = &details.bad_request().unwrap().field_violations[0].field;
        assert_eq!(field.chars().count(), ECHO_CHARS_MAX + 1);
        assert!(not_found("customer", &huge).message().len() < 200);
        assert_eq!(clip("abc", 64), "abc");
    }

    #[test]
    fn reason_is_carried() {
        let status = with_reason(
            Code::FailedPrecondition,
            "GRANT_ALREADY_APPLIED",
            "ledger.billing",
            "no",
        );
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "GRANT_ALREADY_APPLIED"
        );
    }
}
