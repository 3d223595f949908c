//! Forms and query strings (`application/x-www-form-urlencoded`), and the
//! services' field errors mapped back onto form fields.

use std::collections::BTreeMap;

use tonic_types::StatusExt;

use crate::error::PageError;
use crate::session::{Session, same};

/// Longest form body the console reads, in bytes.
pub const FORM_BYTES_MAX: usize = 64 * 1024;
/// Most fields a form may have.
const FIELDS_MAX: usize = 500;

/// A form's or query's fields in order (a key may repeat: checkboxes).
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses `a=1&b=2`.
    pub fn parse(body: &[u8]) -> Result<Self, PageError> {
        let fields: Vec<_> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .take(FIELDS_MAX + 1)
            .collect();
        if fields.len() > FIELDS_MAX {
            return Err(PageError::BadRequest(format!(
                "a form has at most {FIELDS_MAX} fields"
            )));
        }
        Ok(Self(fields))
    }

    /// The query string of a URI.
    pub fn query(uri: &axum::http::Uri) -> Result<Self, PageError> {
        Self::parse(uri.query().unwrap_or_default().as_bytes())
    }

    /// The first value of `name`, trimmed; "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Refuses a form without the session's CSRF token.
    pub fn check_csrf(&self, session: &Session) -> Result<(), PageError> {
        if same(self.get("csrf"), &session.csrf) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

/// Errors to show next to each form field, and the rest above the form.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    by_field: BTreeMap<&'static str, Vec<String>>,
    /// Errors no field of the form matches.
    pub general: Vec<String>,
}

impl FieldErrors {
    /// Adds an error for form field `field`.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.by_field.entry(field).or_default().push(message.into());
    }

    /// The errors of `field`.
    pub fn of(&self, field: &str) -> &[String] {
        self.by_field.get(field).map_or(&[], Vec::as_slice)
    }

    /// True when there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.general.is_empty()
    }

    /// An INVALID_ARGUMENT's BadRequest violations, each on the form field
    /// whose gRPC field path it names (by `map`: path prefix → form field);
    /// None for any other status (the page shows it as an error page).
    pub fn from_status(
        status: &tonic::Status,
        map: &[(&str, &'static str)],
    ) -> Option<FieldErrors> {
        if status.code() != tonic::Code::InvalidArgument {
            return None;
        }
        let mut errors = FieldErrors::default();
        let violations = status
            .get_details_bad_request()
            .map(|b| b.field_violations)
            .unwrap_or_default();
        if violations.is_empty() {
            errors.general.push(status.message().to_owned());
        }
        for violation in violations {
            let field = map
                .iter()
                .find(|(prefix, _)| path_under(&violation.field, prefix))
                .map(|(_, field)| *field);
            match field {
                Some(field) => errors.add(field, violation.description),
                None => errors
                    .general
                    .push(format!("{}: {}", violation.field, violation.description)),
            }
        }
        Some(errors)
    }
}

/// Whether the dotted path `path` is `prefix` or lies under it.
fn path_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn repeated_keys_are_kept_in_order() {
        let fields = Fields::parse(b"prices=a&name=+x+&prices=b&prices=").unwrap();
        assert_eq!(fields.all("prices"), ["a", "b"]);
        assert_eq!(fields.get("name"), "x");
        assert_eq!(fields.get("absent"), "");
    }

    #[test]
    fn violations_land_on_their_fields() {
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "bad",
            tonic_types::ErrorDetails::with_bad_request(vec![
                tonic_types::FieldViolation::new("amount.monetary.value", "must be positive"),
                tonic_types::FieldViolation::new("amounts", "not a prefix match"),
                tonic_types::FieldViolation::new("customer", "unknown"),
            ]),
        );
        let errors = FieldErrors::from_status(&status, &[("amount", "amount")]).unwrap();
        assert_eq!(errors.of("amount"), ["must be positive"]);
        assert_eq!(errors.general.len(), 2);
        assert!(FieldErrors::from_status(&tonic::Status::not_found("x"), &[]).is_none());
    }
}
