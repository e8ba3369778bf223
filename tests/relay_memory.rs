//! The outbox relay over the in-memory store and bus: checkpoints, restarts and retries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use boxoffice::event_bus::{EventBus, MemoryDedupStore, MemoryEventBus, OutboxRelay, RelayConfig, TopicRouter};
use boxoffice::event_store::{CheckpointStore, EventStore, MemoryCheckpointStore, MemoryEventStore, RetryPolicy};
use futures::StreamExt;
use relay_support::{
    FlakyBus, append_round_robin, assert_every_event_once, consume, streams, topics, wait_for_checkpoint,
};

const WAIT: Duration = Duration::from_secs(20);

fn fast_retry() -> RetryPolicy {
    RetryPolicy { min_delay: Duration::from_millis(5), ..RetryPolicy::default() }
}

fn relay(
    store: &Arc<dyn EventStore>,
    bus: &Arc<dyn EventBus>,
    checkpoints: &Arc<dyn CheckpointStore>,
    batch_size: usize,
) -> OutboxRelay {
    let config = RelayConfig { batch_size, retry: fast_retry(), ..RelayConfig::default() };
    OutboxRelay::new(Arc::clone(store), Arc::clone(bus), Arc::clone(checkpoints), TopicRouter::default(), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_every_committed_event_to_its_topic_in_stream_order() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let memory_bus = MemoryEventBus::new();
    let bus: Arc<dyn EventBus> = Arc::new(memory_bus.clone());
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    let handle = relay(&store, &bus, &checkpoints, 16).spawn();
    let streams = streams(8);
    let ids = append_round_robin(&store, &streams, 25, Duration::ZERO).await;
    let mut progress = handle.progress();
    wait_for_checkpoint(&mut progress, store.head_position().await.unwrap(), WAIT).await;
    let stats = handle.stop().await.unwrap();
    assert_eq!(stats.published, 200);

    let router = TopicRouter::default();
    assert_eq!(memory_bus.message_count("ticketing-inventory-events").unwrap(), 50);
    let expected: HashSet<_> = ids.iter().copied().collect();
    let consumed =
        consume(&bus, Arc::new(MemoryDedupStore::new()), &topics(&router), &expected, WAIT, Duration::from_millis(50))
            .await;
    assert_eq!(consumed.deliveries.len(), 200, "no duplicates without failures");
    assert_every_event_once(&consumed, &ids, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_resumes_from_its_checkpoint() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let memory_bus = MemoryEventBus::new();
    let bus: Arc<dyn EventBus> = Arc::new(memory_bus.clone());
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    let streams = streams(4);
    let mut ids = append_round_robin(&store, &streams, 5, Duration::ZERO).await;

    let handle = relay(&store, &bus, &checkpoints, 3).spawn();
    wait_for_checkpoint(&mut handle.progress(), 20, WAIT).await;
    handle.stop().await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("outbox-relay").await.unwrap(), 20);

    for stream in &streams {
        let event = boxoffice::event_store::NewEvent::new("Noted", 1, serde_json::json!({}));
        ids.push(event.event_id);
        store
            .append(
                stream,
                boxoffice::event_store::ExpectedVersion::Exact(5),
                vec![event],
                &boxoffice::event_store::Metadata::default(),
                None,
            )
            .await
            .unwrap();
    }
    let handle = relay(&store, &bus, &checkpoints, 3).spawn();
    wait_for_checkpoint(&mut handle.progress(), 24, WAIT).await;
    let stats = handle.stop().await.unwrap();
    assert_eq!(stats.published, 4, "only the events after the checkpoint are published again");
    let total: usize = topics(&TopicRouter::default()).iter().map(|t| memory_bus.message_count(t).unwrap()).sum();
    assert_eq!(total, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_publishes_are_retried_and_duplicates_are_dropped_by_consumers() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let inner_memory = MemoryEventBus::new();
    let inner: Arc<dyn EventBus> = Arc::new(inner_memory.clone());
    let bus: Arc<dyn EventBus> = Arc::new(FlakyBus { inner: Arc::clone(&inner), every: 3, calls: AtomicU64::new(0) });
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    let handle = relay(&store, &bus, &checkpoints, 8).spawn();
    let streams = streams(6);
    let ids = append_round_robin(&store, &streams, 20, Duration::ZERO).await;
    wait_for_checkpoint(&mut handle.progress(), 120, WAIT).await;
    let stats = handle.stop().await.unwrap();
    assert!(stats.retries > 0);
    let published = topics(&TopicRouter::default()).iter().map(|t| inner_memory.message_count(t).unwrap()).sum();
    assert_stamps_follow_the_log(&inner, &store, published).await;

    let expected: HashSet<_> = ids.iter().copied().collect();
    let consumed = consume(
        &inner,
        Arc::new(MemoryDedupStore::new()),
        &topics(&TopicRouter::default()),
        &expected,
        WAIT,
        Duration::from_millis(50),
    )
    .await;
    assert!(consumed.deliveries.len() > ids.len(), "failed batches were republished");
    assert_every_event_once(&consumed, &ids, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relay_loses_nothing_when_a_new_one_takes_over() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let memory_bus = MemoryEventBus::new();
    let bus: Arc<dyn EventBus> = Arc::new(memory_bus.clone());
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    let streams = streams(6);
    let writer = {
        let store = Arc::clone(&store);
        let streams = streams.clone();
        tokio::spawn(async move { append_round_robin(&store, &streams, 30, Duration::from_millis(1)).await })
    };
    for _ in 0..3 {
        let handle = relay(&store, &bus, &checkpoints, 5).spawn();
        tokio::time::sleep(Duration::from_millis(40)).await;
        handle.abort();
    }
    let ids = writer.await.unwrap();
    let handle = relay(&store, &bus, &checkpoints, 5).spawn();
    wait_for_checkpoint(&mut handle.progress(), 180, WAIT).await;
    handle.stop().await.unwrap();
    let published = topics(&TopicRouter::default()).iter().map(|t| memory_bus.message_count(t).unwrap()).sum();
    assert_stamps_follow_the_log(&bus, &store, published).await;

    let expected: HashSet<_> = ids.iter().copied().collect();
    let consumed = consume(
        &bus,
        Arc::new(MemoryDedupStore::new()),
        &topics(&TopicRouter::default()),
        &expected,
        WAIT,
        Duration::from_millis(50),
    )
    .await;
    assert_every_event_once(&consumed, &ids, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_appends_are_never_published() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let memory_bus = MemoryEventBus::new();
    let bus: Arc<dyn EventBus> = Arc::new(memory_bus.clone());
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
    let handle = relay(&store, &bus, &checkpoints, 4).spawn();
    let streams = streams(4);
    append_round_robin(&store, &streams, 2, Duration::ZERO).await;
    for stream in &streams {
        let stale = boxoffice::event_store::NewEvent::new("Noted", 1, serde_json::json!({}));
        let outcome = store
            .append(
                stream,
                boxoffice::event_store::ExpectedVersion::Exact(0),
                vec![stale],
                &boxoffice::event_store::Metadata::default(),
                None,
            )
            .await;
        assert!(outcome.is_err(), "a stale expected version must be rejected");
    }
    let last = store
        .append(
            &streams[0],
            boxoffice::event_store::ExpectedVersion::Exact(2),
            vec![boxoffice::event_store::NewEvent::new("Noted", 1, serde_json::json!({}))],
            &boxoffice::event_store::Metadata::default(),
            None,
        )
        .await
        .unwrap();
    wait_for_checkpoint(&mut handle.progress(), last.last_global_position, WAIT).await;
    handle.stop().await.unwrap();
    let total: usize = topics(&TopicRouter::default()).iter().map(|t| memory_bus.message_count(t).unwrap()).sum();
    assert_eq!(total, 9, "exactly the committed events reach the bus");
}

/// Every message on the relay's topics, republished copies included, names the event before it
/// in the global log (0 for the first): stamps depend on the log alone, not on which relay run
/// or retry published the message.
async fn assert_stamps_follow_the_log(bus: &Arc<dyn EventBus>, store: &Arc<dyn EventStore>, messages: usize) {
    let log = store.read_all(0, usize::MAX).await.unwrap();
    let previous: HashMap<u64, u64> = log
        .iter()
        .scan(0, |before, envelope| {
            Some((envelope.global_position, std::mem::replace(before, envelope.global_position)))
        })
        .collect();
    let group = format!("stamps-{}", uuid::Uuid::new_v4());
    let mut deliveries = bus.subscribe(&topics(&TopicRouter::default()), &group).await.unwrap();
    for _ in 0..messages {
        let delivery = tokio::time::timeout(WAIT, deliveries.next()).await.unwrap().unwrap().unwrap();
        let position = delivery.envelope().global_position;
        assert_eq!(delivery.previous_position(), Some(previous[&position]), "stamp of the event at {position}");
    }
}
