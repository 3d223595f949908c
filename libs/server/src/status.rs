//! `tonic::Status` builders carrying google.rpc details (AIP-193).
//!
//! Each service maps its own error enum to a status in one function, using
//! these builders so that every service speaks the same way.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use billing_money::FieldViolation;

/// `INVALID_ARGUMENT` with a BadRequest listing every violation.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A status with an ErrorInfo `{reason, domain}` (reason is UPPER_SNAKE).
pub fn with_reason(code: Code, reason: &str, domain: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, domain, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// `NOT_FOUND` for an object of the caller's account.
pub fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("no {kind} with id {id:?}"))
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
