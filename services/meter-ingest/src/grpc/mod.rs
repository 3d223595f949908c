//! `billing.meter.v1.MeterService` over [`Metering`].

pub mod convert;
pub mod status;

use billing_money::FieldViolation;
use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_server::MeterService;
use billing_server::auth::principal;
use billing_server::idempotent::idempotency_key;
use billing_server::page::PageRequest;
use billing_server::time::{from_proto, to_proto};
use billing_telemetry::record_ids;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::event::BATCH_MAX;
use crate::error::MeterError;
use crate::ops::Metering;
use status::to_status;

/// Acknowledgements buffered per stream before the server waits for the client to read.
const STREAM_ACKS_BUFFERED: usize = 8;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.meter.v1.MeterService";

/// The routes of meter-ingest's port, behind `auth`, and the services they serve.
pub fn routes(
    metering: &Metering,
    max_message_bytes: usize,
    auth: billing_server::auth::AuthInterceptor,
) -> (billing_server::host::Routes, Vec<&'static str>) {
    let service =
        pb::meter_service_server::MeterServiceServer::new(MeterGrpc::new(metering.clone()))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
    let routes = billing_server::host::Routes::new(
        tonic::service::interceptor::InterceptedService::new(service, auth),
    );
    (routes, vec![SERVICE_NAME])
}

/// The gRPC face of metering.
#[derive(Debug, Clone)]
pub struct MeterGrpc {
    metering: Metering,
}

impl MeterGrpc {
    /// Serves `metering`.
    pub fn new(metering: Metering) -> Self {
        Self { metering }
    }
}

fn invalid(violations: Vec<FieldViolation>) -> Status {
    to_status(MeterError::Invalid(violations))
}

fn required(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(vec![FieldViolation::new(field, "is required")]));
    }
    Ok(())
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

#[tonic::async_trait]
impl MeterService for MeterGrpc {
    async fn create_meter(
        &self,
        request: Request<pb::CreateMeterRequest>,
    ) -> Result<Response<pb::CreateMeterResponse>, Status> {
        record_ids(&[("event_name", request.get_ref().event_name.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        let new = convert::new_meter(&body).map_err(invalid)?;
        let meter = self
            .metering
            .create_meter(&account, new, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateMeterResponse {
            meter: Some(convert::meter(&meter)),
        }))
    }
    async fn get_meter(
        &self,
        request: Request<pb::GetMeterRequest>,
    ) -> Result<Response<pb::GetMeterResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        required(&request.get_ref().id, "id")?;
        let meter = self
            .metering
            .meter(&account, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetMeterResponse {
            meter: Some(convert::meter(&meter)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_meters(
        &self,
        request: Request<pb::ListMetersRequest>,
    ) -> Result<Response<pb::ListMetersResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.get_ref();
        let page =
            PageRequest::parse(body.page_size, &body.page_token).map_err(|v| invalid(vec![v]))?;
        let (meters, next_page_token) = self
            .metering
            .list_meters(&account, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListMetersResponse {
            meters: meters.iter().map(convert::meter).collect(),
            next_page_token,
        }))
    }
    async fn update_meter(
        &self,
        request: Request<pb::UpdateMeterRequest>,
    ) -> Result<Response<pb::UpdateMeterResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let name = convert::display_name(&body.display_name).map_err(invalid)?;
        let meter = self
            .metering
            .rename(&account, &body.id, name, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateMeterResponse {
            meter: Some(convert::meter(&meter)),
        }))
    }
    async fn deactivate_meter(
        &self,
        request: Request<pb::DeactivateMeterRequest>,
    ) -> Result<Response<pb::DeactivateMeterResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let meter = self
            .metering
            .set_active(&account, &body.id, false, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeactivateMeterResponse {
            meter: Some(convert::meter(&meter)),
        }))
    }
    async fn reactivate_meter(
        &self,
        request: Request<pb::ReactivateMeterRequest>,
    ) -> Result<Response<pb::ReactivateMeterResponse>, Status> {
        record_ids(&[("id", request.get_ref().id.as_str())]);
        let account = principal(&request)?.account;
        let body = request.into_inner();
        let key = idempotency_key(&body)?;
        required(&body.id, "id")?;
        let meter = self
            .metering
            .set_active(&account, &body.id, true, key.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReactivateMeterResponse {
            meter: Some(convert::meter(&meter)),
        }))
    }

    #[tracing::instrument(skip_all, fields(events = request.get_ref().events.len()))]
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        check_batch_size(body.events.len())?;
        let inputs = convert::events(body.events);
        let outcomes = self
            .metering
            .ingest(&account, &inputs)
            .await
            .map_err(to_status)?;
        let (accepted, duplicate, rejected) = convert::counts(&outcomes);
        Ok(Response::new(pb::IngestEventsResponse {
            results: convert::results(&inputs, &outcomes),
            accepted,
            duplicate,
            rejected,
        }))
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
                    let outcomes = metering
                        .ingest(&account, &inputs)
                        .await
                        .map_err(to_status)?;
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
    ) -> Result<Response<pb::CancelEventResponse>, Status> {
        record_ids(&[("identifier", request.get_ref().identifier.as_str())]);
        let account = principal(&request)?.account;
        let identifier = &request.get_ref().identifier;
        required(identifier, "identifier")?;
        let cancelled_at = self
            .metering
            .cancel(&account, identifier)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CancelEventResponse {
            identifier: identifier.clone(),
            cancelled_at: Some(to_proto(cancelled_at)),
        }))
    }
    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        record_ids(&[
            ("meter", request.get_ref().meter.as_str()),
            ("customer", request.get_ref().customer.as_str()),
        ]);
        let account = principal(&request)?.account;
        let body = request.get_ref();
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
        let (Some(start), Some(end), Some(grouping)) = (start, end, grouping) else {
            return Err(invalid(out));
        };
        if !out.is_empty() {
            return Err(invalid(out));
        }
        let usage = self
            .metering
            .usage(&account, &body.meter, &body.customer, start, end, grouping)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::usage(&usage)))
    }
}
