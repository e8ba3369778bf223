//! The in-memory backend: the default, the test double and the benchmark baseline.

mod logged;
mod texts;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::BoxStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    AppendResult, CheckpointStore, Envelope, EventStore, EventStoreError, MemoryCheckpointStore, PageSource, Snapshot,
    StreamAppend, StreamId, Upcasters, readable_prefix, subscription,
};
use logged::{Logged, TREE_WINDOW};
use texts::{MAX_TEXT_BYTES, Text, Texts};

/// How many events a subscription copies out of the log per lock acquisition.
const SUBSCRIPTION_BATCH: usize = 512;

/// An [`EventStore`] kept in process memory, with the same semantics as the durable backends.
///
/// Appends take one write lock, so they are atomic and globally ordered; positions are dense
/// (1, 2, 3, ...). Live subscriptions are woken through a `tokio::sync::watch` channel, never by
/// polling. Clones share the same log.
///
/// Every event's payload is kept as JSON text, encoded before the lock is taken and packed into
/// 1 MiB chunks; the most recent 16,384 events also keep it as a tree (see
/// [`with_tree_window`](Self::with_tree_window)). Reading a recent event (what live readers do) copies a
/// few pointers: the envelope shares its payload, event type, metadata and stream id with the
/// log. Reading an older one parses its text, outside the lock. A long log so costs its text and
/// about 100 bytes more per event, not its trees (several times the text).
///
/// ```
/// use boxoffice::event_store::{EventStore, MemoryEventStore, Upcasters};
///
/// let mut upcasters = Upcasters::new();
/// upcasters.register("SeatsReserved", 1, |payload| payload);
/// let store = MemoryEventStore::new().with_upcasters(upcasters);
/// # let _ = store;
/// ```
#[derive(Clone, Debug)]
pub struct MemoryEventStore {
    inner: Arc<Inner>,
    upcasters: Arc<Upcasters>,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<State>,
    /// Carries the head position; subscribers only use its change notifications.
    head: watch::Sender<u64>,
    checkpoints: MemoryCheckpointStore,
}

#[derive(Debug)]
struct State {
    /// The global log; the event at position `p` is at index `p - 1`.
    log: Vec<Logged>,
    /// How many of the most recent events keep their trees.
    tree_window: usize,
    /// The events before this index have given up their trees (all but the last `tree_window`).
    cold: usize,
    /// Every event's payload text.
    texts: Texts,
    /// Every event type seen, shared by the events of that type.
    event_types: HashSet<Arc<str>>,
    /// Global positions of each stream's events; the event with version `v` is at index `v - 1`.
    streams: HashMap<StreamId, Vec<u64>>,
    snapshots: HashMap<StreamId, Snapshot>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

#[derive(Debug, Clone)]
struct IdempotencyRecord {
    stream: StreamId,
    event_ids: Vec<Uuid>,
    result: AppendResult,
}

/// What to do with one append of a batch, decided before anything is written.
enum Plan {
    Write { current: u64 },
    Replay(AppendResult),
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventStore {
    /// An empty store without upcasters.
    #[must_use]
    pub fn new() -> Self {
        let (head, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                head,
                checkpoints: MemoryCheckpointStore::new(),
            }),
            upcasters: Arc::new(Upcasters::new()),
        }
    }

    /// Keeps the payload tree of the last `events` events (16,384 unless set), for every handle
    /// of this store. Reading one of those copies a pointer; reading an older one parses its
    /// JSON text, about a microsecond per event of this crate's. `usize::MAX` keeps every tree,
    /// so reads never parse, at several times the memory per event (a tree of this crate's
    /// events takes 2-4 KB, their text about 300 bytes). Set it before the first append.
    ///
    /// ```
    /// use boxoffice::event_store::MemoryEventStore;
    ///
    /// let store = MemoryEventStore::new().with_tree_window(usize::MAX);
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn with_tree_window(self, events: usize) -> Self {
        self.inner.state.write().unwrap_or_else(PoisonError::into_inner).tree_window = events;
        self
    }

    /// Uses `upcasters` on every read path of this handle.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The envelopes of `events` (copied out of the log under its lock), upcast.
    fn envelopes(&self, events: Vec<Copied>) -> impl Iterator<Item = Result<Envelope, EventStoreError>> {
        events.into_iter().map(|(position, logged, text)| {
            let mut envelope = logged.into_envelope(position, text)?;
            self.upcasters.apply(&mut envelope)?;
            Ok(envelope)
        })
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            log: Vec::new(),
            tree_window: TREE_WINDOW,
            cold: 0,
            texts: Texts::default(),
            event_types: HashSet::new(),
            streams: HashMap::new(),
            snapshots: HashMap::new(),
            idempotency: HashMap::new(),
        }
    }
}

impl State {
    fn version_of(&self, stream: &StreamId) -> u64 {
        self.streams.get(stream).map_or(0, |positions| positions.len() as u64)
    }

    /// The event at `position` as a reader takes it out of the log.
    fn copy(&self, position: u64, event: &Logged) -> Copied {
        let text = event.tree.is_none().then(|| self.texts.get(event.text));
        (position, event.clone(), text)
    }

    fn read_after(&self, after_position: u64, limit: usize) -> Vec<Copied> {
        let start = usize::try_from(after_position).unwrap_or(usize::MAX).min(self.log.len());
        self.log[start..]
            .iter()
            .take(limit)
            .zip(start as u64 + 1..)
            .map(|(event, position)| self.copy(position, event))
            .collect()
    }

    /// Checks every append of the batch against the current state and the earlier appends of the
    /// same batch, without writing anything.
    fn plan(&self, appends: &[StreamAppend]) -> Result<Vec<Plan>, EventStoreError> {
        let mut staged_versions: HashMap<&StreamId, u64> = HashMap::new();
        let mut staged_keys: HashMap<&str, (&StreamAppend, AppendResult)> = HashMap::new();
        let mut next_position = self.log.len() as u64 + 1;
        let mut plans = Vec::with_capacity(appends.len());
        for append in appends {
            if append.events.is_empty() {
                return Err(EventStoreError::EmptyAppend { stream: append.stream.clone() });
            }
            if let Some(key) = append.idempotency_key.as_deref() {
                let earlier = self
                    .idempotency
                    .get(key)
                    .map(|record| {
                        (record.stream == append.stream && same_ids(&record.event_ids, append), record.result)
                    })
                    .or_else(|| {
                        staged_keys.get(key).map(|(first, result)| {
                            (first.stream == append.stream && first.events == append.events, *result)
                        })
                    });
                match earlier {
                    Some((true, result)) => {
                        plans.push(Plan::Replay(result));
                        continue;
                    }
                    Some((false, _)) => {
                        return Err(EventStoreError::IdempotencyKeyReused {
                            key: key.to_owned(),
                            stream: append.stream.clone(),
                        });
                    }
                    None => {}
                }
            }
            let current = match staged_versions.get(&append.stream) {
                Some(version) => *version,
                None => self.version_of(&append.stream),
            };
            if !append.expected.matches(current) {
                return Err(EventStoreError::ConcurrencyConflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: current,
                });
            }
            let count = append.events.len() as u64;
            let result = AppendResult {
                stream_version: current + count,
                first_global_position: next_position,
                last_global_position: next_position + count - 1,
            };
            next_position += count;
            staged_versions.insert(&append.stream, result.stream_version);
            if let Some(key) = append.idempotency_key.as_deref() {
                staged_keys.insert(key, (append, result));
            }
            plans.push(Plan::Write { current });
        }
        Ok(plans)
    }

    fn write(&mut self, append: StreamAppend, texts: &[&[u8]], current: u64) -> AppendResult {
        let recorded_at = Utc::now();
        let first_global_position = self.log.len() as u64 + 1;
        let StreamAppend { stream, events, metadata, idempotency_key, .. } = append;
        let event_ids: Option<Vec<Uuid>> =
            idempotency_key.as_ref().map(|_| events.iter().map(|event| event.event_id).collect());
        let positions = self.streams.entry(stream.clone()).or_default();
        let metadata = Arc::new(metadata);
        let mut version = current;
        for (event, text) in events.into_iter().zip(texts) {
            let text = self.texts.push(text);
            version += 1;
            positions.push(self.log.len() as u64 + 1);
            let event_type = intern(&mut self.event_types, event.event_type);
            self.log.push(Logged {
                event_id: event.event_id,
                stream_id: stream.clone(),
                stream_version: version,
                event_type,
                schema_version: event.schema_version,
                text,
                tree: Some(Arc::new(event.payload)),
                metadata: Arc::clone(&metadata),
                recorded_at,
            });
        }
        let result = AppendResult {
            stream_version: version,
            first_global_position,
            last_global_position: self.log.len() as u64,
        };
        if let (Some(key), Some(event_ids)) = (idempotency_key, event_ids) {
            self.idempotency.insert(key, IdempotencyRecord { stream, event_ids, result });
        }
        result
    }

    /// Takes the trees of the events that fell out of the last `tree_window`; the caller drops
    /// them once the lock is released.
    fn cool(&mut self) -> Vec<Arc<serde_json::Value>> {
        let hot_from = self.log.len().saturating_sub(self.tree_window);
        let trees =
            self.log[self.cold.min(hot_from)..hot_from].iter_mut().filter_map(|event| event.tree.take()).collect();
        self.cold = self.cold.max(hot_from);
        trees
    }
}

/// The shared name of an event type, from the types seen so far.
fn intern(known: &mut HashSet<Arc<str>>, event_type: String) -> Arc<str> {
    if let Some(shared) = known.get(event_type.as_str()) {
        return Arc::clone(shared);
    }
    let new: Arc<str> = event_type.into();
    known.insert(Arc::clone(&new));
    new
}

/// An event as a reader takes it out of the log: its position, the event, and its text when it
/// has no tree any more.
type Copied = (u64, Logged, Option<Text>);

/// Every payload of `appends` as JSON text, written one after the other into one buffer, with
/// the end offset of each event's text, in order.
fn encode(appends: &[StreamAppend]) -> Result<(Vec<u8>, Vec<usize>), EventStoreError> {
    let events = appends.iter().map(|a| a.events.len()).sum::<usize>();
    let (mut buffer, mut ends) = (Vec::with_capacity(512 * events), Vec::with_capacity(events));
    for append in appends {
        for event in &append.events {
            let start = buffer.len();
            serde_json::to_writer(&mut buffer, &event.payload)
                .map_err(|source| EventStoreError::Encode { stream: append.stream.clone(), source })?;
            if buffer.len() - start > MAX_TEXT_BYTES {
                return Err(EventStoreError::OutOfRange { what: "an event payload of 4 GiB or more" });
            }
            ends.push(buffer.len());
        }
    }
    Ok((buffer, ends))
}

fn same_ids(ids: &[Uuid], append: &StreamAppend) -> bool {
    ids.len() == append.events.len() && ids.iter().zip(&append.events).all(|(id, event)| *id == event.event_id)
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        let (buffer, ends) = encode(&appends)?;
        let mut state = self.inner.state.write().unwrap_or_else(PoisonError::into_inner);
        let plans = state.plan(&appends)?;
        let mut results = Vec::with_capacity(plans.len());
        let (mut ends, mut start, mut texts) = (ends.into_iter(), 0, Vec::new());
        for (append, plan) in appends.into_iter().zip(plans) {
            texts.clear();
            for end in ends.by_ref().take(append.events.len()) {
                texts.push(buffer.get(start..end).unwrap_or_default());
                start = end;
            }
            results.push(match plan {
                Plan::Replay(result) => result,
                Plan::Write { current } => state.write(append, &texts, current),
            });
        }
        let cooled = state.cool();
        let head = state.log.len() as u64;
        if self.inner.head.receiver_count() > 0 {
            self.inner.head.send_replace(head);
        }
        drop(state);
        drop(cooled);
        Ok(results)
    }

    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError> {
        let events: Vec<Copied> = {
            let state = self.read_state();
            let Some(positions) = state.streams.get(stream) else { return Ok(Vec::new()) };
            let skip = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX);
            positions
                .iter()
                .skip(skip)
                .filter_map(|&position| {
                    let event = usize::try_from(position - 1).ok().and_then(|index| state.log.get(index))?;
                    Some(state.copy(position, event))
                })
                .collect()
        };
        self.envelopes(events).collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        Ok(self.read_state().version_of(stream))
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        let events = self.read_state().read_after(after_position, limit);
        readable_prefix(self.envelopes(events))
    }

    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        let source = HeadWatch { store: self.clone(), wake: self.inner.head.subscribe() };
        subscription(source, after_position, SUBSCRIPTION_BATCH)
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        Ok(self.read_state().log.len() as u64)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        let mut state = self.inner.state.write().unwrap_or_else(PoisonError::into_inner);
        let newer =
            state.snapshots.get(&snapshot.stream_id).is_none_or(|old| old.stream_version <= snapshot.stream_version);
        if newer {
            state.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        Ok(self.read_state().snapshots.get(stream).cloned())
    }
}

/// The memory store's side of a subscription: the log itself, woken by the head watch.
struct HeadWatch {
    store: MemoryEventStore,
    wake: watch::Receiver<u64>,
}

#[async_trait]
impl PageSource for HeadWatch {
    async fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        // Mark the current head as seen before reading, so an append racing with the read still
        // ends the next wait.
        self.wake.borrow_and_update();
        self.store.read_all(after, limit).await
    }

    async fn wait(&mut self) -> Result<(), EventStoreError> {
        // The sender lives in the store this source holds, so it never closes while we wait.
        self.wake.changed().await.map_err(|_| EventStoreError::Closed)
    }
}

#[async_trait]
impl CheckpointStore for MemoryEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<u64, EventStoreError> {
        self.inner.checkpoints.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        self.inner.checkpoints.save_checkpoint(name, position).await
    }

    async fn advance_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        self.inner.checkpoints.advance_checkpoint(name, position).await
    }
}
