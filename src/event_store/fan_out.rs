//! One live subscription to a store, shared by every subscriber of the process.
//!
//! A process that follows the log several times over (the saga's follower, each read model's
//! runner, the outbox relay) would otherwise have each of them poll, fetch and decode every event
//! from the database on its own. [`FanOutEventStore`] wraps a store: writes and point reads go
//! straight through, and its subscriptions are served from one shared tail of recent events that
//! a single background pump keeps filled from the wrapped store's own subscription. A subscriber
//! behind that tail (starting from an old checkpoint) catches up with plain
//! [`read_all`](EventStore::read_all) pages first, then joins the tail; the hand-over is exact
//! because the tail holds a contiguous run of the log after a known position.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use super::{AppendResult, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot};
use super::{StreamAppend, StreamId};

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
    /// Stops the pump when the last handle goes away.
    _stop: Arc<StopOnDrop>,
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
        };
        Self { inner, hub: Arc::new(hub), _stop: Arc::new(StopOnDrop(stop)) }
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

/// Keeps the tail filled from the wrapped store's subscription, from the head at start-up on.
async fn pump(inner: Arc<dyn EventStore>, hub: Arc<Hub>) {
    let mut stop = hub.stop.clone();
    let mut after = loop {
        match inner.head_position().await {
            Ok(head) => break head,
            Err(error) => {
                tracing::warn!(%error, "fan-out cannot read the head; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.wait_for(|stop| *stop) => return close(&hub),
                }
            }
        }
    };
    hub.tail_mut().after = Some(after);
    hub.changed.send_replace(after);
    loop {
        let mut live = inner.subscribe(after).ready_chunks(PAGE);
        loop {
            let batch = tokio::select! {
                batch = live.next() => batch,
                _ = stop.wait_for(|stop| *stop) => return close(&hub),
            };
            let Some(batch) = batch else { break };
            let mut failed = None;
            {
                let mut tail = hub.tail_mut();
                for item in batch {
                    match item {
                        Ok(event) => {
                            after = event.global_position;
                            tail.events.push_back(event);
                        }
                        Err(error) => failed = Some(error),
                    }
                }
                while tail.events.len() > hub.capacity {
                    if let Some(dropped) = tail.events.pop_front() {
                        tail.after = Some(dropped.global_position);
                    }
                }
            }
            hub.changed.send_replace(after);
            if let Some(error) = failed {
                tracing::warn!(%error, after, "fan-out subscription failed; resubscribing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
    }
}

fn close(hub: &Hub) {
    hub.tail_mut().closed = true;
    hub.changed.send_modify(|_| {});
}

/// What a subscriber found in the tail.
enum Found {
    Events(Vec<Envelope>),
    /// Covered, nothing new yet.
    UpToDate,
    /// The subscriber is behind the tail (or the pump has not started): read the store.
    Behind,
    Closed,
}

fn look(hub: &Hub, after: u64) -> Found {
    let tail = hub.tail();
    if tail.closed {
        return Found::Closed;
    }
    let Some(start) = tail.after else { return Found::Behind };
    if after < start {
        return Found::Behind;
    }
    let skip = tail.events.partition_point(|e| e.global_position <= after);
    let events: Vec<Envelope> = tail.events.iter().skip(skip).take(PAGE).cloned().collect();
    if events.is_empty() { Found::UpToDate } else { Found::Events(events) }
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
        struct Cursor {
            inner: Arc<dyn EventStore>,
            hub: Arc<Hub>,
            changes: watch::Receiver<u64>,
            after: u64,
            pending: VecDeque<Envelope>,
            failed: bool,
        }
        self.ensure_pump();
        let cursor = Cursor {
            inner: Arc::clone(&self.inner),
            changes: self.hub.changed.subscribe(),
            hub: Arc::clone(&self.hub),
            after: after_position,
            pending: VecDeque::new(),
            failed: false,
        };
        stream::unfold(cursor, |mut cursor| async move {
            if cursor.failed {
                return None;
            }
            loop {
                if let Some(event) = cursor.pending.pop_front() {
                    return Some((Ok(event), cursor));
                }
                // Seen before looking, so a change after the look is not missed.
                cursor.changes.borrow_and_update();
                let found = look(&cursor.hub, cursor.after);
                let events = match found {
                    Found::Events(events) => events,
                    Found::Closed => {
                        cursor.failed = true;
                        return Some((Err(EventStoreError::Closed), cursor));
                    }
                    Found::UpToDate => Vec::new(),
                    Found::Behind => match cursor.inner.read_all(cursor.after, PAGE).await {
                        Ok(events) => events,
                        Err(error) => {
                            cursor.failed = true;
                            return Some((Err(error), cursor));
                        }
                    },
                };
                if let Some(last) = events.last() {
                    cursor.after = last.global_position;
                    cursor.pending.extend(events);
                    continue;
                }
                if cursor.changes.changed().await.is_err() {
                    cursor.failed = true;
                    return Some((Err(EventStoreError::Closed), cursor));
                }
            }
        })
        .boxed()
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.inner.head_position().await
    }

    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        self.inner.last_committed_position().await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }
}
