//! ExportLedgerEntries (a server stream, one page in memory at a time) and
//! GetCreditLiabilityReport.

use std::pin::Pin;

use billing_money::{Asset, FieldViolation};
use billing_proto::ledger::v1 as pb;
use billing_server::auth::principal;
use billing_server::handler::{Call, Reply, check_strings, invalid};
use billing_server::time::{from_proto, to_micros};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::LedgerGrpc;
use super::convert::{amount, category, transaction};
use crate::domain::report::LiabilityRow;
use crate::domain::validate::check_reference;
use crate::ops::Ledger;
use crate::store::{EXPORT_PAGE, ExportCursor, ExportRange};

/// ExportLedgerEntries' response stream.
pub type ExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportLedgerEntriesResponse, Status>> + Send>>;

/// `[from, to)`, both required, `to` after `from`.
fn period(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
    out: &mut Vec<FieldViolation>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut required = |value: Option<&prost_types::Timestamp>, field: &str| match value {
        None => {
            out.push(FieldViolation::new(field, "is required"));
            None
        }
        Some(time) => match from_proto(time, field) {
            Ok(time) => Some(time),
            Err(violation) => {
                out.push(violation);
                None
            }
        },
    };
    let (from, to) = (required(from, "from"), required(to, "to"));
    let (from, to) = (from?, to?);
    if to <= from {
        out.push(FieldViolation::new("to", "must be after from"));
        return None;
    }
    Some((from, to))
}

/// Where an export stream is.
struct Export {
    ledger: Ledger,
    account: String,
    range: ExportRange,
    after: Option<ExportCursor>,
    done: bool,
}

impl Export {
    /// The next batch, or None when the range is exhausted or a batch failed.
    async fn next(&mut self) -> Option<Result<pb::ExportLedgerEntriesResponse, Status>> {
        if self.done {
            return None;
        }
        let page = match self
            .ledger
            .export_page(&self.account, &self.range, self.after.as_ref())
            .await
        {
            Ok(page) => page,
            Err(error) => {
                self.done = true;
                return Some(Err(error.into()));
            }
        };
        self.done = i64::try_from(page.len()).unwrap_or(i64::MAX) < EXPORT_PAGE;
        let (last, _) = page.last()?;
        self.after = Some((to_micros(last.effective_at), last.id.clone()));
        Some(Ok(pb::ExportLedgerEntriesResponse {
            entries: page
                .iter()
                .map(|(item, grant_category)| pb::LedgerEntry {
                    transaction: Some(transaction(item)),
                    category: category(*grant_category).into(),
                })
                .collect(),
        }))
    }
}

fn row(row: &LiabilityRow) -> pb::CreditLiabilityRow {
    let credits = |value| Some(amount(&row.asset, value));
    let money = |value| row.currency.map(|c| amount(&Asset::Currency(c), value));
    pb::CreditLiabilityRow {
        asset: row.asset.key(),
        cost_basis_currency: row
            .currency
            .map(|c| c.code().to_owned())
            .unwrap_or_default(),
        opening: credits(row.opening),
        purchased: credits(row.purchased),
        purchased_cost: money(row.purchased_cost),
        granted_free: credits(row.granted_free),
        applied: credits(row.applied),
        recognized_revenue: money(row.recognized_revenue),
        expired: credits(row.expired),
        breakage_cost: money(row.breakage_cost),
        voided: credits(row.voided),
        voided_cost: money(row.voided_cost),
        closing: credits(row.closing),
    }
}

impl LedgerGrpc {
    /// ExportLedgerEntries: the request is checked before the stream starts.
    pub(super) async fn export(
        &self,
        request: Request<pb::ExportLedgerEntriesRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        check_strings(&body)?;
        let mut out = Vec::new();
        let bounds = period(body.from.as_ref(), body.to.as_ref(), &mut out);
        if !body.customer.is_empty() {
            check_reference(&body.customer, "customer", &mut out);
        }
        let Some((from, to)) = bounds.filter(|_| out.is_empty()) else {
            return Err(invalid(out));
        };
        let state = Export {
            ledger: self.ledger.clone(),
            account,
            range: ExportRange {
                from_us: to_micros(from),
                to_us: to_micros(to),
                customer: Some(body.customer).filter(|c| !c.is_empty()),
            },
            after: None,
            done: false,
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    pub(super) async fn get_credit_liability_report(
        &self,
        call: Call<pb::GetCreditLiabilityReportRequest>,
    ) -> Reply<pb::GetCreditLiabilityReportResponse> {
        let mut out = Vec::new();
        let Some((from, to)) = period(call.body.from.as_ref(), call.body.to.as_ref(), &mut out)
        else {
            return Err(invalid(out));
        };
        let rows = self
            .ledger
            .liability_report(call.account(), from, to)
            .await?;
        Ok(pb::GetCreditLiabilityReportResponse {
            rows: rows.iter().map(row).collect(),
        })
    }
}
