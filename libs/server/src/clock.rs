//! An injectable clock: production reads the system time, tests move it.
//!
//! `tokio::time::pause` does not move `chrono::Utc::now()`, so everything that
//! depends on the wall clock (expiry, effective dates) asks a [`Clock`].

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// The system's wall time, for what must follow real time whatever clock a
/// service runs on (the time part of new ids). The one other reader of the
/// system clock besides [`Clock::system`].
pub fn wall_time() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// The current time, shared by a service and its background workers.
#[derive(Debug, Clone)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until moved.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// The current time, truncated to microseconds (the storage precision).
    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.manual {
            Some(time) => *time
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            None => Utc::now(),
        };
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    /// Moves a manual clock forward; no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            let mut guard = time
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *guard += by;
        }
    }

    /// Sets a manual clock to `time` (may go backwards); no effect on the system clock.
    pub fn set(&self, time: DateTime<Utc>) {
        if let Some(current) = &self.manual {
            *current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = time;
        }
    }
}
