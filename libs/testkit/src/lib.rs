//! Test plumbing shared by the services' test suites.
//!
//! A service's harness type implements [`Harness`] (start on a backend with a
//! fresh database, stop and drop it); [`backends!`] turns each named
//! `async fn(&Harness)` into one `#[tokio::test]` per backend that always
//! cleans up, even when the test panics.

pub use billing_db::testing::TestDatabase;
pub use futures_util;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on `TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// A fresh database, or None (after a skip line) when PostgreSQL is
    /// unreachable outside CI.
    pub async fn database(self) -> Option<TestDatabase> {
        match self {
            Self::Sqlite => Some(TestDatabase::sqlite()),
            Self::Postgres => TestDatabase::postgres().await,
        }
    }
}

/// A running service under test.
#[allow(async_fn_in_trait)]
pub trait Harness: Sized {
    /// Starts on a fresh database; None when the backend is unavailable.
    async fn start(backend: Backend) -> Option<Self>;
    /// Stops the service and drops its database.
    async fn stop(self);
}

/// Wraps a message with `authorization: Bearer <key>`.
///
/// # Panics
/// If the key is not valid metadata (tests only).
pub fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {key}")
        .parse()
        .unwrap_or_else(|_| panic!("invalid test key {key:?}"));
    request.metadata_mut().insert("authorization", value);
    request
}

/// Runs one test body on a fresh harness and always cleans up.
#[macro_export]
macro_rules! run_on {
    ($harness:ty, $backend:expr, $body:path) => {{
        let Some(harness) = <$harness as $crate::Harness>::start($backend).await else {
            return;
        };
        let result = $crate::futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            $body(&harness),
        ))
        .await;
        $crate::Harness::stop(harness).await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }};
}

/// One `#[tokio::test]` per backend for each named `async fn(&Harness)`.
#[macro_export]
macro_rules! backends {
    ($harness:ty; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::run_on!($harness, $crate::Backend::Sqlite, super::$name);
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::run_on!($harness, $crate::Backend::Postgres, super::$name);
                }
            )*
        }
    };
}
