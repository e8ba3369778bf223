//! The engine's own tests: serialisation within a process, optimistic concurrency across
//! "processes" (two engines sharing one store), group commit, metadata per command, transient
//! failures, snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use smallvec::smallvec;
use uuid::Uuid;

use super::*;
use crate::event_store::{AppendResult, Envelope, MemoryEventStore};
use crate::framework::{Effects, MessageKind};

/// A section of `capacity` seats sold one at a time.
#[derive(Clone)]
struct Section;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Act {
    Open { capacity: u32 },
    Take,
    Opened { capacity: u32 },
    Taken { seat: u32 },
    SoldOut,
}

impl Message for Act {
    fn kind(&self) -> MessageKind {
        match self {
            Act::Open { .. } | Act::Take => MessageKind::Command,
            Act::Opened { .. } | Act::Taken { .. } => MessageKind::Event,
            Act::SoldOut => MessageKind::Rejection,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Act::Open { .. } => "Open",
            Act::Take => "Take",
            Act::Opened { .. } => "Opened",
            Act::Taken { .. } => "Taken",
            Act::SoldOut => "SoldOut",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Seats {
    capacity: u32,
    taken: u32,
}

impl Reducer for Section {
    type State = Seats;
    type Action = Act;
    type Env = ();

    /// A section starts with `Open`.
    fn creates(action: &Act) -> bool {
        matches!(action, Act::Open { .. })
    }

    /// A sold-out section expects no more sales.
    fn at_rest(state: &Seats) -> bool {
        state.capacity > 0 && state.taken >= state.capacity
    }

    fn reduce(&self, state: &mut Seats, action: Act, (): &()) -> Effects<Act> {
        match action {
            Act::Open { capacity } => {
                state.capacity = capacity;
                smallvec![Effect::Persist(smallvec![Act::Opened { capacity }])]
            }
            Act::Take if state.taken >= state.capacity => smallvec![Effect::Reject(Box::new(Act::SoldOut))],
            Act::Take => {
                state.taken += 1;
                smallvec![Effect::Persist(smallvec![Act::Taken { seat: state.taken }])]
            }
            Act::Opened { capacity } => {
                state.capacity = capacity;
                smallvec![]
            }
            Act::Taken { .. } => {
                state.taken += 1;
                smallvec![]
            }
            Act::SoldOut => smallvec![],
        }
    }
}

/// Delegates to a memory store, counting appends and failing the next `fail` of them.
#[derive(Default)]
struct Counting {
    inner: MemoryEventStore,
    appends: AtomicUsize,
    fail: AtomicUsize,
    loads: AtomicUsize,
    /// The `from_version` of every stream load.
    loaded_from: std::sync::Mutex<Vec<u64>>,
    /// Appends wait while a test holds this for writing.
    gate: tokio::sync::RwLock<()>,
}

#[async_trait]
impl EventStore for Counting {
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(EventStoreError::Unavailable("injected".into()));
        }
        let _open = self.gate.read().await;
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_batch(appends).await
    }
    async fn load_stream(&self, stream: &StreamId, from: u64) -> Result<Vec<Envelope>, EventStoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.loaded_from.lock().unwrap().push(from);
        self.inner.load_stream(stream, from).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        self.inner.stream_version(stream).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.read_all(after, limit).await
    }
    fn subscribe(&self, after: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        self.inner.subscribe(after)
    }
    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.inner.head_position().await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }
}

fn engine(store: &Arc<dyn EventStore>) -> Engine<Section> {
    Engine::new(Section, (), Arc::clone(store), EngineConfig::default(), uuid::Uuid::new_v4())
}

fn request() -> CommandContext {
    CommandContext::request(Uuid::new_v4())
}

async fn taken(engine: &Engine<Section>, stream: &StreamId) -> u32 {
    engine.read(stream, false, |s| s.map_or(0, |s| s.taken)).await.unwrap()
}

async fn hammer(engine: Engine<Section>, stream: StreamId, buyers: usize) -> (usize, usize) {
    let tasks: Vec<_> = (0..buyers)
        .map(|_| {
            let engine = engine.clone();
            let stream = stream.clone();
            tokio::spawn(async move { engine.execute(&stream, Act::Take, request()).await })
        })
        .collect();
    let (mut sold, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => sold += 1,
            Err(CommandError::Rejected(Act::SoldOut)) => refused += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    (sold, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_sell_more_than_capacity() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-1").unwrap();
    let first = engine(&store);
    let second = engine(&store);
    first.execute(&stream, Act::Open { capacity: 100 }, request()).await.unwrap();
    // Each process now caches the stream; the first one's copy is already stale.
    first.execute(&stream, Act::Take, request()).await.unwrap();
    second.execute(&stream, Act::Take, request()).await.unwrap();

    let (a, b) = tokio::join!(hammer(first, stream.clone(), 150), hammer(second, stream.clone(), 150));
    assert_eq!(a.0 + b.0, 98, "exactly the capacity is sold");
    assert_eq!(a.1 + b.1, 202, "everyone else is refused");

    let events = store.load_stream(&stream, 1).await.unwrap();
    let seats: Vec<u64> = events.iter().skip(1).map(|e| e.payload["Taken"]["seat"].as_u64().unwrap()).collect();
    assert_eq!(seats, (1..=100).collect::<Vec<_>>(), "every seat sold once, in order, no gaps");
}

/// A refusal is not decided on a state another process has moved the stream on from: the
/// second process caches a sold-out section, the first one adds a seat, and the second sells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_decided_on_a_stale_state_is_decided_again_on_the_stored_one() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-stale").unwrap();
    let (first, second) = (engine(&store), engine(&store));
    first.execute(&stream, Act::Open { capacity: 1 }, request()).await.unwrap();
    first.execute(&stream, Act::Take, request()).await.unwrap();
    let refused = second.execute(&stream, Act::Take, request()).await;
    assert!(matches!(refused, Err(CommandError::Rejected(Act::SoldOut))), "{refused:?}");
    // The first process grows the section; the second's cached copy still says sold out.
    first.execute(&stream, Act::Open { capacity: 2 }, request()).await.unwrap();
    let sold = second.execute(&stream, Act::Take, request()).await;
    assert!(sold.is_ok(), "refused on a stale state: {sold:?}");
    let again = second.execute(&stream, Act::Take, request()).await;
    assert!(matches!(again, Err(CommandError::Rejected(Act::SoldOut))), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_are_grouped_into_fewer_appends_each_under_its_own_metadata() {
    let counting = Arc::new(Counting::default());
    let store: Arc<dyn EventStore> = counting.clone();
    let stream = StreamId::new("section-2").unwrap();
    let engine = engine(&store);
    engine.execute(&stream, Act::Open { capacity: 10_000 }, request()).await.unwrap();
    // Appends wait until every command is queued, so the grouping does not depend on how fast
    // the tasks run against the worker.
    let closed = counting.gate.write().await;
    let queued = Arc::new(tokio::sync::Semaphore::new(0));
    let tasks: Vec<_> = (0..2_000)
        .map(|_| {
            let (engine, stream, queued) = (engine.clone(), stream.clone(), Arc::clone(&queued));
            tokio::spawn(async move {
                let context = request();
                let mut reply = Box::pin(engine.execute(&stream, Act::Take, context));
                assert!(futures::poll!(reply.as_mut()).is_pending(), "answered while appends wait");
                queued.add_permits(1);
                let committed = reply.await.unwrap();
                (context.correlation_id, committed.last_position.unwrap())
            })
        })
        .collect();
    drop(queued.acquire_many(2_000).await.unwrap());
    drop(closed);
    let mut mine = Vec::new();
    for task in tasks {
        mine.push(task.await.unwrap());
    }
    let events = store.load_stream(&stream, 1).await.unwrap();
    assert_eq!(events.len(), 2_001);
    for (correlation_id, position) in mine {
        let event = events.iter().find(|e| e.global_position == position).unwrap();
        assert_eq!(event.metadata.correlation_id, Some(correlation_id), "batching mixed the metadata");
        assert_eq!(event.metadata.causation_id, Some(correlation_id));
    }
    // The opening append, the first batch (taken before the rest were queued), then batches of
    // up to `max_batch` (256): at most 10.
    let appends = counting.appends.load(Ordering::SeqCst);
    assert!(appends <= 10, "2,000 queued commands took {appends} appends");
    assert_eq!(taken(&engine, &stream).await, 2_000);
}

#[tokio::test]
async fn a_transient_append_failure_is_retried_after_reloading() {
    let counting = Arc::new(Counting::default());
    let store: Arc<dyn EventStore> = counting.clone();
    let stream = StreamId::new("section-5").unwrap();
    let engine = engine(&store);
    engine.execute(&stream, Act::Open { capacity: 3 }, request()).await.unwrap();
    counting.fail.store(2, Ordering::SeqCst);
    let committed = engine.execute(&stream, Act::Take, request()).await.unwrap();
    assert_eq!(committed.events[..], [Act::Taken { seat: 1 }], "decided once more after the reload, not twice");
    assert_eq!(counting.fail.load(Ordering::SeqCst), 0, "both faults fired");
    assert_eq!(store.load_stream(&stream, 1).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_failure_that_outlasts_the_retries_is_a_typed_storage_error_and_writes_nothing() {
    let counting = Arc::new(Counting::default());
    let store: Arc<dyn EventStore> = counting.clone();
    let stream = StreamId::new("section-6").unwrap();
    let engine = engine(&store);
    engine.execute(&stream, Act::Open { capacity: 3 }, request()).await.unwrap();
    counting.fail.store(usize::MAX, Ordering::SeqCst);
    let failed = engine.execute(&stream, Act::Take, request()).await;
    assert!(
        matches!(&failed, Err(CommandError::Storage { source, .. }) if matches!(**source, EventStoreError::Unavailable(_))),
        "{failed:?}"
    );
    counting.fail.store(0, Ordering::SeqCst);
    assert_eq!(taken(&engine, &stream).await, 0, "the refused batch left no trace in the state");
    engine.execute(&stream, Act::Take, request()).await.unwrap();
    assert_eq!(taken(&engine, &stream).await, 1);
}

#[tokio::test]
async fn rejected_command_writes_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-3").unwrap();
    let engine = engine(&store);
    engine.execute(&stream, Act::Open { capacity: 0 }, request()).await.unwrap();
    let before = store.head_position().await.unwrap();
    assert!(matches!(engine.execute(&stream, Act::Take, request()).await, Err(CommandError::Rejected(Act::SoldOut))));
    assert_eq!(store.head_position().await.unwrap(), before);
}

#[tokio::test]
async fn long_streams_are_loaded_from_a_snapshot_plus_the_events_after_it() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-4").unwrap();
    let config = EngineConfig { snapshot_every: 10, ..EngineConfig::default() };
    let engine = Engine::new(Section, (), Arc::clone(&store), config, uuid::Uuid::new_v4());
    engine.execute(&stream, Act::Open { capacity: 100 }, request()).await.unwrap();
    for _ in 0..24 {
        engine.execute(&stream, Act::Take, request()).await.unwrap();
    }
    engine.snapshots_written().await;
    let snapshot = store.load_snapshot(&stream).await.unwrap().expect("a snapshot after 10+ events");
    assert!(snapshot.stream_version >= 10, "{snapshot:?}");
    let state: serde_json::Value = serde_json::from_str(&snapshot.state).unwrap();
    let taken_then = state["taken"].as_u64().unwrap();
    assert_eq!(taken_then + 1, snapshot.stream_version, "the snapshot's state is exactly its version's");

    // A second process loads snapshot + tail, sees all 24 taken and keeps selling correctly.
    let other = Engine::new(Section, (), Arc::clone(&store), EngineConfig::default(), uuid::Uuid::new_v4());
    assert_eq!(taken(&other, &stream).await, 24);
    let (sold, refused) = hammer(other, stream.clone(), 100).await;
    assert_eq!((sold, refused), (76, 24));
}

#[test]
fn a_large_state_is_snapshotted_once_its_events_weigh_as_much() {
    // A small state: every `snapshot_every` events.
    assert!(!snapshot_due(499, 500, 2_000));
    assert!(snapshot_due(500, 500, 2_000));
    // A 1 MB state (a sold-out 10,000-seat section): not after 500 small events, but once they
    // weigh about as much as the snapshot.
    assert!(!snapshot_due(500, 500, 1_000_000));
    assert!(!snapshot_due(3_900, 500, 1_000_000));
    assert!(snapshot_due(3_907, 500, 1_000_000));
    // Never, when snapshots are off.
    assert!(!snapshot_due(1_000_000, 0, 0));
}

/// A stream whose state is at rest lets its worker go after `rest_timeout`, not `idle_timeout`;
/// one that is not at rest keeps it; a later command still works from the reloaded state.
#[tokio::test]
async fn a_worker_at_rest_goes_after_the_rest_timeout() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let config = EngineConfig {
        idle_timeout: Duration::from_secs(300),
        rest_timeout: Duration::from_millis(20),
        ..EngineConfig::default()
    };
    let engine = Engine::new(Section, (), Arc::clone(&store), config, uuid::Uuid::new_v4());
    let (done, open) = (StreamId::new("section-done").unwrap(), StreamId::new("section-open").unwrap());
    engine.execute(&done, Act::Open { capacity: 1 }, request()).await.unwrap();
    engine.execute(&done, Act::Take, request()).await.unwrap();
    engine.execute(&open, Act::Open { capacity: 5 }, request()).await.unwrap();
    let live = |engine: &Engine<Section>, stream: &StreamId| {
        engine.inner.workers.lock().unwrap_or_else(PoisonError::into_inner).1.contains_key(stream)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live(&engine, &done) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!live(&engine, &done), "the sold-out stream's worker is gone");
    assert!(live(&engine, &open), "a stream that expects more commands keeps its worker");
    assert!(matches!(engine.execute(&done, Act::Take, request()).await, Err(CommandError::Rejected(Act::SoldOut))));
}

/// A creating command on a new stream is decided without reading the stream; on a stream that
/// exists after all (another process made it), the append's expected version catches the guess
/// and the command is decided again on the stored state.
#[tokio::test]
async fn a_creating_command_skips_the_read_of_a_new_stream_and_an_old_one_is_caught() {
    let store = Arc::new(Counting::default());
    let shared: Arc<dyn EventStore> = store.clone();
    let engine = Engine::new(Section, (), Arc::clone(&shared), EngineConfig::default(), uuid::Uuid::new_v4());
    let stream = StreamId::new("section-created").unwrap();
    engine.execute(&stream, Act::Open { capacity: 2 }, request()).await.unwrap();
    assert_eq!(store.loads.load(Ordering::SeqCst), 0, "a new stream is not read before its first command");
    engine.execute(&stream, Act::Take, request()).await.unwrap();

    let other = Engine::new(Section, (), shared, EngineConfig::default(), uuid::Uuid::new_v4());
    other.execute(&stream, Act::Open { capacity: 5 }, request()).await.unwrap();
    assert!(store.loads.load(Ordering::SeqCst) >= 1, "the stored stream is read once the guess fails");
    assert_eq!(taken(&other, &stream).await, 1, "decided on the stored state, not the empty guess");
    let (sold, refused) = hammer(other, stream.clone(), 10).await;
    assert_eq!((sold, refused), (4, 6), "capacity 5 with one seat taken before");
}

/// After a lost race a stream's worker keeps a copy of the state its next batches are decided
/// on: the next lost race reads only what the other writer appended since the cached version,
/// not the whole stream (from its snapshot) again, and the state stays exact.
#[tokio::test]
async fn after_a_lost_race_the_next_one_reads_only_the_other_writers_events() {
    let store = Arc::new(Counting::default());
    let shared: Arc<dyn EventStore> = store.clone();
    let (a, b) = (engine(&shared), engine(&shared));
    let stream = StreamId::new("section-contended").unwrap();
    a.execute(&stream, Act::Open { capacity: 100 }, request()).await.unwrap();
    for _ in 0..20 {
        a.execute(&stream, Act::Take, request()).await.unwrap();
    }
    // B takes a seat: A's next take loses the race and reloads the stream (it kept no copy).
    b.execute(&stream, Act::Take, request()).await.unwrap();
    a.execute(&stream, Act::Take, request()).await.unwrap();
    // B takes another: A, now at version 23, loses again and reads only version 24.
    b.execute(&stream, Act::Take, request()).await.unwrap();
    store.loaded_from.lock().unwrap().clear();
    a.execute(&stream, Act::Take, request()).await.unwrap();
    assert_eq!(*store.loaded_from.lock().unwrap(), vec![24], "only the other writer's event is read");
    assert_eq!(taken(&a, &stream).await, 24);
    assert_eq!(b.read(&stream, true, |s| s.map_or(0, |s| s.taken)).await.unwrap(), 24, "as stored");
}
