//! Which URLs an endpoint may have (DESIGN.md §9, safety).

use billing_money::FieldViolation;
use billing_server::status::Refuse;

use crate::domain::address::refused;
use crate::domain::endpoint::URL_CHARS_MAX;
use crate::error::NotifierError;

/// What the operator allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` allowed (`NOTIFIER_ALLOW_INSECURE_URLS`).
    pub allow_insecure: bool,
    /// Loopback, private, link-local and metadata addresses allowed
    /// (`NOTIFIER_ALLOW_PRIVATE_URLS`).
    pub allow_private: bool,
}

fn refuse(description: impl Into<String>) -> NotifierError {
    NotifierError::fields(vec![FieldViolation::new("url", description)])
}

impl UrlPolicy {
    /// Checks `text` as an endpoint URL: `https` (or `http` when allowed),
    /// a host, no credentials or fragment, at most 2,048 characters, and
    /// not resolving to a refused address (a name that does not resolve
    /// now is accepted: deliveries check again, every time).
    pub async fn check(&self, text: &str) -> Result<String, NotifierError> {
        if text.is_empty() {
            return Err(refuse("is required"));
        }
        if text.chars().count() > URL_CHARS_MAX {
            return Err(refuse(format!("at most {URL_CHARS_MAX} characters")));
        }
        let url = url::Url::parse(text).map_err(|e| refuse(format!("is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            "http" => return Err(refuse("must be https")),
            _ => return Err(refuse("must be an https URL")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("must not carry credentials"));
        }
        if url.fragment().is_some() {
            return Err(refuse("must not have a fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(refuse("must have a host")),
        };
        if !self.allow_private {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Ok(found) = tokio::net::lookup_host((host.as_str(), port)).await {
                for address in found {
                    if let Some(why) = refused(address.ip()) {
                        return Err(refuse(format!(
                            "{host} is a refused address ({why}): deliveries go only to public addresses"
                        )));
                    }
                }
            }
        }
        Ok(url.to_string())
    }
}
