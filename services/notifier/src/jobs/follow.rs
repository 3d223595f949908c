//! Following one account's feed of one service: each batch is stored with
//! its deliveries and the feed's new cursor in one transaction, so a crash,
//! a restart of either side or a broken stream resumes from the stored
//! cursor and creates nothing twice.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Wakers;
use crate::ops::Notifier;
use crate::upstream::Feeds;

/// What a follower needs.
#[derive(Debug, Clone)]
pub struct Follower {
    /// The use cases (store, clock).
    pub notifier: Notifier,
    /// The feeds.
    pub feeds: Arc<Feeds>,
    /// Which feed.
    pub index: usize,
    /// Whose events.
    pub account: String,
    /// Whether a JetStream sink publishes the events.
    pub sink: bool,
    /// Whom to wake.
    pub wakers: Arc<Wakers>,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Follower {
    /// Follows until `stop` turns true.
    pub async fn run(self, mut stop: billing_server::host::Stop) {
        let name = self.feeds.names().get(self.index).copied().unwrap_or("?");
        let mut backoff = BACKOFF_FIRST;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.follow_once(name, &mut stop, &mut backoff).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(feed = name, account = %self.account, %error, "feed interrupted; resuming");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: returns Ok when stopped, the error otherwise.
    async fn follow_once(
        &self,
        name: &'static str,
        stop: &mut billing_server::host::Stop,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let store = self.notifier.store();
        let cursor = store
            .cursor(&self.account, name)
            .await
            .map_err(|e| e.to_string())?;
        let stream = self
            .feeds
            .watch(self.index, &self.account, &cursor)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = std::pin::pin!(stream);
        loop {
            let batch = tokio::select! {
                item = stream.next() => item,
                _ = stop.changed() => return Ok(()),
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the feed ended".into()),
            };
            let now = self.notifier.clock().now();
            let created = store
                .receive(
                    (&self.account, name),
                    &batch.events,
                    &batch.cursor,
                    self.sink,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            *backoff = BACKOFF_FIRST;
            if created > 0 {
                self.wakers.deliveries.notify_one();
            }
            if self.sink {
                self.wakers.sink.notify_one();
            }
        }
    }
}
