//! The notifier's background work: following the feeds, delivering, and
//! publishing to JetStream.

pub mod deliver;
pub mod follow;
pub mod sender;
pub mod signature;
pub mod sink;

use tokio::sync::Notify;

/// Wake-ups from the followers, so new events go out without waiting for
/// the next poll.
#[derive(Debug, Default)]
pub struct Wakers {
    /// New deliveries exist.
    pub deliveries: Notify,
    /// New events to publish exist.
    pub sink: Notify,
}
