//! The vocabulary of a refused input: which field, and why; and the
//! metadata limits every object shares.
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

/// Most metadata keys on one object (as Stripe).
pub const METADATA_KEYS_MAX: usize = 50;
/// Longest metadata key.
pub const METADATA_KEY_CHARS_MAX: usize = 40;
/// Longest metadata value.
pub const METADATA_VALUE_CHARS_MAX: usize = 500;
/// Metadata limits (Stripe's).
pub fn check_metadata(
    metadata: &std::collections::BTreeMap<String, String>,
    field: &str,
    out: &mut Vec<FieldViolation>,
) {
    if metadata.len() > METADATA_KEYS_MAX {
        out.push(FieldViolation::new(
            field,
            format!("at most {METADATA_KEYS_MAX} keys"),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > METADATA_KEY_CHARS_MAX {
            out.push(FieldViolation::new(
                format!("{field}[{key}]"),
                format!("keys must be 1 to {METADATA_KEY_CHARS_MAX} characters"),
            ));
        }
        if value.chars().count() > METADATA_VALUE_CHARS_MAX {
            out.push(FieldViolation::new(
                format!("{field}[{key}]"),
                format!("values must be at most {METADATA_VALUE_CHARS_MAX} characters"),
            ));
        }
    }
}
