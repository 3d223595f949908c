//! `billing.meter.v1.MeterService` over [`Metering`].
//!
//! Transport only: requests are converted and checked in [`convert`],
//! errors mapped in [`status`], and each unary handler calls one use case
//! through the shared handler shape (`billing_server::handler`).

pub mod convert;
pub mod events;
pub mod status;

use billing_db::idempotency::IdempotencyKey;
use billing_money::FieldViolation;
use billing_proto::meter::v1 as pb;
use billing_proto::meter::v1::meter_service_server::{MeterService, MeterServiceServer};
use billing_server::auth::principal;
use billing_server::events::{EVENT_SERVICE_NAME, EventFeed};
use billing_server::handler::{Call, Reply, invalid, page, required};
use billing_server::host::{Routes, Served, Serving};
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
use crate::ops::{RANGES_MAX, UsageRange};

/// Acknowledgements buffered per stream before the server waits for the client to read.
const STREAM_ACKS_BUFFERED: usize = 8;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.meter.v1.MeterService";

/// The routes of meter-ingest's port, behind `auth`, and the services they serve.
pub fn routes(metering: &Metering, max: usize, serving: &Serving) -> Served {
    let service = MeterServiceServer::new(MeterGrpc {
        metering: metering.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let feed = EventFeed::new(
        metering.db().clone(),
        events::MeterEvents,
        "meter",
        serving.draining.clone(),
    )
    .server(max);
    (
        Routes::new(InterceptedService::new(service, serving.auth.clone()))
            .add_service(InterceptedService::new(feed, serving.auth.clone())),
        vec![SERVICE_NAME, EVENT_SERVICE_NAME],
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

/// BatchGetUsage's ranges, each checked like GetUsage's.
fn batch_query(body: &pb::BatchGetUsageRequest) -> Result<Vec<UsageRange>, Status> {
    let mut out = Vec::new();
    if body.customer.is_empty() {
        out.push(FieldViolation::new("customer", "is required"));
    }
    if body.ranges.is_empty() || body.ranges.len() > RANGES_MAX {
        out.push(FieldViolation::new(
            "ranges",
            format!("must have 1 to {RANGES_MAX} ranges"),
        ));
        return Err(invalid(out));
    }
    let mut ranges = Vec::with_capacity(body.ranges.len());
    for (index, range) in body.ranges.iter().enumerate() {
        let field = |name: &str| format!("ranges[{index}].{name}");
        if range.meter.is_empty() {
            out.push(FieldViolation::new(field("meter"), "is required"));
        }
        let mut time = |t: Option<&prost_types::Timestamp>, name: &str| match t {
            None => {
                out.push(FieldViolation::new(field(name), "is required"));
                None
            }
            Some(t) => from_proto(t, &field(name)).map_err(|v| out.push(v)).ok(),
        };
        let start = time(range.start_time.as_ref(), "start_time");
        let end = time(range.end_time.as_ref(), "end_time");
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                out.push(FieldViolation::new(
                    field("end_time"),
                    "must be after start_time",
                ));
            }
            ranges.push(UsageRange {
                meter: range.meter.clone(),
                start,
                end,
            });
        }
    }
    if out.is_empty() {
        Ok(ranges)
    } else {
        Err(invalid(out))
    }
}

billing_server::unary_service! {
    impl MeterService for MeterGrpc, pb {
        get_meter list_meters ingest_events cancel_event get_usage batch_get_usage
    } mutations {
        create_meter update_meter deactivate_meter reactivate_meter
    };
    type StreamEventsStream = EventAcks;

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        self.stream(request)
    }
}

/// The status that ends a stream at a batch the server could not read:
/// oversized is RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE), undecodable is
/// INVALID_ARGUMENT (the strict codec), each naming the batch.
fn stream_error(status: Status, batch_index: i64) -> Status {
    let code = match status.code() {
        tonic::Code::OutOfRange => tonic::Code::ResourceExhausted,
        tonic::Code::Internal | tonic::Code::Unknown => tonic::Code::InvalidArgument,
        code => code,
    };
    let message = format!(
        "batch {batch_index} could not be read ({}); batches before it were stored and acknowledged, none after",
        billing_server::status::clip(status.message(), 200)
    );
    Status::new(code, message)
}

/// The acknowledgements of a StreamEvents call.
type EventAcks = ReceiverStream<Result<pb::StreamEventsResponse, Status>>;

impl MeterGrpc {
    /// StreamEventsStream: each batch is ingested and acknowledged in order.
    fn stream(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<EventAcks>, Status> {
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
                        // A batch that does not decode, or is over the size
                        // limit, ends the stream with that error, so the client
                        // knows exactly which batches were stored (every
                        // acknowledged one, none after): never OK after a loss.
                        // A client that hung up cannot be told; sending fails.
                        tracing::debug!(%status, batch_index, "event stream ended on a bad batch");
                        let _ = acks.send(Err(stream_error(status, batch_index))).await;
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

    async fn create_meter(
        &self,
        call: Call<pb::CreateMeterRequest>,
    ) -> Reply<pb::CreateMeterResponse> {
        record_ids(&[("event_name", call.body.event_name.as_str())]);
        let new = convert::new_meter(&call.body).map_err(invalid)?;
        let meter = self
            .metering
            .create_meter(call.account(), new, call.key())
            .await?;
        Ok(pb::CreateMeterResponse {
            meter: Some(convert::meter(&meter)),
        })
    }

    async fn get_meter(&self, call: Call<pb::GetMeterRequest>) -> Reply<pb::GetMeterResponse> {
        let meter = self
            .metering
            .meter(call.account(), id(&call.body.id)?)
            .await?;
        Ok(pb::GetMeterResponse {
            meter: Some(convert::meter(&meter)),
        })
    }

    async fn list_meters(
        &self,
        call: Call<pb::ListMetersRequest>,
    ) -> Reply<pb::ListMetersResponse> {
        let page = page(call.body.page_size, &call.body.page_token)?;
        let (meters, next_page_token) = self.metering.list_meters(call.account(), &page).await?;
        let meters = meters.iter().map(convert::meter).collect();
        Ok(pb::ListMetersResponse {
            meters,
            next_page_token,
        })
    }

    async fn update_meter(
        &self,
        call: Call<pb::UpdateMeterRequest>,
    ) -> Reply<pb::UpdateMeterResponse> {
        let meter_id = id(&call.body.id)?;
        let name = convert::display_name(&call.body.display_name).map_err(invalid)?;
        let meter = self
            .metering
            .rename(call.account(), meter_id, name, call.key())
            .await?;
        Ok(pb::UpdateMeterResponse {
            meter: Some(convert::meter(&meter)),
        })
    }

    async fn deactivate_meter(
        &self,
        call: Call<pb::DeactivateMeterRequest>,
    ) -> Reply<pb::DeactivateMeterResponse> {
        let meter = self
            .set_active(call.account(), &call.body.id, false, call.key())
            .await?;
        Ok(pb::DeactivateMeterResponse { meter: Some(meter) })
    }

    async fn reactivate_meter(
        &self,
        call: Call<pb::ReactivateMeterRequest>,
    ) -> Reply<pb::ReactivateMeterResponse> {
        Ok(pb::ReactivateMeterResponse {
            meter: Some(
                self.set_active(call.account(), &call.body.id, true, call.key())
                    .await?,
            ),
        })
    }

    /// DeactivateMeter and ReactivateMeter.
    async fn set_active(
        &self,
        account: &str,
        meter: &str,
        active: bool,
        key: Option<&IdempotencyKey>,
    ) -> Reply<pb::Meter> {
        let meter = self
            .metering
            .set_active(account, id(meter)?, active, key)
            .await?;
        Ok(convert::meter(&meter))
    }

    #[tracing::instrument(skip_all, fields(events = call.body.events.len()))]
    async fn ingest_events(
        &self,
        call: Call<pb::IngestEventsRequest>,
    ) -> Reply<pb::IngestEventsResponse> {
        check_batch_size(call.body.events.len())?;
        let inputs = convert::events(call.body.events);
        let outcomes = self.metering.ingest(&call.caller.account, &inputs).await?;
        let (accepted, duplicate, rejected) = convert::counts(&outcomes);
        let results = convert::results(&inputs, &outcomes);
        Ok(pb::IngestEventsResponse {
            results,
            accepted,
            duplicate,
            rejected,
        })
    }

    async fn cancel_event(
        &self,
        call: Call<pb::CancelEventRequest>,
    ) -> Reply<pb::CancelEventResponse> {
        let identifier = call.body.identifier;
        record_ids(&[("identifier", identifier.as_str())]);
        required(&identifier, "identifier")?;
        let cancelled_at = self
            .metering
            .cancel(&call.caller.account, &identifier)
            .await?;
        Ok(pb::CancelEventResponse {
            identifier,
            cancelled_at: Some(to_proto(cancelled_at)),
        })
    }

    async fn get_usage(&self, call: Call<pb::GetUsageRequest>) -> Reply<pb::GetUsageResponse> {
        let body = &call.body;
        record_ids(&[
            ("meter", body.meter.as_str()),
            ("customer", body.customer.as_str()),
        ]);
        let (start, end, grouping) = usage_query(body)?;
        let usage = self.metering.usage(
            call.account(),
            &body.meter,
            &body.customer,
            start,
            end,
            grouping,
        );
        Ok(convert::usage(&usage.await?))
    }

    async fn batch_get_usage(
        &self,
        call: Call<pb::BatchGetUsageRequest>,
    ) -> Reply<pb::BatchGetUsageResponse> {
        record_ids(&[("customer", call.body.customer.as_str())]);
        let ranges = batch_query(&call.body)?;
        let usages = self
            .metering
            .batch_usage(call.account(), &call.body.customer, &ranges)
            .await?;
        Ok(pb::BatchGetUsageResponse {
            usages: usages
                .iter()
                .map(|usage| {
                    let response = convert::usage(usage);
                    pb::RangeUsage {
                        aggregation: response.aggregation,
                        total: response.total,
                    }
                })
                .collect(),
        })
    }
}

/// A meter id the request must carry; recorded on the RPC's span.
fn id(value: &str) -> Reply<&str> {
    record_ids(&[("id", value)]);
    required(value, "id")?;
    Ok(value)
}
