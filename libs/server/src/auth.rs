//! API keys and the authentication interceptor.
//!
//! Keys are never stored or configured in clear: `BILLING_API_KEYS` lists
//! entries `ACCOUNT:SHA256HEX[:SCOPE+SCOPE]`, separated by commas or white
//! space. Scopes:
//! - `apply_credits`: may call ApplyCredits and ReverseCredits.
//! - `internal`: a service key (invoicing calling the ledger or meter-ingest);
//!   it acts for the account named in the `x-billing-account` metadata and has
//!   `apply_credits`. Its ACCOUNT field is conventionally `_service`.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key a service key uses to name the account it acts for.
pub const ACCOUNT_METADATA_KEY: &str = "x-billing-account";

/// A permission beyond the basic use of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// ApplyCredits and ReverseCredits.
    ApplyCredits,
    /// Acts for any account named in metadata; implies `apply_credits`
    /// (never `test_clock`).
    Internal,
    /// May move invoicing's test clock (a development tool; the process
    /// must also be built to allow it).
    TestClock,
}

impl Scope {
    /// The scope named `text` (`apply_credits`, `internal`, `test_clock`).
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        match text {
            "apply_credits" => Ok(Self::ApplyCredits),
            "internal" => Ok(Self::Internal),
            "test_clock" => Ok(Self::TestClock),
            other => Err(AuthConfigError::UnknownScope(other.to_owned())),
        }
    }
}

/// Why `BILLING_API_KEYS` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// An entry is not `ACCOUNT:SHA256HEX[:SCOPES]`.
    #[error("API key entry {0:?} is not ACCOUNT:SHA256HEX[:SCOPE+SCOPE]")]
    Malformed(String),
    /// The account name has characters other than letters, digits, `_`, `-`.
    #[error("invalid account name {0:?}: use 1-64 letters, digits, '_' or '-'")]
    BadAccount(String),
    /// A scope other than `apply_credits` or `internal`.
    #[error("unknown API key scope {0:?}: expected apply_credits, internal or test_clock")]
    UnknownScope(String),
}

#[derive(Debug, Clone)]
struct KeyEntry {
    account: String,
    apply_credits: bool,
    internal: bool,
    test_clock: bool,
}

/// Who is calling: the account every read and write is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account.
    pub account: String,
    /// May call ApplyCredits / ReverseCredits.
    pub can_apply_credits: bool,
    /// May move invoicing's process-wide test clock (the `test_clock`
    /// scope; never implied by `internal`).
    pub can_move_test_clock: bool,
}

/// The configured keys, by SHA-256 digest.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], KeyEntry>,
}

impl ApiKeys {
    /// Parses `BILLING_API_KEYS`-style text.
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let mut keys = Self::default();
        for entry in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let mut parts = entry.split(':');
            let (Some(account), Some(hash)) = (parts.next(), parts.next()) else {
                return Err(AuthConfigError::Malformed(redact(entry)));
            };
            let scopes = parts.next().unwrap_or("");
            if parts.next().is_some() {
                return Err(AuthConfigError::Malformed(redact(entry)));
            }
            let digest: [u8; 32] = hex::decode(hash)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| AuthConfigError::Malformed(redact(entry)))?;
            if !valid_account(account) {
                return Err(AuthConfigError::BadAccount(account.to_owned()));
            }
            let mut key = KeyEntry {
                account: account.to_owned(),
                apply_credits: false,
                internal: false,
                test_clock: false,
            };
            for scope in scopes.split('+').filter(|s| !s.is_empty()) {
                match Scope::parse(scope)? {
                    Scope::ApplyCredits => key.apply_credits = true,
                    Scope::Internal => key.internal = true,
                    Scope::TestClock => key.test_clock = true,
                }
            }
            keys.by_hash.insert(digest, key);
        }
        Ok(keys)
    }

    /// Adds one clear-text key (the development key of `billing up`).
    pub fn insert_plain(&mut self, key: &str, account: &str, scopes: &[Scope]) {
        self.by_hash.insert(
            digest(key),
            KeyEntry {
                account: account.to_owned(),
                apply_credits: scopes.contains(&Scope::ApplyCredits),
                internal: scopes.contains(&Scope::Internal),
                test_clock: scopes.contains(&Scope::TestClock),
            },
        );
    }

    /// The accounts of the configured account keys (not the internal
    /// ones), sorted, each once: the accounts a cross-account consumer
    /// such as the notifier follows.
    pub fn accounts(&self) -> Vec<String> {
        let mut accounts: Vec<String> = self
            .by_hash
            .values()
            .filter(|k| !k.internal)
            .map(|k| k.account.clone())
            .collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Authenticates a request's metadata.
    pub fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Principal, Status> {
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated("missing API key: send 'authorization: Bearer <key>'")
            })?;
        let entry = self
            .by_hash
            .get(&digest(token))
            .ok_or_else(|| Status::unauthenticated("invalid API key"))?;
        if !entry.internal {
            return Ok(Principal {
                account: entry.account.clone(),
                can_apply_credits: entry.apply_credits,
                can_move_test_clock: entry.test_clock,
            });
        }
        let account = metadata
            .get(ACCOUNT_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|a| valid_account(a))
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "a service key must name the account in '{ACCOUNT_METADATA_KEY}'"
                ))
            })?;
        Ok(Principal {
            account: account.to_owned(),
            can_apply_credits: true,
            can_move_test_clock: false,
        })
    }
}

/// Tonic interceptor: authenticates and stores the [`Principal`] in the
/// request extensions for the handlers.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    keys: Arc<ApiKeys>,
}

impl AuthInterceptor {
    /// An interceptor over the given keys.
    pub fn new(keys: Arc<ApiKeys>) -> Self {
        Self { keys }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.keys.authenticate(request.metadata())?;
        // The RPC's server span carries the account (never the key).
        tracing::Span::current().record("account", principal.account.as_str());
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The principal the interceptor stored; `UNAUTHENTICATED` if absent (a
/// service wired without the interceptor fails closed).
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing API key"))
}

/// SHA-256 of a clear-text key, as configured in `BILLING_API_KEYS`.
pub fn hash_hex(key: &str) -> String {
    hex::encode(digest(key))
}

/// A new random key, `sk_` followed by 256 random bits in hex.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("sk_{}", hex::encode(bytes)))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `account` is a valid account name: 1 to 64 letters, digits, `_`
/// or `-`.
pub fn valid_account(account: &str) -> bool {
    (1..=64).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Keeps config errors from echoing a secret: only the account part is shown.
fn redact(entry: &str) -> String {
    let account = entry.split(':').next().unwrap_or("");
    format!("{account}:…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (key, value) in pairs {
            map.insert(*key, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn authenticates_account_and_service_keys() {
        let config = format!(
            "acct_a:{}, acct_b:{}:apply_credits\n_service:{}:internal",
            hash_hex("sk_a"),
            hash_hex("sk_b"),
            hash_hex("sk_svc")
        );
        let keys = ApiKeys::parse(&config).unwrap();
        assert_eq!(keys.len(), 3);

        let a = keys
            .authenticate(&metadata(&[("authorization", "Bearer sk_a")]))
            .unwrap();
        assert_eq!((a.account.as_str(), a.can_apply_credits), ("acct_a", false));
        let b = keys
            .authenticate(&metadata(&[("authorization", "Bearer sk_b")]))
            .unwrap();
        assert!(b.can_apply_credits);
        let svc = keys
            .authenticate(&metadata(&[
                ("authorization", "Bearer sk_svc"),
                (ACCOUNT_METADATA_KEY, "acct_a"),
            ]))
            .unwrap();
        assert_eq!(
            (svc.account.as_str(), svc.can_apply_credits),
            ("acct_a", true)
        );

        for bad in [
            metadata(&[]),
            metadata(&[("authorization", "Bearer nope")]),
            metadata(&[("authorization", "sk_a")]),
            metadata(&[("authorization", "Bearer sk_svc")]),
        ] {
            let status = keys.authenticate(&bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
        }
    }

    #[test]
    fn rejects_bad_config_without_echoing_hashes() {
        let error = ApiKeys::parse("acct:zz").unwrap_err().to_string();
        assert!(!error.contains("zz"), "{error}");
        assert!(ApiKeys::parse(&format!("bad acct:{}", hash_hex("k"))).is_err());
        assert!(ApiKeys::parse(&format!("acct:{}:root", hash_hex("k"))).is_err());
    }

    #[test]
    fn generated_keys_are_distinct() {
        assert_ne!(generate_key().unwrap(), generate_key().unwrap());
    }
}
