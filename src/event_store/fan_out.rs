//! One live subscription to a store, shared by every subscriber of the process.
//!
//! A process that follows the log several times over (the saga's follower, each read model's
//! runner, the outbox relay) would otherwise have each of them poll, fetch and decode every event
//! from the database on its own. [`FanOutEventStore`] wraps a store: writes and point reads go
//! straight through, and its subscriptions are served from one shared tail of recent events that
//! a single background pump (a [`follow`] of the wrapped store) keeps filled. A subscriber
//! behind that tail (starting from an old checkpoint) catches up with plain
//! [`read_all`](EventStore::read_all) pages first, then joins the tail; the hand-over is exact
//! because the tail holds a contiguous run of the log after a known position.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::{AppendResult, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot};
use super::{BadEventPolicy, FollowConfig, FollowStatus, LogConsumer, PageSource, RetryPolicy, StreamAppend, StreamId};
use super::{follow, subscription};

/// Events handed to a subscriber per lock acquisition, and fetched per catch-up page.
const PAGE: usize = 1_000;

/// An [`EventStore`] whose subscriptions share one subscription to the wrapped store.
///
/// ```
/// use std::sync::Arc;
/// use boxoffice::event_store::{EventStore, FanOutEventStore, MemoryEventStore};
///
/// let shared: Arc<dyn EventStore> = Arc::new(FanOutEventStore::new(Arc::new(MemoryEventStore::new()), 10_000));
/// # let _ = shared;
/// ```
#[derive(Clone)]
pub struct FanOutEventStore {
    inner: Arc<dyn EventStore>,
    hub: Arc<Hub>,
    /// Stops the pump when the last handle goes away (or at [`stop`](Self::stop)).
    stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for FanOutEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutEventStore").field("capacity", &self.hub.capacity).finish_non_exhaustive()
    }
}

struct Hub {
    tail: RwLock<Tail>,
    /// The last position in the tail; subscribers wait on its changes.
    changed: watch::Sender<u64>,
    capacity: usize,
    pump: OnceLock<()>,
    stop: watch::Receiver<bool>,
    status: watch::Sender<FollowStatus>,
}

/// A contiguous run of the log: every event after position `after`, in order, none missing.
struct Tail {
    /// `None` until the pump has started: nothing is covered yet.
    after: Option<u64>,
    events: VecDeque<Envelope>,
    closed: bool,
}

struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl FanOutEventStore {
    /// Wraps `inner`, keeping up to `capacity` recent events (at least one) for subscribers.
    #[must_use]
    pub fn new(inner: Arc<dyn EventStore>, capacity: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let hub = Hub {
            tail: RwLock::new(Tail { after: None, events: VecDeque::new(), closed: false }),
            changed: watch::channel(0).0,
            capacity: capacity.max(1),
            pump: OnceLock::new(),
            stop: stopped,
            status: watch::Sender::new(FollowStatus::default()),
        };
        Self { inner, hub: Arc::new(hub), stop: Arc::new(StopOnDrop(stop)) }
    }

    /// Stops the pump now, for every handle, and waits until it has ended and dropped its
    /// subscription to the wrapped store (on `PostgreSQL`, that subscription's `LISTEN`
    /// connection). Live subscriptions then end with [`EventStoreError::Closed`]; writes and point
    /// reads still go through. Idempotent. Without it the pump runs until the last handle is
    /// dropped.
    pub async fn stop(&self) {
        self.stop.0.send_replace(true);
        if self.hub.pump.get().is_none() {
            // Never started; one starting now sees the stop at once.
            return;
        }
        let mut changes = self.hub.changed.subscribe();
        while !self.hub.tail().closed {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// How the pump that fills the shared tail is doing (its position, retries and errors).
    #[must_use]
    pub fn pump_status(&self) -> watch::Receiver<FollowStatus> {
        self.hub.status.subscribe()
    }

    /// Starts the pump on first use (inside the caller's runtime).
    fn ensure_pump(&self) {
        self.hub.pump.get_or_init(|| {
            tokio::spawn(pump(Arc::clone(&self.inner), Arc::clone(&self.hub)));
        });
    }
}

impl Hub {
    fn tail(&self) -> std::sync::RwLockReadGuard<'_, Tail> {
        self.tail.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn tail_mut(&self) -> std::sync::RwLockWriteGuard<'_, Tail> {
        self.tail.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps the tail filled from the wrapped store's log, from its head at start-up on, until the
/// last handle goes away.
async fn pump(inner: Arc<dyn EventStore>, hub: Arc<Hub>) {
    let mut filler = Filler { hub: Arc::clone(&hub), inner: Arc::clone(&inner) };
    // The pump moves past a bad event (see `Filler::skip`); each subscriber meets it in the
    // wrapped store and deals with it by its own policy.
    let config =
        FollowConfig { max_batch: PAGE, retry: RetryPolicy::default(), bad_events: BadEventPolicy::Quarantine };
    if let Err(error) = follow(&*inner, &mut filler, &config, hub.stop.clone(), &hub.status).await {
        tracing::warn!(%error, "fan-out stopped while failing");
    }
    hub.tail_mut().closed = true;
    hub.changed.send_modify(|_| {});
}

/// The pump's side of [`follow`]: appends each batch to the tail. Its checkpoint is the tail
/// itself, which starts at the head of the wrapped store.
struct Filler {
    hub: Arc<Hub>,
    inner: Arc<dyn EventStore>,
}

#[async_trait]
impl LogConsumer for Filler {
    type Error = EventStoreError;

    fn name(&self) -> &'static str {
        "fan-out"
    }

    async fn start_position(&mut self) -> Result<u64, EventStoreError> {
        let head = self.inner.head_position().await?;
        self.hub.tail_mut().after = Some(head);
        self.hub.changed.send_replace(head);
        Ok(head)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), EventStoreError> {
        let Some(last) = batch.last().map(|e| e.global_position) else { return Ok(()) };
        {
            let mut tail = self.hub.tail_mut();
            tail.events.extend(batch.iter().cloned());
            while tail.events.len() > self.hub.capacity {
                if let Some(dropped) = tail.events.pop_front() {
                    tail.after = Some(dropped.global_position);
                }
            }
        }
        self.hub.changed.send_replace(last);
        Ok(())
    }

    /// The tail starts again after the bad event, so a subscriber behind it reads the wrapped
    /// store and meets the bad event itself.
    async fn skip(&mut self, position: u64) -> Result<(), EventStoreError> {
        {
            let mut tail = self.hub.tail_mut();
            tail.events.clear();
            tail.after = Some(position);
        }
        self.hub.changed.send_replace(position);
        Ok(())
    }
}

/// A subscriber's side of [`subscription`]: pages from the tail, or from the wrapped store while
/// the subscriber is behind the tail, woken by the pump.
struct TailReader {
    inner: Arc<dyn EventStore>,
    hub: Arc<Hub>,
    changes: watch::Receiver<u64>,
}

#[async_trait]
impl PageSource for TailReader {
    async fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        // Seen before looking, so a change after the look still ends the next wait.
        self.changes.borrow_and_update();
        let from_tail = {
            let tail = self.hub.tail();
            if tail.closed {
                return Err(EventStoreError::Closed);
            }
            match tail.after {
                Some(start) if after >= start => {
                    let skip = tail.events.partition_point(|e| e.global_position <= after);
                    Some(tail.events.iter().skip(skip).take(limit).cloned().collect())
                }
                // Behind the tail, or the pump has not started: read the wrapped store.
                _ => None,
            }
        };
        match from_tail {
            Some(events) => Ok(events),
            None => self.inner.read_all(after, limit).await,
        }
    }

    async fn wait(&mut self) -> Result<(), EventStoreError> {
        self.changes.changed().await.map_err(|_| EventStoreError::Closed)
    }
}

#[async_trait]
impl EventStore for FanOutEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Result<AppendResult, EventStoreError> {
        self.inner.append(stream, expected, events, metadata, idempotency_key).await
    }

    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        self.inner.append_batch(appends).await
    }

    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.load_stream(stream, from_version).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        self.inner.stream_version(stream).await
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.read_all(after_position, limit).await
    }

    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        self.ensure_pump();
        let reader = TailReader {
            inner: Arc::clone(&self.inner),
            hub: Arc::clone(&self.hub),
            changes: self.hub.changed.subscribe(),
        };
        subscription(reader, after_position, PAGE)
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.inner.head_position().await
    }

    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        self.inner.last_committed_position().await
    }

    async fn ready(&self) -> Result<(), EventStoreError> {
        self.inner.ready().await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }
}
