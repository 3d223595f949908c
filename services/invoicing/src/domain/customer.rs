//! Customers.

use std::collections::BTreeMap;

use billing_money::FieldViolation;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest name, e-mail or external id.
pub const TEXT_MAX: usize = 200;
/// Most metadata keys.
pub const METADATA_KEYS_MAX: usize = 50;

/// A customer was created.
pub const CUSTOMER_CREATED: &str = "customer.created";
/// A customer's name, e-mail or metadata changed.
pub const CUSTOMER_UPDATED: &str = "customer.updated";

/// A customer of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// `cus_…`
    pub id: String,
    /// The account's own id; unique per account when set.
    pub external_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Billing e-mail.
    pub email: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// The parent customer (a credit pool's next level up).
    #[serde(default)]
    pub parent: Option<String>,
}

/// Deepest customer hierarchy: a customer and at most four ancestors.
pub const HIERARCHY_DEPTH_MAX: usize = 5;

/// A change to a customer.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    /// New name.
    pub name: Option<String>,
    /// New e-mail.
    pub email: Option<String>,
    /// Merged into metadata; an empty value removes the key.
    pub metadata: BTreeMap<String, String>,
    /// A new parent (`Some(None)` removes it); checked by the store.
    pub parent: Option<Option<String>>,
}

impl CustomerChanges {
    /// Applies the change, keeping metadata within bounds.
    pub fn apply(self, customer: &mut Customer) -> Result<(), Vec<FieldViolation>> {
        if let Some(name) = self.name {
            customer.name = name;
        }
        if let Some(email) = self.email {
            customer.email = email;
        }
        if let Some(parent) = self.parent {
            customer.parent = parent;
        }
        for (key, value) in self.metadata {
            if value.is_empty() {
                customer.metadata.remove(&key);
            } else {
                customer.metadata.insert(key, value);
            }
        }
        if customer.metadata.len() > METADATA_KEYS_MAX {
            return Err(vec![FieldViolation::new(
                "metadata",
                format!("at most {METADATA_KEYS_MAX} keys"),
            )]);
        }
        Ok(())
    }
}

/// Checks the free-text fields of a create or update.
pub fn check_text(
    name: Option<&str>,
    email: Option<&str>,
    metadata: &BTreeMap<String, String>,
) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if name.is_some_and(|n| n.chars().count() > TEXT_MAX) {
        out.push(FieldViolation::new(
            "name",
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    if let Some(email) = email
        && !email.is_empty()
        && (email.chars().count() > TEXT_MAX || !looks_like_email(email))
    {
        out.push(FieldViolation::new(
            "email",
            "must look like name@example.com (at most 200 characters)",
        ));
    }
    if metadata.len() > METADATA_KEYS_MAX {
        out.push(FieldViolation::new(
            "metadata",
            format!("at most {METADATA_KEYS_MAX} keys"),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > 40 || value.chars().count() > 500 {
            out.push(FieldViolation::new(
                format!("metadata[{key:?}]"),
                "keys are 1 to 40 characters, values at most 500",
            ));
        }
    }
    out
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}
