//! The services' event feeds, as the notifier reads them: a WatchEvents
//! stream per account and service, with the internal key acting for the
//! account; each event turned into its webhook body (proto3 JSON).

use billing_proto::events::v1 as pb;
use billing_proto::events::v1::event_service_client::EventServiceClient;
use billing_server::peer::{self, InternalCaller, PeerChannel};
use futures_util::{Stream, StreamExt};
use std::time::Duration;

use crate::config::Source;
use crate::store::Received;

/// One batch of a feed: its events and the cursor after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The events, oldest first.
    pub events: Vec<Received>,
    /// The cursor of the last one.
    pub cursor: String,
}

/// Why a feed stopped (the follower reconnects from its stored cursor).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The service answered with an error or the stream broke.
    #[error("{source_name}: {status}")]
    Status {
        /// The feed.
        source_name: &'static str,
        /// What it said.
        status: tonic::Status,
    },
    /// An event could not be rendered (never expected: the protos are ours).
    #[error("{0}")]
    Render(String),
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
}

/// The feeds the notifier follows.
#[derive(Debug, Clone)]
pub struct Feeds {
    feeds: Vec<(&'static str, EventServiceClient<PeerChannel>)>,
    caller: InternalCaller,
}

impl Feeds {
    /// Lazy channels to `sources`, called with `internal_api_key`.
    pub fn new(sources: &[Source], internal_api_key: &str) -> Result<Self, FeedError> {
        let caller =
            InternalCaller::new(internal_api_key, Duration::from_secs(10)).ok_or_else(|| {
                FeedError::Config("the internal API key is not valid metadata".into())
            })?;
        let feeds = sources
            .iter()
            .map(|source| {
                let channel = peer::channel(&source.url)
                    .map_err(|e| FeedError::Config(format!("{}: {e}", source.url)))?;
                Ok((source.name, EventServiceClient::new(channel)))
            })
            .collect::<Result<_, FeedError>>()?;
        Ok(Self { feeds, caller })
    }

    /// The names of the feeds, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.feeds.iter().map(|(name, _)| *name).collect()
    }

    /// Watches `account`'s feed number `index` after `cursor` (empty: from
    /// the start).
    pub async fn watch(
        &self,
        index: usize,
        account: &str,
        cursor: &str,
    ) -> Result<impl Stream<Item = Result<Batch, FeedError>> + Send + use<>, FeedError> {
        let (name, client) = self
            .feeds
            .get(index)
            .ok_or_else(|| FeedError::Config(format!("no feed {index}")))?;
        let name: &'static str = name;
        let request = pb::WatchEventsRequest {
            after_cursor: cursor.to_owned(),
            types: Vec::new(),
            until_caught_up: false,
        };
        let request = self
            .caller
            .stream_request(account, request)
            .ok_or_else(|| {
                FeedError::Config(format!("account {account:?} is not valid metadata"))
            })?;
        let stream = client
            .clone()
            .watch_events(request)
            .await
            .map_err(|status| FeedError::Status {
                source_name: name,
                status,
            })?
            .into_inner();
        Ok(stream.map(move |item| {
            let batch = item.map_err(|status| FeedError::Status {
                source_name: name,
                status,
            })?;
            let cursor = batch
                .events
                .last()
                .map(|e| e.cursor.clone())
                .unwrap_or_default();
            let events = batch
                .events
                .into_iter()
                .map(received)
                .collect::<Result<_, _>>()?;
            Ok(Batch { events, cursor })
        }))
    }
}

/// An event as the notifier keeps it: the webhook body is the event's
/// proto3 JSON without the feed's cursor (meaningless to a receiver).
fn received(mut event: pb::Event) -> Result<Received, FeedError> {
    event.cursor.clear();
    let body = billing_proto::json::to_json(&event, "billing.events.v1.Event")
        .map_err(|e| FeedError::Render(e.to_string()))?;
    let created = event
        .created
        .as_ref()
        .and_then(|t| billing_server::time::from_proto(t, "created").ok())
        .unwrap_or_default();
    Ok(Received {
        id: event.id,
        event_type: event.r#type,
        created,
        body,
    })
}

/// The webhook body of a test event.
pub fn test_body(id: &str, created: chrono::DateTime<chrono::Utc>) -> Result<String, FeedError> {
    let event = pb::Event {
        id: id.to_owned(),
        r#type: crate::domain::endpoint::TEST_EVENT_TYPE.to_owned(),
        created: Some(billing_server::time::to_proto(created)),
        cursor: String::new(),
        data: None,
    };
    billing_proto::json::to_json(&event, "billing.events.v1.Event")
        .map_err(|e| FeedError::Render(e.to_string()))
}
