//! Event store throughput: single-event and 10-event appends with 1 and 8 concurrent writers on
//! distinct streams, and global-log reads, for the in-memory backend and (with `--features postgres`
//! and `DATABASE_URL`) Postgres.
//!
//! `cargo bench --bench event_store --features postgres -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_store::{EventStore, ExpectedVersion, MemoryEventStore, Metadata, NewEvent, StreamId};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use serde_json::json;
use uuid::Uuid;

const WRITERS: [u64; 2] = [1, 8];
const EVENTS_PER_APPEND: [u64; 2] = [1, 10];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn batch(size: u64, counter: &mut u128) -> Vec<NewEvent> {
    (0..size)
        .map(|i| {
            *counter += 1;
            NewEvent {
                event_id: Uuid::from_u128(*counter),
                event_type: "SeatsReserved".to_owned(),
                schema_version: 1,
                payload: json!({ "section": "A", "seats": i, "hold_seconds": 600 }),
            }
        })
        .collect()
}

/// `writers` tasks each append `iters` times `size` events to their own stream; returns the time.
async fn run_appends(store: Arc<dyn EventStore>, writers: u64, size: u64, iters: u64) -> Duration {
    let mut prepared = Vec::new();
    let mut counter = u128::from(rand::random::<u64>()) << 64;
    for _ in 0..writers {
        let stream = StreamId::new(format!("bench-{}", Uuid::new_v4().simple())).unwrap();
        let batches: Vec<Vec<NewEvent>> = (0..iters).map(|_| batch(size, &mut counter)).collect();
        prepared.push((stream, batches));
    }
    let start = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(stream, batches)| {
            let store = store.clone();
            tokio::spawn(async move {
                let metadata = Metadata::default();
                let mut version = 0;
                for events in batches {
                    let result =
                        store.append(&stream, ExpectedVersion::Exact(version), events, &metadata, None).await.unwrap();
                    version = result.stream_version;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn bench_appends(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    make: &dyn Fn() -> Arc<dyn EventStore>,
) {
    for writers in WRITERS {
        for size in EVENTS_PER_APPEND {
            group.throughput(Throughput::Elements(writers * size));
            group.bench_function(format!("append/{size}-event/{writers}-writer"), |b| {
                b.iter_custom(|iters| {
                    let store = make();
                    rt.block_on(run_appends(store, writers, size, iters))
                });
            });
        }
    }
}

async fn fill(store: &dyn EventStore, total: u64) {
    let mut counter = 0;
    let stream = StreamId::new(format!("bench-read-{}", Uuid::new_v4().simple())).unwrap();
    for _ in 0..total / 500 {
        store
            .append(&stream, ExpectedVersion::Any, batch(500, &mut counter), &Metadata::default(), None)
            .await
            .unwrap();
    }
}

fn bench_read_all(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn EventStore>,
    total: u64,
) {
    rt.block_on(fill(&**store, total));
    let head = rt.block_on(async {
        loop {
            let head = store.head_position().await.unwrap();
            if head > 0 {
                break head;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    group.throughput(Throughput::Elements(total));
    group.bench_function(format!("read_all/{total}-events/1000-per-batch"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut after = 0;
                let mut read = 0;
                while after < head {
                    let page = store.read_all(after, 1000).await.unwrap();
                    let Some(last) = page.last() else { break };
                    after = last.global_position;
                    read += page.len();
                }
                read
            })
        });
    });
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory");
    bench_appends(&mut group, &rt, &|| Arc::new(MemoryEventStore::new()));
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    bench_read_all(&mut group, &rt, &store, 100_000);
    group.finish();
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
    use sqlx::{Connection, Executor};

    let url =
        std::env::var("DATABASE_URL").expect("DATABASE_URL must name a scratch database for the PostgreSQL benchmarks");
    let rt = runtime();
    let store: Arc<dyn EventStore> = rt.block_on(async {
        let schema = format!("bench_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("cannot connect to DATABASE_URL");
        admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
        let config = PostgresConfig { schema: Some(schema), max_connections: 16, ..PostgresConfig::default() };
        let store = PostgresEventStore::connect(&url, config).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    });
    let mut group = c.benchmark_group("postgres");
    group.sample_size(10);
    let shared = store.clone();
    bench_appends(&mut group, &rt, &move || shared.clone());
    bench_read_all(&mut group, &rt, &store, 50_000);
    group.finish();
}

#[cfg(feature = "postgres")]
criterion_group!(benches, memory, postgres);
#[cfg(not(feature = "postgres"))]
criterion_group!(benches, memory);
criterion_main!(benches);
