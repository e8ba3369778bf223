//! Fault tests of the outbox relay against a real Kafka-protocol broker (Tansu, spawned per test
//! from `TANSU_BIN`): the broker becomes unresponsive, the broker is killed and restarted, the
//! relay is killed and restarted, all in the middle of a stream of appends. Afterwards every
//! committed event must have reached its topic at least once and a deduplicating consumer must
//! have handled each exactly once, in stream order.
#![cfg(all(feature = "postgres", feature = "kafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_bus::{
    DedupStore, EventBus, KafkaConfig, KafkaEventBus, OutboxRelay, PostgresDedupStore, RelayConfig, RelayHandle,
    TopicRouter,
};
use boxoffice::event_store::{CheckpointStore, EventStore, PostgresConfig, PostgresEventStore, RetryPolicy};
use relay_support::tansu::Tansu;
use relay_support::{append_round_robin, assert_every_event_once, consume, streams, topics, wait_for_checkpoint};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

struct Backends {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    dedup: Arc<dyn DedupStore>,
}

/// A `PostgreSQL` event store, checkpoint store and dedup store in a fresh schema of `DATABASE_URL`.
async fn backends() -> Backends {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point to a PostgreSQL database");
    let schema = format!("relay_{}", Uuid::new_v4().simple());
    let mut admin =
        PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    let config =
        PostgresConfig { schema: Some(schema), poll_interval: Duration::from_millis(100), ..PostgresConfig::default() };
    let store = PostgresEventStore::connect(&url, config).await.unwrap();
    store.migrate().await.unwrap();
    let dedup = Arc::new(PostgresDedupStore::new(store.pool().clone()));
    Backends { store: Arc::new(store.clone()), checkpoints: Arc::new(store), dedup }
}

async fn kafka(brokers: String, message_timeout: Duration) -> Arc<dyn EventBus> {
    let mut config = KafkaConfig::new(brokers.clone());
    config.partitions = 3;
    config.session_timeout = Some(Duration::from_secs(6));
    config.fetch_wait_max = Some(Duration::from_millis(10));
    config.message_timeout = message_timeout;
    config.connect_timeout = Duration::from_secs(5);
    Arc::new(KafkaEventBus::connect(config).await.unwrap_or_else(|e| panic!("broker {brokers} unreachable: {e}")))
}

fn relay(backends: &Backends, bus: &Arc<dyn EventBus>, name: &str) -> RelayHandle {
    let config = RelayConfig {
        name: name.to_owned(),
        batch_size: 20,
        retry: RetryPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: None,
        },
        ..RelayConfig::default()
    };
    OutboxRelay::new(
        Arc::clone(&backends.store),
        Arc::clone(bus),
        Arc::clone(&backends.checkpoints),
        TopicRouter::default(),
        config,
    )
    .spawn()
}

fn writer(backends: &Backends, per_stream: u64) -> tokio::task::JoinHandle<Vec<uuid::Uuid>> {
    let store = Arc::clone(&backends.store);
    let streams = streams(8);
    tokio::spawn(async move { append_round_robin(&store, &streams, per_stream, Duration::from_millis(4)).await })
}

/// The broker stops answering (frozen, data kept) for longer than the producer's message timeout:
/// publishes fail, the relay retries without moving its checkpoint, and after the broker is back
/// every event is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_broker_mid_stream_loses_nothing() {
    let tansu = Tansu::start();
    let backends = backends().await;
    let bus = kafka(tansu.brokers(), Duration::from_secs(2)).await;
    let handle = relay(&backends, &bus, "relay-freeze");
    let writer = writer(&backends, 40);
    let mut progress = handle.progress();
    wait_for_checkpoint(&mut progress, 40, WAIT).await;

    tansu.signal("-STOP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = *progress.borrow();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(*progress.borrow(), frozen_at, "checkpoint moved while the broker was unresponsive");
    tansu.signal("-CONT");

    let ids = writer.await.unwrap();
    wait_for_checkpoint(&mut progress, ids.len() as u64, WAIT).await;
    let stats = handle.stop().await.unwrap();
    assert!(stats.retries > 0, "publishing should have failed while the broker was frozen: {stats:?}");

    let expected: HashSet<_> = ids.iter().copied().collect();
    let consumed = consume(
        &bus,
        Arc::clone(&backends.dedup),
        &topics(&TopicRouter::default()),
        &expected,
        WAIT,
        Duration::from_secs(1),
    )
    .await;
    assert_every_event_once(&consumed, &ids, 40);
}

/// The broker is killed and restarted in the middle of the stream. Tansu's memory storage forgets
/// everything on restart, so what can be checked is the relay's side: no checkpoint advance while
/// the broker is down, and every event after the last checkpoint taken before the crash reaches the
/// new broker (a durable broker would also still hold the events before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_stream_relay_republishes_from_checkpoint() {
    let mut tansu = Tansu::start();
    let backends = backends().await;
    let bus = kafka(tansu.brokers(), Duration::from_secs(2)).await;
    let handle = relay(&backends, &bus, "relay-broker-restart");
    let writer = writer(&backends, 40);
    let mut progress = handle.progress();
    wait_for_checkpoint(&mut progress, 40, WAIT).await;

    tansu.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down_at = *progress.borrow();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(*progress.borrow(), down_at, "checkpoint moved while the broker was down");
    tansu.restart();

    let ids = writer.await.unwrap();
    wait_for_checkpoint(&mut progress, ids.len() as u64, WAIT).await;
    let stats = handle.stop().await.unwrap();
    assert!(stats.retries > 0, "{stats:?}");

    let after_crash: Vec<_> = ids[usize::try_from(down_at).unwrap()..].to_vec();
    let expected: HashSet<_> = after_crash.iter().copied().collect();
    let consumed = consume(
        &bus,
        Arc::clone(&backends.dedup),
        &topics(&TopicRouter::default()),
        &expected,
        WAIT,
        Duration::from_secs(1),
    )
    .await;
    let delivered: HashSet<_> = consumed.deliveries.iter().copied().collect();
    let missing = after_crash.iter().filter(|id| !delivered.contains(id)).count();
    assert_eq!(missing, 0, "events after the checkpoint must reach the restarted broker");
    let handled: HashSet<_> = consumed.handled.iter().copied().collect();
    assert_eq!(handled.len(), consumed.handled.len(), "a deduplicating consumer handles each event once");
}

/// The relay is killed (its task aborted, as a crash would) several times during the appends and
/// a new relay resumes from the checkpoint each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_and_restarted_mid_stream_loses_nothing() {
    let tansu = Tansu::start();
    let backends = backends().await;
    let bus = kafka(tansu.brokers(), Duration::from_secs(10)).await;
    let writer = writer(&backends, 40);
    for _ in 0..4 {
        let handle = relay(&backends, &bus, "relay-crash");
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.abort();
    }
    let ids = writer.await.unwrap();
    let handle = relay(&backends, &bus, "relay-crash");
    wait_for_checkpoint(&mut handle.progress(), ids.len() as u64, WAIT).await;
    handle.stop().await.unwrap();

    let expected: HashSet<_> = ids.iter().copied().collect();
    let consumed = consume(
        &bus,
        Arc::clone(&backends.dedup),
        &topics(&TopicRouter::default()),
        &expected,
        WAIT,
        Duration::from_secs(1),
    )
    .await;
    assert_every_event_once(&consumed, &ids, 40);
}
