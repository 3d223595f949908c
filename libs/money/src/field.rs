//! The vocabulary of a refused input: which field, and why.
//!
//! It lives beside money because every domain layer reports bad amounts
//! with it and the domain may depend on nothing else of ours; the gRPC layer
//! turns it into a google.rpc.BadRequest.

/// One invalid field: its dotted path (`amount.monetary.value`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldViolation {
    /// Dotted field path in the request.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation nested under `parent` (`amount` + `monetary.value`).
    pub fn under(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            description: self.description,
        }
    }
}
