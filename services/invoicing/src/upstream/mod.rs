//! The ledger and meter-ingest, reached only through their gRPC APIs.
//!
//! Invoicing calls them with the internal service key and names the caller's
//! account in `x-billing-account`; every call carries a deadline.

use std::time::Duration;

use billing_money::{Asset, Decimal, parse_decimal};
use billing_proto::common::v1 as common;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_proto::ledger::v1 as ledger;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::meter::v1 as meter;
use billing_proto::meter::v1::meter_service_client::MeterServiceClient;
use billing_server::peer::{self, InternalCaller, PeerChannel};
use billing_server::status::Refuse;
use billing_server::time::to_proto;
use chrono::{DateTime, Utc};
use tonic::{Code, Request, Status};

mod feed;
mod grants;
mod realtime;

pub use feed::DroppedEvent;
pub use grants::{GrantKind, GrantSource, GrantSpec};
pub use realtime::{HoldMade, HoldRequest, Summary};

use crate::domain::invoice::{CreditApplication, Invoice};
use crate::error::InvoicingError;

/// Service names in errors and logs.
pub const LEDGER: &str = "credit-ledger";
/// Service names in errors and logs.
pub const METER: &str = "meter-ingest";
/// Most ranges of one BatchGetUsage call (meter-ingest's limit).
const BATCH_RANGES_MAX: usize = 100;

/// Where the other services are and how to call them.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http://host:port` of credit-ledger.
    pub ledger_url: String,
    /// `http://host:port` of meter-ingest.
    pub meter_url: String,
    /// A key with the `internal` scope on both.
    pub internal_api_key: String,
    /// Deadline of each call.
    pub deadline: Duration,
}

/// Why the upstream configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    /// A URL does not parse.
    #[error("{name}: {source}")]
    Url {
        /// The variable.
        name: &'static str,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The key has characters metadata cannot carry.
    #[error("INVOICING_INTERNAL_API_KEY is not a valid header value")]
    Key,
}

/// Clients of the ledger and meter-ingest.
#[derive(Debug, Clone)]
pub struct Upstream {
    ledger: LedgerServiceClient<PeerChannel>,
    /// The ledger's event feed (auto top-ups follow it).
    ledger_events: EventServiceClient<PeerChannel>,
    meter: MeterServiceClient<PeerChannel>,
    caller: InternalCaller,
}

fn endpoint(name: &'static str, url: &str) -> Result<PeerChannel, UpstreamConfigError> {
    peer::channel(url).map_err(|source| UpstreamConfigError::Url { name, source })
}

/// A peer's gRPC status code, kept as its number so that no layer above
/// `upstream/` needs tonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCode(pub i32);

impl PeerCode {
    /// The name gRPC clients print: `NOT_FOUND` for `Code::NotFound`.
    pub fn name(self) -> String {
        let mut name = String::new();
        for (i, c) in format!("{:?}", Code::from(self.0)).chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }
}

/// What a peer answered when it refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {message}", code.name())]
pub struct PeerStatus {
    /// Its code.
    pub code: PeerCode,
    /// Its message.
    pub message: String,
}

/// What the ledger applied to one line, in the line's asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCredits {
    /// The line.
    pub invoice_line_item: String,
    /// Credits applied to it, in its asset's smallest unit.
    pub credits_applied: i64,
    /// Which grants paid it.
    pub applications: Vec<CreditApplication>,
}

/// Sorts a failed call into what the saga retries and what it does not.
///
/// Retried (`Unavailable`): the peer unreachable, overloaded or failing on
/// its own side — UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN,
/// RESOURCE_EXHAUSTED, ABORTED, INTERNAL — and every failure of the
/// connection rather than of the call (an h2 GOAWAY or reset storm carries
/// its h2 error as the status' source, whatever code tonic gave it). Our own
/// deadline expiring is recorded as DEADLINE_EXCEEDED (tonic reports it as
/// CANCELLED "Timeout expired").
///
/// Not retried (`Upstream`): the peer's considered refusal of this request
/// (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, …) or of our key
/// (UNAUTHENTICATED, PERMISSION_DENIED): repeating it changes nothing.
fn upstream_error(service: &'static str, status: Status) -> InvoicingError {
    let unavailable = |code: Code, detail: String| InvoicingError::Unavailable {
        service,
        code: PeerCode(code as i32),
        detail,
        invoice: None,
    };
    if status.code() == Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string()
    {
        return unavailable(
            Code::DeadlineExceeded,
            format!("no answer within the deadline ({})", status.message()),
        );
    }
    if let Some(source) = std::error::Error::source(&status) {
        return unavailable(
            Code::Unavailable,
            format!(
                "connection failed ({}): {source}",
                PeerCode(status.code() as i32).name()
            ),
        );
    }
    if is_retryable(status.code()) {
        return unavailable(status.code(), status.message().to_owned());
    }
    InvoicingError::Upstream {
        service,
        status: PeerStatus {
            code: PeerCode(status.code() as i32),
            message: status.message().to_owned(),
        },
    }
}

/// Codes that say "try again later" rather than "this request is wrong".
fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
    )
}

impl PeerCode {
    /// Whether the peer refused our credentials rather than the request:
    /// an operator's problem, never the caller's.
    pub fn is_key_refusal(self) -> bool {
        matches!(
            Code::from(self.0),
            Code::Unauthenticated | Code::PermissionDenied
        )
    }
}

impl Upstream {
    /// Clients that connect on first use.
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamConfigError> {
        let ledger = endpoint("LEDGER_URL", &config.ledger_url)?;
        Ok(Self {
            ledger_events: EventServiceClient::new(ledger.clone()),
            ledger: LedgerServiceClient::new(ledger),
            meter: MeterServiceClient::new(endpoint("METER_URL", &config.meter_url)?),
            caller: InternalCaller::new(&config.internal_api_key, config.deadline)
                .ok_or(UpstreamConfigError::Key)?,
        })
    }

    fn request<T>(&self, account: &str, message: T) -> Result<Request<T>, InvoicingError> {
        self.caller
            .request(account, message)
            .ok_or_else(|| InvoicingError::Corrupt(format!("account {account:?}")))
    }

    /// Checks that a meter exists in the account and is active.
    pub async fn check_meter(&self, account: &str, id: &str) -> Result<(), InvoicingError> {
        let request = self.request(account, meter::GetMeterRequest { id: id.to_owned() })?;
        let found = self
            .meter
            .clone()
            .get_meter(request)
            .await
            .map_err(|s| match s.code() {
                Code::NotFound => InvoicingError::not_found("meter", id),
                _ => upstream_error(METER, s),
            })?
            .into_inner()
            .meter
            .ok_or_else(|| InvoicingError::Corrupt("GetMeter without a meter".into()))?;
        if found.status() != meter::MeterStatus::Active {
            return Err(InvoicingError::conflict(
                "METER_INACTIVE",
                format!("meter {id} is inactive"),
            ));
        }
        Ok(())
    }

    /// The scale of a ledger pricing unit.
    pub async fn pricing_unit_scale(&self, account: &str, id: &str) -> Result<u32, InvoicingError> {
        Ok(self.pricing_unit(account, id).await?.0)
    }

    /// A ledger pricing unit's scale and its rate in money, if it converts.
    pub async fn pricing_unit(
        &self,
        account: &str,
        id: &str,
    ) -> Result<(u32, Option<billing_money::Conversion>), InvoicingError> {
        let request = self.request(account, ledger::GetPricingUnitRequest { id: id.to_owned() })?;
        let unit = self
            .ledger
            .clone()
            .get_pricing_unit(request)
            .await
            .map_err(|s| match s.code() {
                Code::NotFound => InvoicingError::not_found("pricing unit", id),
                _ => upstream_error(LEDGER, s),
            })?
            .into_inner()
            .pricing_unit
            .ok_or_else(|| InvoicingError::Corrupt("GetPricingUnit without a unit".into()))?;
        let conversion = conversion_of(&unit)?;
        Ok((unit.scale, conversion))
    }

    /// A customer's aggregated usage over each `(meter, start, end)`, in
    /// order, through BatchGetUsage (100 ranges a call, the calls at once).
    pub async fn usages(
        &self,
        account: &str,
        customer: &str,
        ranges: &[(&str, DateTime<Utc>, DateTime<Utc>)],
    ) -> Result<Vec<Decimal>, InvoicingError> {
        let calls = ranges.chunks(BATCH_RANGES_MAX).map(|chunk| async move {
            let asked: Vec<meter::UsageRange> = chunk
                .iter()
                .filter(|(_, start, end)| end > start)
                .map(|(meter, start, end)| meter::UsageRange {
                    meter: (*meter).to_owned(),
                    start_time: Some(to_proto(*start)),
                    end_time: Some(to_proto(*end)),
                })
                .collect();
            let mut answers = if asked.is_empty() {
                Vec::new()
            } else {
                let request = self.request(
                    account,
                    meter::BatchGetUsageRequest {
                        customer: customer.to_owned(),
                        ranges: asked,
                    },
                )?;
                self.meter
                    .clone()
                    .batch_get_usage(request)
                    .await
                    .map_err(|s| upstream_error(METER, s))?
                    .into_inner()
                    .usages
            }
            .into_iter();
            // An empty range is 0 without asking.
            chunk
                .iter()
                .map(|(_, start, end)| {
                    if end <= start {
                        return Ok(Decimal::ZERO);
                    }
                    let total = answers
                        .next()
                        .and_then(|u| u.total)
                        .map(|t| t.value)
                        .ok_or_else(|| {
                            InvoicingError::Corrupt("BatchGetUsage answered short".into())
                        })?;
                    if total.is_empty() {
                        return Ok(Decimal::ZERO);
                    }
                    parse_decimal(&total)
                        .map_err(|_| InvoicingError::Corrupt(format!("usage {total:?}")))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        Ok(futures_util::future::try_join_all(calls)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// ApplyCredits for the invoice's chargeable lines under the ledger
    /// invoice id `id` (idempotent on it), or its preview.
    pub async fn apply_credits(
        &self,
        account: &str,
        invoice: &Invoice,
        (id, pool): (&str, &[String]),
        preview: bool,
    ) -> Result<Vec<LineCredits>, InvoicingError> {
        let mut request = apply_request(invoice, id, preview);
        request.pool = pool.to_vec();
        let request = self.request(account, request)?;
        let response = self
            .ledger
            .clone()
            .apply_credits(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?
            .into_inner();
        line_credits(invoice, &response)
    }

    /// ReverseCredits (idempotent on the invoice).
    pub async fn reverse_credits(
        &self,
        account: &str,
        invoice: &str,
    ) -> Result<(), InvoicingError> {
        let request = self.request(
            account,
            ledger::ReverseCreditsRequest {
                invoice: invoice.to_owned(),
            },
        )?;
        self.ledger
            .clone()
            .reverse_credits(request)
            .await
            .map_err(|s| upstream_error(LEDGER, s))?;
        Ok(())
    }
}

fn apply_request(invoice: &Invoice, id: &str, preview: bool) -> ledger::ApplyCreditsRequest {
    ledger::ApplyCreditsRequest {
        pool: Vec::new(),
        customer: invoice.customer.clone(),
        invoice: id.to_owned(),
        period_end: Some(to_proto(invoice.period_end)),
        lines: invoice
            .chargeable_lines()
            .map(|line| ledger::InvoiceLine {
                invoice_line_item: line.id.clone(),
                price: line.price.clone(),
                amount: Some(billing_server::amount::to_proto(&line.asset, line.amount)),
            })
            .collect(),
        preview,
    }
}

/// A ledger pricing unit's rate, checked as the ledger checks it.
fn conversion_of(
    unit: &ledger::PricingUnit,
) -> Result<Option<billing_money::Conversion>, InvoicingError> {
    let Some(given) = &unit.conversion else {
        return Ok(None);
    };
    let mut out = Vec::new();
    billing_money::Conversion::parse(
        "conversion",
        &given.currency,
        &given.unit_amount_decimal,
        &mut out,
    )
    .map(Some)
    .ok_or_else(|| {
        InvoicingError::Corrupt(format!("ledger pricing unit {}'s rate: {out:?}", unit.id))
    })
}

/// The ledger's answer per line of the invoice, in each line's asset.
fn line_credits(
    invoice: &Invoice,
    response: &ledger::ApplyCreditsResponse,
) -> Result<Vec<LineCredits>, InvoicingError> {
    let mut out = Vec::new();
    for line in &invoice.lines {
        let credits_applied = match response
            .lines
            .iter()
            .find(|l| l.invoice_line_item == line.id)
        {
            Some(credits) => amount_value(credits.credits_applied.as_ref(), &line.asset)?,
            None => 0,
        };
        let mut applications = Vec::new();
        for application in response
            .applications
            .iter()
            .filter(|a| a.invoice_line_item == line.id)
        {
            applications.push(CreditApplication {
                credit_grant: application.credit_grant.clone(),
                amount: amount_value(application.amount.as_ref(), &line.asset)?,
                credit_balance_transaction: application.credit_balance_transaction.clone(),
            });
        }
        out.push(LineCredits {
            invoice_line_item: line.id.clone(),
            credits_applied,
            applications,
        });
    }
    Ok(out)
}

/// Smallest units of a ledger amount known to be in `asset`.
fn amount_value(amount: Option<&common::Amount>, asset: &Asset) -> Result<i64, InvoicingError> {
    amount
        .and_then(|a| billing_server::amount::value_in(a, asset))
        .ok_or_else(|| InvoicingError::Corrupt("ledger amount without a kind".into()))?
        .map_err(InvoicingError::from)
}

#[cfg(test)]
mod tests {
    use super::PeerCode;
    use tonic::{Code, Status};

    #[test]
    fn retryable_and_refused_calls_are_told_apart() {
        use super::{InvoicingError, upstream_error};
        let code = |error: InvoicingError| match error {
            InvoicingError::Unavailable { code, .. } => ("retried", code.name()),
            InvoicingError::Upstream { status, .. } => ("refused", status.code.name()),
            other => panic!("{other:?}"),
        };
        let timeout = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert_eq!(
            code(upstream_error("x", timeout)),
            ("retried", "DEADLINE_EXCEEDED".into())
        );
        assert_eq!(
            code(upstream_error("x", Status::cancelled("peer went away"))),
            ("retried", "CANCELLED".into())
        );
        assert_eq!(
            code(upstream_error("x", Status::resource_exhausted("calm down"))),
            ("retried", "RESOURCE_EXHAUSTED".into())
        );
        let connection = Status::from_error(Box::new(std::io::Error::other("GOAWAY")));
        assert!(std::error::Error::source(&connection).is_some());
        assert_eq!(code(upstream_error("x", connection)).0, "retried");
        for refused in [
            Status::invalid_argument("bad"),
            Status::not_found("gone"),
            Status::failed_precondition("no"),
            Status::permission_denied("key"),
        ] {
            assert_eq!(code(upstream_error("x", refused)).0, "refused");
        }
    }

    #[test]
    fn code_names_are_the_grpc_names() {
        let name = |code: Code| PeerCode(code as i32).name();
        assert_eq!(name(Code::Ok), "OK");
        assert_eq!(name(Code::NotFound), "NOT_FOUND");
        assert_eq!(name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
