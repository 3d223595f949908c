//! `billing.events.v1.EventService`, served by every service over its own
//! outbox (`billing_db::events`). The service supplies only how a stored
//! event's data becomes its proto message ([`EventData`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use billing_db::Db;
use billing_db::events::{self, Cursor, StoredEvent};
use billing_money::FieldViolation;
use billing_proto::events::v1 as pb;
use billing_proto::events::v1::event_service_server::{EventService, EventServiceServer};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::auth::principal;
use crate::handler::{check_strings, invalid, page};
use crate::host::Stop;
use crate::status::storage_status;
use crate::time::to_proto;

/// Types a request may filter on.
const TYPES_MAX: usize = 20;
/// Events per WatchEvents batch.
const WATCH_BATCH: i64 = 100;

/// How a service turns a stored event's data into its proto message.
pub trait EventData: Send + Sync + 'static {
    /// The `data` of `event`, or why it cannot be read (an internal error).
    fn data(&self, event: &StoredEvent) -> Result<Option<pb::event::Data>, String>;
}

/// The feed of one service.
pub struct EventFeed<D> {
    db: Db,
    data: Arc<D>,
    service: &'static str,
    poll: Duration,
    draining: Stop,
}

impl<D: EventData> EventFeed<D> {
    /// The feed over `db`'s outbox; `service` names it in errors. Watches
    /// end with UNAVAILABLE when `draining` turns true (shutdown began), so
    /// the drain does not wait on them and clients resume elsewhere.
    pub fn new(db: Db, data: D, service: &'static str, draining: Stop) -> Self {
        Self {
            db,
            data: Arc::new(data),
            service,
            poll: Duration::from_millis(200),
            draining,
        }
    }

    /// The gRPC server, with the port's message size limits.
    pub fn server(self, max_message_bytes: usize) -> EventServiceServer<Self> {
        EventServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// The fully qualified name of the event service.
pub const EVENT_SERVICE_NAME: &str = "billing.events.v1.EventService";

fn check_types(types: &[String], field: &str) -> Result<(), Status> {
    if types.len() > TYPES_MAX {
        return Err(invalid(vec![FieldViolation::new(
            field,
            format!("at most {TYPES_MAX} types"),
        )]));
    }
    let bad: Vec<FieldViolation> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.is_empty()
                || t.len() > 100
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
        })
        .map(|(i, _)| {
            FieldViolation::new(
                format!("{field}[{i}]"),
                "must be an event type such as credit_balance.created",
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(invalid(bad))
    }
}

fn to_event<D: EventData>(data: &D, event: StoredEvent) -> Result<pb::Event, Status> {
    let payload = data.data(&event).map_err(|error| {
        tracing::error!(event = %event.id, %error, "unreadable stored event");
        Status::internal("internal error")
    })?;
    Ok(pb::Event {
        id: event.id,
        r#type: event.event_type,
        created: Some(to_proto(crate::time::from_micros(event.created_us))),
        cursor: event.cursor.to_string(),
        data: payload,
    })
}

/// ListEvents' `[created_after, created_before)` in µs (open ends: all time).
fn created_range(body: &pb::ListEventsRequest) -> Result<events::CreatedRange, Status> {
    let mut out = Vec::new();
    let mut bound = |time: Option<&prost_types::Timestamp>, field: &str, default: i64| match time {
        None => default,
        Some(time) => match crate::time::from_proto(time, field) {
            Ok(time) => crate::time::to_micros(time),
            Err(violation) => {
                out.push(violation);
                default
            }
        },
    };
    let from = bound(
        body.created_after.as_ref(),
        "created_after",
        events::ALL_TIME.0,
    );
    let until = bound(
        body.created_before.as_ref(),
        "created_before",
        events::ALL_TIME.1,
    );
    if out.is_empty() && until <= from {
        out.push(FieldViolation::new(
            "created_before",
            "must be after created_after",
        ));
    }
    if out.is_empty() {
        Ok((from, until))
    } else {
        Err(invalid(out))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<D: EventData> EventService for EventFeed<D> {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        check_strings(&body)?;
        check_types(&body.types, "types")?;
        let page = page(body.page_size, &body.page_token)?;
        let before = match &page.before_id {
            Some(token) => Some(Cursor::parse(token).ok_or_else(|| {
                invalid(vec![FieldViolation::new(
                    "page_token",
                    "is not a token returned by this list",
                )])
            })?),
            None => None,
        };
        let created = created_range(&body)?;
        let rows = events::newest(
            &self.db,
            &account,
            before,
            (&body.types, created),
            page.fetch_limit(),
        )
        .await
        .map_err(|e| storage_status(e, self.service, "events.billing"))?;
        // Paired with its cursor, the token of the page's last event.
        let rows = rows
            .into_iter()
            .map(|e| (e.cursor.to_string(), e))
            .collect();
        let (rows, next_page_token) = page.finish(rows, |(cursor, _)| cursor.as_str());
        let events = rows
            .into_iter()
            .map(|(_, event)| to_event(self.data.as_ref(), event))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token,
        }))
    }

    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let account = principal(&request)?.account;
        let body = request.into_inner();
        check_strings(&body)?;
        check_types(&body.types, "types")?;
        let cursor = if body.after_cursor.is_empty() {
            None
        } else {
            Some(Cursor::parse(&body.after_cursor).ok_or_else(|| {
                invalid(vec![FieldViolation::new(
                    "after_cursor",
                    "is not a cursor of this feed",
                )])
            })?)
        };
        let state = Watch {
            db: self.db.clone(),
            data: Arc::clone(&self.data),
            service: self.service,
            poll: self.poll,
            draining: self.draining.clone(),
            account,
            types: body.types,
            cursor,
            failed: false,
            until_caught_up: body.until_caught_up,
        };
        let stream = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next_batch().await?;
            Some((item, state))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One WatchEvents stream's position.
struct Watch<D> {
    db: Db,
    data: Arc<D>,
    service: &'static str,
    poll: Duration,
    draining: Stop,
    account: String,
    types: Vec<String>,
    cursor: Option<Cursor>,
    failed: bool,
    /// End when nothing is left to send instead of waiting for more.
    until_caught_up: bool,
}

impl<D: EventData> Watch<D> {
    /// The next non-empty batch (waiting for one), or the error that ends
    /// the stream; `None` after that error.
    async fn next_batch(&mut self) -> Option<Result<pb::WatchEventsResponse, Status>> {
        if self.failed {
            return None;
        }
        loop {
            if *self.draining.borrow() {
                self.failed = true;
                return Some(Err(Status::unavailable(
                    "the server is shutting down; resume from your last cursor",
                )));
            }
            let rows = match events::after(
                &self.db,
                &self.account,
                self.cursor,
                &self.types,
                WATCH_BATCH,
            )
            .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(storage_status(error, self.service, "events.billing")));
                }
            };
            let Some(last) = rows.last() else {
                if self.until_caught_up {
                    return None;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.poll) => {}
                    _ = self.draining.changed() => {}
                }
                continue;
            };
            self.cursor = Some(last.cursor);
            let events: Result<Vec<_>, _> = rows
                .into_iter()
                .map(|event| to_event(self.data.as_ref(), event))
                .collect();
            return Some(match events {
                Ok(events) => Ok(pb::WatchEventsResponse { events }),
                Err(status) => {
                    self.failed = true;
                    Err(status)
                }
            });
        }
    }
}
