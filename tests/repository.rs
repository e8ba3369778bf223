//! Command handling over the event store: serialisation within a process, optimistic
//! concurrency across "processes" (two repositories sharing one store), group commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use boxoffice::event_store::{EventStore, MemoryEventStore, StreamId};
use boxoffice::framework::{Effect, Effects, Message, MessageKind, PersistedObserver, Reducer, SystemClock};
use boxoffice::system::{CommandError, Repository, RepositoryConfig};
use serde::{Deserialize, Serialize};
use smallvec::smallvec;

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

fn repository(store: &Arc<dyn EventStore>) -> Repository<Section> {
    Repository::new(Section, (), Arc::new(SystemClock), Arc::clone(store), None, RepositoryConfig::default())
}

async fn hammer(repo: Repository<Section>, stream: StreamId, buyers: usize) -> (usize, usize) {
    let tasks: Vec<_> = (0..buyers)
        .map(|_| {
            let repo = repo.clone();
            let stream = stream.clone();
            tokio::spawn(async move { repo.execute(&stream, Act::Take).await })
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
    let first = repository(&store);
    let second = repository(&store);
    first.execute(&stream, Act::Open { capacity: 100 }).await.unwrap();
    // Each process now caches the stream; the first one's copy is already stale.
    first.execute(&stream, Act::Take).await.unwrap();
    second.execute(&stream, Act::Take).await.unwrap();

    let (a, b) = tokio::join!(hammer(first, stream.clone(), 150), hammer(second, stream.clone(), 150));
    assert_eq!(a.0 + b.0, 98, "exactly the capacity is sold");
    assert_eq!(a.1 + b.1, 202, "everyone else is refused");

    let events = store.load_stream(&stream, 1).await.unwrap();
    let seats: Vec<u64> = events.iter().skip(1).map(|e| e.payload["Taken"]["seat"].as_u64().unwrap()).collect();
    assert_eq!(seats, (1..=100).collect::<Vec<_>>(), "every seat sold once, in order, no gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_stream_are_grouped_into_fewer_appends() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-2").unwrap();
    let appends = Arc::new(AtomicUsize::new(0));
    let observer: PersistedObserver<Act> = {
        let appends = Arc::clone(&appends);
        Arc::new(move |_: &[Act]| {
            appends.fetch_add(1, Ordering::SeqCst);
        })
    };
    let repo = Repository::new(
        Section,
        (),
        Arc::new(SystemClock),
        Arc::clone(&store),
        Some(observer),
        RepositoryConfig::default(),
    );
    repo.execute(&stream, Act::Open { capacity: 10_000 }).await.unwrap();
    let (sold, _) = hammer(repo.clone(), stream.clone(), 2_000).await;
    assert_eq!(sold, 2_000);
    assert_eq!(store.load_stream(&stream, 1).await.unwrap().len(), 2_001);
    let appends = appends.load(Ordering::SeqCst);
    assert!(appends < 1_000, "2,000 queued commands took {appends} appends");
    let taken = repo.state(&stream, |s| s.taken).await.unwrap();
    assert_eq!(taken, 2_000);
}

#[tokio::test]
async fn rejected_command_writes_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-3").unwrap();
    let repo = repository(&store);
    repo.execute(&stream, Act::Open { capacity: 0 }).await.unwrap();
    let before = store.head_position().await.unwrap();
    assert!(matches!(repo.execute(&stream, Act::Take).await, Err(CommandError::Rejected(Act::SoldOut))));
    assert_eq!(store.head_position().await.unwrap(), before);
}

#[tokio::test]
async fn long_streams_are_loaded_from_a_snapshot_plus_the_events_after_it() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("section-4").unwrap();
    let config = RepositoryConfig { snapshot_every: 10, ..RepositoryConfig::default() };
    let repo = Repository::new(Section, (), Arc::new(SystemClock), Arc::clone(&store), None, config);
    repo.execute(&stream, Act::Open { capacity: 100 }).await.unwrap();
    for _ in 0..24 {
        repo.execute(&stream, Act::Take).await.unwrap();
    }
    repo.settled().await; // snapshots are written in the background
    let snapshot = store.load_snapshot(&stream).await.unwrap().expect("a snapshot after 10+ events");
    assert!(snapshot.stream_version >= 10, "{snapshot:?}");
    let state: serde_json::Value = serde_json::from_str(&snapshot.state).unwrap();
    let taken = state["taken"].as_u64().unwrap();
    assert_eq!(taken + 1, snapshot.stream_version, "the snapshot's state is exactly its version's");

    // A second process loads snapshot + tail, sees all 24 taken and keeps selling correctly.
    let other = repository(&store);
    assert_eq!(other.state(&stream, |s| s.taken).await.unwrap(), 24);
    let (sold, refused) = hammer(other, stream.clone(), 100).await;
    assert_eq!((sold, refused), (76, 24));
}
