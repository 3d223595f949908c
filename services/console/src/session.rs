//! Sessions: the API key stays in this process, the browser holds only a
//! random session id in an HttpOnly, SameSite=Strict cookie.
//!
//! The store is in memory and bounded: the console keeps no state of its
//! own that would outlive it (a restart signs everyone out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The session cookie.
pub const SESSION_COOKIE: &str = "console_session";
/// The sign-in form's CSRF cookie (double submit: before there is a session).
pub const SIGN_IN_COOKIE: &str = "console_sign_in";

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The key every upstream call is made with (never sent to the browser).
    pub api_key: String,
    /// The token every form of this session carries.
    pub csrf: String,
    last_used: Instant,
}

impl Session {
    /// The last four characters of the key, to tell keys apart on screen.
    pub fn key_hint(&self) -> &str {
        let start = self
            .api_key
            .char_indices()
            .rev()
            .nth(3)
            .map_or(0, |(i, _)| i);
        &self.api_key[start..]
    }
}

/// Why a random token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("no randomness: {0}")]
pub struct RandomError(String);

/// 32 random bytes as hex.
pub fn token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Equal without an early exit (tokens compared in constant time).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The signed-in sessions, by id.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    /// An empty store: sessions idle longer than `idle` end; at most `max`.
    pub fn new(idle: Duration, max: usize) -> Self {
        Self {
            inner: Arc::default(),
            idle,
            max: max.max(1),
        }
    }

    /// Starts a session for `api_key`; returns its id.
    pub fn create(&self, api_key: String) -> Result<String, RandomError> {
        let id = token()?;
        let session = Session {
            api_key,
            csrf: token()?,
            last_used: Instant::now(),
        };
        let mut map = self.lock();
        let idle = self.idle;
        map.retain(|_, s| s.last_used.elapsed() < idle);
        if map.len() >= self.max {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session with this id (touching it), if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        if session.last_used.elapsed() >= self.idle {
            map.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.clone())
    }

    /// Ends the session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a map half-changed
        // (every change is one call), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`; `max_age`
/// None for a browser-session cookie, `Some(0)` to delete it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_full_store_drops_the_least_recently_used() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let a = sessions.create("key_a".into()).unwrap();
        let b = sessions.create("key_b".into()).unwrap();
        assert!(sessions.get(&a).is_some());
        let c = sessions.create("key_c".into()).unwrap();
        assert!(sessions.get(&b).is_none());
        assert_eq!(sessions.get(&a).unwrap().api_key, "key_a");
        assert_eq!(sessions.get(&c).unwrap().key_hint(), "ey_c");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; console_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
