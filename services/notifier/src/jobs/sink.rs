//! The JetStream sink: every received event is published to
//! `billing.events.<account>.<type>` with `Nats-Msg-Id` = the event id, in
//! the order received, and marked published after JetStream acknowledged
//! it. A crash between the two publishes it again, and JetStream drops the
//! duplicate (its duplicate window, 2 minutes by default, covers a restart).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::Wakers;
use crate::ops::Notifier;

/// The stream the sink creates when it does not exist.
pub const STREAM: &str = "BILLING_EVENTS";

/// Publishes until `stop` turns true, reconnecting after failures.
pub async fn run(
    notifier: Notifier,
    url: String,
    wakers: Arc<Wakers>,
    mut stop: billing_server::host::Stop,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(error) = publish_until_stopped(&notifier, &url, &wakers, &mut stop).await {
            tracing::warn!(%error, "JetStream sink interrupted; retrying");
        } else {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn publish_until_stopped(
    notifier: &Notifier,
    url: &str,
    wakers: &Wakers,
    stop: &mut billing_server::host::Stop,
) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let context = jetstream::new(client);
    context
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["billing.events.>".to_owned()],
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let store = notifier.store();
    loop {
        let batch = store.unpublished(100).await.map_err(|e| e.to_string())?;
        for event in &batch {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_str());
            let subject = format!("billing.events.{}.{}", event.account, event.event_type);
            context
                .publish_with_headers(subject, headers, event.body.clone().into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            store
                .mark_published(&event.account, &event.id, notifier.clock().now())
                .await
                .map_err(|e| e.to_string())?;
        }
        if !batch.is_empty() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = wakers.sink.notified() => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}
