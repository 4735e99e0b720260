//! Where published events are kept: the [`EventLog`] every store implements, and the memory log.
//!
//! A log stores an event and gets it applied to the hub's core, in id order, on its own terms:
//! the memory log at once, under the hub's lock; the file store after its group commit; the
//! Redis store when its follower reads the event back, as every node does.

use super::{Hub, PublishAck, PublishRequest};
use futures::future::BoxFuture;

/// Why a publish was not stored (503: nothing was accepted).
#[derive(Debug)]
pub struct StoreUnavailable(pub String);

/// What one publish came to.
pub(super) type Published = Result<PublishAck, StoreUnavailable>;

/// A store behind the hub's publish path. The store is chosen at start-up, so the hub holds a
/// `dyn EventLog`: boxed futures, since an `async fn` in a trait cannot be called through one.
pub(super) trait EventLog: Send + Sync {
    /// Stores the event and has it applied to `hub`. `Err` means nothing was stored.
    fn publish<'a>(&'a self, hub: &'a Hub, request: PublishRequest) -> BoxFuture<'a, Published>;

    /// Stores `requests` in order, as [`EventLog::publish`] would one by one, but in one go.
    fn publish_all<'a>(&'a self, hub: &'a Hub, requests: Vec<PublishRequest>) -> BoxFuture<'a, Vec<Published>>;

    /// Whether the store can take events; `Err` says why not.
    fn health(&self) -> Result<(), String>;

    /// After shutdown: resolves once the store has written what it accepted and closed.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The memory log: ids assigned and events applied under the hub's lock; a restart loses them.
pub(super) struct MemoryLog;

impl EventLog for MemoryLog {
    fn publish<'a>(&'a self, hub: &'a Hub, request: PublishRequest) -> BoxFuture<'a, Published> {
        Box::pin(std::future::ready(Ok(hub.publish_now(request))))
    }

    /// One lock for all of them.
    fn publish_all<'a>(&'a self, hub: &'a Hub, requests: Vec<PublishRequest>) -> BoxFuture<'a, Vec<Published>> {
        Box::pin(std::future::ready(hub.publish_all_now(requests).into_iter().map(Ok).collect()))
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
