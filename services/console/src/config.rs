//! The console's configuration: defaults, then the environment.

use std::net::SocketAddr;
use std::time::Duration;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// Where the console listens and which services it is a client of.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one (tests).
    pub listen_addr: SocketAddr,
    /// The credit ledger (`http://host:port`).
    pub ledger_url: String,
    /// Invoicing.
    pub invoicing_url: String,
    /// The notifier.
    pub notifier_url: String,
    /// The deadline of every upstream call.
    pub deadline: Duration,
    /// A session unused this long is signed out.
    pub session_idle: Duration,
    /// At most this many sessions are kept (the least recently used goes first).
    pub sessions_max: usize,
    /// Mark the session cookie `Secure` (the console is served over HTTPS by
    /// a proxy in front of it).
    pub secure_cookies: bool,
}

impl Config {
    /// Defaults: the ports of DESIGN.md on loopback.
    pub fn new(listen_addr: SocketAddr) -> Self {
        Self {
            listen_addr,
            ledger_url: "http://127.0.0.1:50052".into(),
            invoicing_url: "http://127.0.0.1:50053".into(),
            notifier_url: "http://127.0.0.1:50054".into(),
            deadline: Duration::from_secs(10),
            session_idle: Duration::from_secs(12 * 3600),
            sessions_max: 10_000,
            secure_cookies: false,
        }
    }

    /// `LISTEN_ADDR` (default `0.0.0.0:8080`), `LEDGER_URL`, `INVOICING_URL`,
    /// `NOTIFIER_URL`, `CONSOLE_SECURE_COOKIES` (`true` behind HTTPS),
    /// `CONSOLE_SESSION_IDLE_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let listen_addr = match std::env::var("LISTEN_ADDR") {
            Ok(text) => text.parse().map_err(|_| ConfigError {
                name: "LISTEN_ADDR",
                problem: format!("{text:?} is not host:port"),
            })?,
            Err(_) => SocketAddr::from(([0, 0, 0, 0], 8080)),
        };
        let mut config = Self::new(listen_addr);
        for (name, target) in [
            ("LEDGER_URL", &mut config.ledger_url),
            ("INVOICING_URL", &mut config.invoicing_url),
            ("NOTIFIER_URL", &mut config.notifier_url),
        ] {
            if let Ok(url) = std::env::var(name) {
                *target = url;
            }
        }
        if let Ok(text) = std::env::var("CONSOLE_SECURE_COOKIES") {
            config.secure_cookies = matches!(text.as_str(), "1" | "true" | "yes");
        }
        if let Ok(text) = std::env::var("CONSOLE_SESSION_IDLE_SECONDS") {
            let seconds: u64 = text
                .parse()
                .ok()
                .filter(|s| (60..=7 * 24 * 3600).contains(s))
                .ok_or_else(|| ConfigError {
                    name: "CONSOLE_SESSION_IDLE_SECONDS",
                    problem: format!("{text:?} is not 60 to 604800"),
                })?;
            config.session_idle = Duration::from_secs(seconds);
        }
        Ok(config)
    }
}
