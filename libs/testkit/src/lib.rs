//! Test plumbing shared by the services' test suites.
//!
//! A service's harness type implements [`Harness`] (start on a backend with a
//! fresh database, stop and drop it); [`backends!`] turns each named
//! `async fn(&Harness)` into one `#[tokio::test]` per backend that always
//! cleans up, even when the test panics.

pub mod bench;
pub mod fuzz;
pub mod http;
pub mod raw;
pub mod webhook;

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

/// The fields an INVALID_ARGUMENT status names in its BadRequest details.
///
/// # Panics
/// If the status is another code or has no BadRequest (tests only).
pub fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"))
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

/// The first 100 events of `types` on a service's feed (ListEvents with
/// `key`), oldest first.
///
/// # Panics
/// If the call fails (tests only).
pub async fn events_of(
    channel: tonic::transport::Channel,
    key: &str,
    types: &[&str],
) -> Vec<billing_proto::events::v1::Event> {
    use billing_proto::events::v1 as ev;
    ev::event_service_client::EventServiceClient::new(channel)
        .list_events(authed(
            key,
            ev::ListEventsRequest {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|status| panic!("ListEvents: {status:?}"))
        .into_inner()
        .events
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

/// Request and response helpers for amounts, times and credit grants.
pub mod fixtures {
    use billing_proto::common::v1 as common;
    use billing_proto::ledger::v1 as ledger;
    use chrono::{DateTime, Utc};

    /// An amount of `value` minor units of `currency`.
    pub fn money(currency: &str, value: i64) -> Option<common::Amount> {
        Some(common::Amount {
            kind: Some(common::amount::Kind::Monetary(common::MonetaryAmount {
                currency: currency.into(),
                value,
            })),
        })
    }

    /// A usd amount in cents.
    pub fn usd(value: i64) -> Option<common::Amount> {
        money("usd", value)
    }

    /// The integer value of a monetary amount.
    ///
    /// # Panics
    /// If the amount is not monetary (tests only).
    pub fn value_of(amount: &Option<common::Amount>) -> i64 {
        match amount.as_ref().and_then(|a| a.kind.as_ref()) {
            Some(common::amount::Kind::Monetary(m)) => m.value,
            other => panic!("not a monetary amount: {other:?}"),
        }
    }

    /// An amount of `value` smallest units of `asset`: a pricing unit
    /// (`pu_…`, at `unit_scale`) or a currency.
    pub fn amount_in(asset: &str, value: i64, unit_scale: u32) -> Option<common::Amount> {
        if asset.starts_with("pu_") {
            Some(common::Amount {
                kind: Some(common::amount::Kind::CustomPricingUnit(
                    common::CustomPricingUnitAmount {
                        id: asset.to_owned(),
                        value: billing_money::format_value(value, unit_scale),
                    },
                )),
            })
        } else {
            money(asset, value)
        }
    }

    /// An amount's asset (a currency code or a pricing unit's id) and value
    /// in smallest units (a pricing unit's at `unit_scale`); an unset amount
    /// is `("", 0)`, an unreadable unit value `i64::MIN` (never a match).
    pub fn asset_value(amount: &Option<common::Amount>, unit_scale: u32) -> (String, i64) {
        match amount.as_ref().and_then(|a| a.kind.as_ref()) {
            Some(common::amount::Kind::Monetary(m)) => (m.currency.clone(), m.value),
            Some(common::amount::Kind::CustomPricingUnit(u)) => (
                u.id.clone(),
                billing_money::parse_value(&u.value, unit_scale).unwrap_or(i64::MIN),
            ),
            None => (String::new(), 0),
        }
    }

    /// A timestamp for requests.
    pub fn ts(time: DateTime<Utc>) -> Option<prost_types::Timestamp> {
        Some(billing_server::time::to_proto(time))
    }

    /// A METERED applicability scope.
    pub fn metered() -> Option<ledger::ApplicabilityConfig> {
        Some(ledger::ApplicabilityConfig {
            scope: Some(ledger::ApplicabilityScope {
                price_type: ledger::PriceType::Metered.into(),
                prices: vec![],
            }),
        })
    }

    /// A grant request of `value` usd cents, METERED, paid, default priority.
    pub fn grant_request(
        customer: &str,
        name: &str,
        value: i64,
    ) -> ledger::CreateCreditGrantRequest {
        ledger::CreateCreditGrantRequest {
            customer: customer.into(),
            name: name.into(),
            amount: usd(value),
            applicability_config: metered(),
            ..Default::default()
        }
    }
}
