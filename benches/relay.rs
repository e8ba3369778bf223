//! Outbox relay and consumer throughput.
//!
//! ```text
//! cargo bench --bench relay --features postgres,kafka          # needs DATABASE_URL and KAFKA_BROKERS
//! cargo bench --bench relay                                    # in-memory baseline only
//! RELAY_BENCH_EVENTS=200000 cargo bench --bench relay --features postgres,kafka
//! ```
//!
//! Each run appends `RELAY_BENCH_EVENTS` events (default 100,000, 1 KiB-ish JSON payloads spread
//! over 400 streams in 4 categories) to a fresh store, then times a relay with an empty checkpoint
//! until its checkpoint reaches the head, and then a consumer group reading every message back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_precision_loss, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_bus::{EventBus, MemoryEventBus, OutboxRelay, RelayConfig, TopicRouter};
use boxoffice::event_store::{
    CheckpointStore, EventStore, ExpectedVersion, MemoryCheckpointStore, MemoryEventStore, NewEvent, StreamAppend,
    StreamId,
};
use futures::StreamExt;
use uuid::Uuid;

const CATEGORIES: [&str; 4] = ["event", "inventory", "reservation", "payment"];
const STREAMS: usize = 400;

fn event_count() -> usize {
    std::env::var("RELAY_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn batch_size() -> usize {
    std::env::var("RELAY_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000)
}

async fn fill(store: &Arc<dyn EventStore>, events: usize) {
    let streams: Vec<StreamId> =
        (0..STREAMS).map(|n| StreamId::new(format!("{}-{}", CATEGORIES[n % 4], Uuid::new_v4())).unwrap()).collect();
    let per_append = 25;
    let mut versions = vec![0u64; STREAMS];
    let mut written = 0;
    while written < events {
        let mut batch = Vec::new();
        for n in 0..40 {
            let index = (written / per_append + n) % STREAMS;
            let count = per_append.min(events - written);
            if count == 0 {
                break;
            }
            let new_events = (0..count)
                .map(|i| {
                    NewEvent::new(
                        "SeatsReserved",
                        1,
                        serde_json::json!({ "n": i, "section": "VIP", "seats": [1, 2, 3, 4], "note": "x".repeat(200) }),
                    )
                })
                .collect();
            batch.push(StreamAppend::new(streams[index].clone(), ExpectedVersion::Exact(versions[index]), new_events));
            versions[index] += count as u64;
            written += count;
        }
        store.append_batch(batch).await.unwrap();
    }
}

fn join_time(first_at: Option<Instant>, started: Instant) -> Duration {
    first_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(started))
}

struct Figures {
    relay_per_sec: f64,
    consume_per_sec: f64,
}

async fn run(
    label: &str,
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    bus: Arc<dyn EventBus>,
    consumer_bus: Arc<dyn EventBus>,
) -> Figures {
    let events = event_count();
    fill(&store, events).await;
    let head = store.head_position().await.unwrap();
    let router = TopicRouter::new(format!("bench{}", Uuid::new_v4().simple()));
    let topics = router.topics_for_categories(CATEGORIES);
    // Create the topics before the clock starts: this is a start-up cost, not throughput.
    let _ = bus.subscribe(&topics, "bench-warmup").await.unwrap();

    let config =
        RelayConfig { name: format!("bench-{}", Uuid::new_v4()), batch_size: batch_size(), ..RelayConfig::default() };
    let relay = OutboxRelay::new(Arc::clone(&store), Arc::clone(&bus), checkpoints, router.clone(), config);
    let started = Instant::now();
    let handle = relay.spawn();
    let mut progress = handle.progress();
    progress.wait_for(|p| *p >= head).await.unwrap();
    let relay_elapsed = started.elapsed();
    let stats = handle.stop().await.unwrap();
    assert_eq!(stats.published, events as u64);

    let group = format!("bench-consumer-{}", Uuid::new_v4().simple());
    let started = Instant::now();
    let mut deliveries = consumer_bus.subscribe(&topics, &group).await.unwrap();
    let mut received = 0usize;
    let mut first_at = None;
    while received < events {
        let delivery = tokio::time::timeout(Duration::from_secs(120), deliveries.next())
            .await
            .expect("consumer stalled")
            .unwrap()
            .unwrap();
        first_at.get_or_insert_with(Instant::now);
        received += 1;
        delivery.ack().await.unwrap();
    }
    let consume_elapsed = started.elapsed().saturating_sub(join_time(first_at, started));
    let join = join_time(first_at, started);

    let figures = Figures {
        relay_per_sec: events as f64 / relay_elapsed.as_secs_f64(),
        consume_per_sec: events as f64 / consume_elapsed.as_secs_f64(),
    };
    println!(
        "{label:<28} events {events:>7}  relay {:>9.0} ev/s ({:>6.2} s, {} batches)  consume+ack {:>9.0} ev/s ({:.2} s after a {:.2} s group join)",
        figures.relay_per_sec,
        relay_elapsed.as_secs_f64(),
        stats.batches,
        figures.consume_per_sec,
        consume_elapsed.as_secs_f64(),
        join.as_secs_f64(),
    );
    figures
}

#[cfg(feature = "kafka")]
async fn kafka_bus(commit_mode: boxoffice::event_bus::KafkaCommitMode) -> Option<Arc<dyn EventBus>> {
    use boxoffice::event_bus::{KafkaConfig, KafkaEventBus};
    let mut config = KafkaConfig::from_env().ok()?;
    config.commit_mode = commit_mode;
    config.session_timeout = Some(Duration::from_secs(6));
    config.fetch_wait_max = Some(Duration::from_millis(10));
    Some(Arc::new(KafkaEventBus::connect(config).await.unwrap_or_else(|e| panic!("KAFKA_BROKERS unreachable: {e}"))))
}

#[cfg(all(feature = "postgres", feature = "kafka"))]
async fn postgres_store() -> Option<boxoffice::event_store::PostgresEventStore> {
    use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
    use sqlx::{Connection, Executor, PgConnection};
    let url = std::env::var("DATABASE_URL").ok()?;
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    let store = PostgresEventStore::connect(&url, PostgresConfig { schema: Some(schema), ..PostgresConfig::default() })
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let memory_bus: Arc<dyn EventBus> = Arc::new(MemoryEventBus::new());
    run(
        "memory -> memory bus",
        Arc::new(MemoryEventStore::new()),
        Arc::new(MemoryCheckpointStore::new()),
        Arc::clone(&memory_bus),
        memory_bus,
    )
    .await;

    #[cfg(feature = "kafka")]
    {
        use boxoffice::event_bus::KafkaCommitMode;
        let Some(bus) = kafka_bus(KafkaCommitMode::Sync).await else {
            println!("KAFKA_BROKERS not set: skipping the broker figures");
            return;
        };
        run(
            "memory -> kafka, sync acks",
            Arc::new(MemoryEventStore::new()),
            Arc::new(MemoryCheckpointStore::new()),
            Arc::clone(&bus),
            Arc::clone(&bus),
        )
        .await;
        #[cfg(feature = "postgres")]
        match postgres_store().await {
            Some(store) => {
                let async_bus = kafka_bus(KafkaCommitMode::Async).await.unwrap();
                run("postgres -> kafka, async acks", Arc::new(store.clone()), Arc::new(store), bus, async_bus).await;
            }
            None => println!("DATABASE_URL not set: skipping the PostgreSQL figure"),
        }
    }
}
