//! Throwaway databases for tests.
//!
//! SQLite tests get a file in a fresh temporary directory. PostgreSQL tests
//! connect to `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), create a uniquely named
//! database and drop it afterwards. Without a reachable server a PostgreSQL
//! test prints a skip line and passes, except in CI ([`in_ci`]), where it fails.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// Whether the tests run in CI: `CI` set to anything but empty, `false` or
/// `0`. There, a test whose server or tool is missing fails instead of
/// printing a skip line.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

fn ci_value_means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

/// Prints a skip line, and appends it to the file named by
/// `BILLING_SKIP_LOG` when set: libtest hides a passing test's output, so
/// `.ci/run` reads that file and fails when any test skipped.
pub fn skip(message: &str) {
    eprintln!("skipping: {message}");
    if let Ok(path) = std::env::var("BILLING_SKIP_LOG")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        use std::io::Write;
        let _ = writeln!(file, "skipping: {message}");
    }
}

/// The server tests use when `TEST_DATABASE_URL` is unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite { dir: PathBuf },
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("billing-test-{}", unique_suffix()));
        let url = format!("sqlite://{}/test.db", dir.display());
        Self {
            url,
            kind: Kind::Sqlite { dir },
        }
    }

    /// A fresh PostgreSQL database, or `None` (after printing why) when no
    /// server is reachable outside CI.
    ///
    /// # Panics
    /// When the server is unreachable in CI ([`in_ci`]): CI must run these tests.
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let name = format!("billing_test_{}", unique_suffix());
        match create_postgres_database(&admin_url, &name).await {
            Ok(url) => Some(Self {
                url,
                kind: Kind::Postgres { admin_url, name },
            }),
            Err(error) if in_ci() => {
                panic!("CI is set but PostgreSQL at {admin_url} is not usable: {error}")
            }
            Err(error) => {
                skip(&format!(
                    "PostgreSQL test: {admin_url} is not usable ({error})"
                ));
                None
            }
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Removes the database (close every pool on it first).
    pub async fn drop_database(self) {
        match self.kind {
            Kind::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Postgres { admin_url, name } => {
                if let Err(error) = drop_postgres_database(&admin_url, &name).await {
                    eprintln!("could not drop test database {name}: {error}");
                }
            }
        }
    }
}

fn unique_suffix() -> String {
    ulid::Ulid::generate().to_string().to_lowercase()
}

async fn admin_connection(admin_url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    let options = PgConnectOptions::from_str(admin_url)?;
    tokio::time::timeout(Duration::from_secs(5), options.connect())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, sqlx::Error> {
    let mut admin = admin_connection(admin_url).await?;
    // The name is generated here from [a-z0-9_] only.
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    admin.close().await?;
    let mut url =
        url::Url::parse(admin_url).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = admin_connection(admin_url).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    admin.close().await
}

/// `pgbench` with `mode` (`["-S"]`: select-only; `[]`: the default
/// TPC-B-like read-write mix) for `seconds` with 16 clients on a scale-10
/// scratch database of the test server: its `tps …` line, the same-run
/// baseline of a benchmark. None when pgbench or the server is missing.
pub async fn pgbench(mode: &[&str], seconds: u64) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&url).await.ok()?;
    let _ = sqlx::query("DROP DATABASE IF EXISTS bench_pgbench")
        .execute(&admin)
        .await;
    sqlx::query("CREATE DATABASE bench_pgbench")
        .execute(&admin)
        .await
        .ok()?;
    let (server, _) = url.rsplit_once('/')?;
    let target = format!("{server}/bench_pgbench");
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", &target])
        .output()
        .await
        .ok()?;
    let out = if init.status.success() {
        let seconds = seconds.to_string();
        let mut args: Vec<&str> = mode.to_vec();
        args.extend(["-c", "16", "-j", "2", "-T", &seconds, &target]);
        let run = tokio::process::Command::new("pgbench")
            .args(&args)
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("tps"))
            .map(str::to_owned)
    } else {
        None
    };
    let _ = sqlx::query("DROP DATABASE IF EXISTS bench_pgbench")
        .execute(&admin)
        .await;
    out
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_ci;

    #[test]
    fn any_ci_value_but_empty_false_or_zero_means_ci() {
        for value in ["true", "1", "yes", "TRUE", "github"] {
            assert!(ci_value_means_ci(Some(value)), "{value}");
        }
        for value in [None, Some(""), Some("false"), Some("0"), Some(" ")] {
            assert!(!ci_value_means_ci(value), "{value:?}");
        }
    }
}
