//! `billing.meter.v1.MeterService` over [`Metering`].
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each unary handler calls one use case
//! through the shared handler shape (`billing_server::handler`).

pub mod convert;
pub mod status;

use billing_money::FieldViolation;
use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_server::{MeterService, MeterServiceServer};
use billing_server::auth::{AuthInterceptor, principal};
use billing_server::handler::{invalid, mutation, page, required, unary};
use billing_server::host::Routes;
use billing_server::time::{from_proto, to_proto};
use billing_telemetry::record_ids;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::event::BATCH_MAX;
use crate::domain::usage::Grouping;
use crate::ops::Metering;

/// Acknowledgements buffered per stream before the server waits for the client to read.
const STREAM_ACKS_BUFFERED: usize = 8;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.meter.v1.MeterService";

/// The routes of meter-ingest's port, behind `auth`, and the services they serve.
pub fn routes(
    metering: &Metering,
    max: usize,
    auth: AuthInterceptor,
) -> (Routes, Vec<&'static str>) {
    let service = MeterServiceServer::new(MeterGrpc {
        metering: metering.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    (
        Routes::new(InterceptedService::new(service, auth)),
        vec![SERVICE_NAME],
    )
}

/// The gRPC face of metering.
#[derive(Debug, Clone)]
pub struct MeterGrpc {
    metering: Metering,
}

fn check_batch_size(len: usize) -> Result<(), Status> {
    if len == 0 || len > BATCH_MAX {
        return Err(invalid(vec![FieldViolation::new(
            "events",
            format!("a batch holds 1 to {BATCH_MAX} events, this one has {len}"),
        )]));
    }
    Ok(())
}

/// GetUsage's range and grouping, with every bad field named at once.
fn usage_query(
    body: &pb::GetUsageRequest,
) -> Result<(DateTime<Utc>, DateTime<Utc>, Grouping), Status> {
    let mut out = Vec::new();
    for (value, field) in [(&body.customer, "customer"), (&body.meter, "meter")] {
        if value.is_empty() {
            out.push(FieldViolation::new(field, "is required"));
        }
    }
    let mut time = |t: Option<&prost_types::Timestamp>, field: &str| match t {
        None => {
            out.push(FieldViolation::new(field, "is required"));
            None
        }
        Some(t) => from_proto(t, field).map_err(|v| out.push(v)).ok(),
    };
    let start = time(body.start_time.as_ref(), "start_time");
    let end = time(body.end_time.as_ref(), "end_time");
    let grouping = convert::grouping(body.grouping_window)
        .map_err(|v| out.extend(v))
        .ok();
    match (start, end, grouping) {
        (Some(start), Some(end), Some(grouping)) if out.is_empty() => Ok((start, end, grouping)),
        _ => Err(invalid(out)),
    }
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl MeterService for MeterGrpc {
    async fn create_meter(
        &self,
        request: Request<pb::CreateMeterRequest>,
    ) -> Rpc<pb::CreateMeterResponse> {
        record_ids(&[("event_name", request.get_ref().event_name.as_str())]);
        mutation(request, |caller, body, key| async move {
            let new = convert::new_meter(&body).map_err(invalid)?;
            let meter = self
                .metering
                .create_meter(&caller.account, new, key.as_ref())
                .await?;
            Ok(pb::CreateMeterResponse {
                meter: Some(convert::meter(&meter)),
            })
        })
        .await
    }

    async fn get_meter(&self, request: Request<pb::GetMeterRequest>) -> Rpc<pb::GetMeterResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        unary(request, |caller, body| async move {
            required(&body.id, "id")?;
            let meter = self.metering.meter(&caller.account, &body.id).await?;
            Ok(pb::GetMeterResponse {
                meter: Some(convert::meter(&meter)),
            })
        })
        .await
    }

    async fn list_meters(
        &self,
        request: Request<pb::ListMetersRequest>,
    ) -> Rpc<pb::ListMetersResponse> {
        unary(request, |caller, body| async move {
            let page = page(body.page_size, &body.page_token)?;
            let (meters, next_page_token) =
                self.metering.list_meters(&caller.account, &page).await?;
            let meters = meters.iter().map(convert::meter).collect();
            Ok(pb::ListMetersResponse {
                meters,
                next_page_token,
            })
        })
        .await
    }

    async fn update_meter(
        &self,
        request: Request<pb::UpdateMeterRequest>,
    ) -> Rpc<pb::UpdateMeterResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            required(&body.id, "id")?;
            let name = convert::display_name(&body.display_name).map_err(invalid)?;
            let meter = self
                .metering
                .rename(&caller.account, &body.id, name, key.as_ref())
                .await?;
            Ok(pb::UpdateMeterResponse {
                meter: Some(convert::meter(&meter)),
            })
        })
        .await
    }

    async fn deactivate_meter(
        &self,
        request: Request<pb::DeactivateMeterRequest>,
    ) -> Rpc<pb::DeactivateMeterResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            let meter = self
                .set_active(&caller.account, &body.id, false, key)
                .await?;
            Ok(pb::DeactivateMeterResponse { meter: Some(meter) })
        })
        .await
    }

    async fn reactivate_meter(
        &self,
        request: Request<pb::ReactivateMeterRequest>,
    ) -> Rpc<pb::ReactivateMeterResponse> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        mutation(request, |caller, body, key| async move {
            let meter = self
                .set_active(&caller.account, &body.id, true, key)
                .await?;
            Ok(pb::ReactivateMeterResponse { meter: Some(meter) })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(events = request.get_ref().events.len()))]
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Rpc<pb::IngestEventsResponse> {
        unary(request, |caller, body| async move {
            check_batch_size(body.events.len())?;
            let inputs = convert::events(body.events);
            let outcomes = self.metering.ingest(&caller.account, &inputs).await?;
            let (accepted, duplicate, rejected) = convert::counts(&outcomes);
            let results = convert::results(&inputs, &outcomes);
            Ok(pb::IngestEventsResponse {
                results,
                accepted,
                duplicate,
                rejected,
            })
        })
        .await
    }

    type StreamEventsStream = ReceiverStream<Result<pb::StreamEventsResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let account = principal(&request)?.account;
        let mut inbound = request.into_inner();
        let (acks, receiver) = mpsc::channel(STREAM_ACKS_BUFFERED);
        let metering = self.metering.clone();
        tokio::spawn(async move {
            let mut batch_index = 0_i64;
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "event stream ended by the client");
                        return;
                    }
                };
                let ack = async {
                    check_batch_size(batch.events.len())?;
                    let inputs = convert::events(batch.events);
                    let outcomes = metering.ingest(&account, &inputs).await?;
                    let (accepted, duplicate, rejected) = convert::counts(&outcomes);
                    let rejections = convert::results(&inputs, &outcomes)
                        .into_iter()
                        .filter(|r| r.outcome == pb::EventOutcome::Rejected as i32)
                        .collect();
                    Ok(pb::StreamEventsResponse {
                        batch_index,
                        accepted,
                        duplicate,
                        rejected,
                        rejections,
                    })
                }
                .await;
                let failed = ack.is_err();
                if acks.send(ack).await.is_err() || failed {
                    return;
                }
                batch_index += 1;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
    async fn cancel_event(
        &self,
        request: Request<pb::CancelEventRequest>,
    ) -> Rpc<pb::CancelEventResponse> {
        record_ids(&[("identifier", request.get_ref().identifier.as_str())]);
        unary(request, |caller, body| async move {
            required(&body.identifier, "identifier")?;
            let cancelled_at = self
                .metering
                .cancel(&caller.account, &body.identifier)
                .await?;
            let cancelled_at = Some(to_proto(cancelled_at));
            Ok(pb::CancelEventResponse {
                identifier: body.identifier,
                cancelled_at,
            })
        })
        .await
    }

    async fn get_usage(&self, request: Request<pb::GetUsageRequest>) -> Rpc<pb::GetUsageResponse> {
        let body = request.get_ref();
        record_ids(&[
            ("meter", body.meter.as_str()),
            ("customer", body.customer.as_str()),
        ]);
        unary(request, |caller, body| async move {
            let (start, end, grouping) = usage_query(&body)?;
            let usage = self
                .metering
                .usage(
                    &caller.account,
                    &body.meter,
                    &body.customer,
                    start,
                    end,
                    grouping,
                )
                .await?;
            Ok(convert::usage(&usage))
        })
        .await
    }
}

impl MeterGrpc {
    /// DeactivateMeter and ReactivateMeter.
    async fn set_active(
        &self,
        account: &str,
        id: &str,
        active: bool,
        key: Option<billing_db::idempotency::IdempotencyKey>,
    ) -> Result<pb::Meter, Status> {
        required(id, "id")?;
        let meter = self
            .metering
            .set_active(account, id, active, key.as_ref())
            .await?;
        Ok(convert::meter(&meter))
    }
}
