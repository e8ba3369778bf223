//! Rebuild speed of the read models: 1,000,000 events from the in-memory store (target: at least
//! 500,000 events/s) and, with the `postgres` feature and `DATABASE_URL`, 100,000 events from
//! `PostgreSQL` (target: at least 30,000 events/s). The log is a realistic ticketing workload generated
//! once per run by driving the `Ticketing` reducer.
//!
//! Run: `cargo bench --bench projections [--features postgres] -- --warm-up-time 1 --measurement-time 5`
//! (`DATABASE_URL` naming a scratch database for the `PostgreSQL` part).
//!
//! Measured on the 2-core development machine (shared with another build, load average about 3.6,
//! release build), all from one run of this bench with `--features postgres`:
//! - `apply_memory` (the models alone, over envelopes already in memory): `AvailableSeats`
//!   3.38 M events/s, `SalesAnalytics` 1.68 M/s, `CustomerHistory` 1.60 M/s.
//! - `rebuild_memory` (reading the log from `MemoryEventStore` and applying): `all_three` in one
//!   pass 706 k events/s (680-736 k; target 500 k), `AvailableSeats` 2.34 M/s, `SalesAnalytics`
//!   1.75 M/s, `CustomerHistory` 1.68 M/s. `read_only` (the floor: reading without applying)
//!   11.8 M events/s, so the rebuild is bound by the models decoding payloads, not by the store:
//!   envelopes share their payload, event type, metadata and stream id with the log (`Arc`), so a
//!   read copies pointers. The build before that change, run back to back with the new one on the
//!   same machine, gave `read_only` 168 k/s and `all_three` 111 k/s (it cloned every JSON tree
//!   out of the log).
//! - `rebuild_postgres` (100,000 events, one transaction per 5,000 events, fsync on): `AvailableSeats`
//!   71 k events/s, `SalesAnalytics` 79 k/s, `CustomerHistory` 96 k/s (target 30 k/s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/projections_support/mod.rs"]
mod projections_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_store::{Envelope, EventStore, MemoryEventStore};
use boxoffice::projections::{
    AvailableSeatsProjection, CustomerHistoryProjection, Projection, SalesAnalyticsProjection, replay,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const MEMORY_EVENTS: usize = 1_000_000;

/// A workload log of at least `events` events, cut to exactly `events`.
fn log_of(events: usize) -> Vec<boxoffice::aggregates::TicketingAction> {
    let mut purchases = events / 9;
    loop {
        let mut log = projections_support::workload(purchases);
        if log.len() >= events {
            log.truncate(events);
            return log;
        }
        purchases += purchases / 10 + 1;
    }
}

async fn rebuild_all(store: &dyn EventStore) -> u64 {
    let mut seats = AvailableSeatsProjection::new();
    let mut sales = SalesAnalyticsProjection::new();
    let mut history = CustomerHistoryProjection::new();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 4_096).await.unwrap();
        let Some(last) = batch.last() else { return after };
        after = last.global_position;
        for envelope in &batch {
            seats.apply(envelope).unwrap();
            sales.apply(envelope).unwrap();
            history.apply(envelope).unwrap();
        }
    }
}

/// The floor: reading the log without applying it.
async fn read_only(store: &dyn EventStore) -> u64 {
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 4_096).await.unwrap();
        let Some(last) = batch.last() else { return after };
        after = last.global_position;
    }
}

async fn rebuild_one<P: Projection>(store: &dyn EventStore, mut model: P) -> u64 {
    replay(store, &mut model, 4_096).await.unwrap()
}

fn memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let started = Instant::now();
    let log = log_of(MEMORY_EVENTS);
    let store = Arc::new(MemoryEventStore::new());
    runtime.block_on(projections_support::append_all(&*store, &log, 10_000));
    eprintln!("generated and stored {} events in {:?}", log.len(), started.elapsed());
    drop(log);

    let mut group = c.benchmark_group("rebuild_memory");
    group.sample_size(10).throughput(Throughput::Elements(MEMORY_EVENTS as u64));
    group.bench_function(BenchmarkId::new("read_only", MEMORY_EVENTS), |b| {
        b.to_async(&runtime).iter(|| read_only(&*store));
    });
    group.bench_function(BenchmarkId::new("all_three", MEMORY_EVENTS), |b| {
        b.to_async(&runtime).iter(|| rebuild_all(&*store));
    });
    group.bench_function(BenchmarkId::new("available_seats", MEMORY_EVENTS), |b| {
        b.to_async(&runtime).iter(|| rebuild_one(&*store, AvailableSeatsProjection::new()));
    });
    group.bench_function(BenchmarkId::new("sales_analytics", MEMORY_EVENTS), |b| {
        b.to_async(&runtime).iter(|| rebuild_one(&*store, SalesAnalyticsProjection::new()));
    });
    group.bench_function(BenchmarkId::new("customer_history", MEMORY_EVENTS), |b| {
        b.to_async(&runtime).iter(|| rebuild_one(&*store, CustomerHistoryProjection::new()));
    });
    group.finish();

    // The models' own cost, without the store's copying of envelopes out of its log.
    let mut log = Vec::with_capacity(MEMORY_EVENTS);
    runtime.block_on(async {
        loop {
            let batch = store.read_all(log.last().map_or(0, |e: &Envelope| e.global_position), 100_000).await.unwrap();
            if batch.is_empty() {
                break;
            }
            log.extend(batch);
        }
    });
    let mut group = c.benchmark_group("apply_memory");
    group.sample_size(10).throughput(Throughput::Elements(MEMORY_EVENTS as u64));
    group.bench_function(BenchmarkId::new("available_seats", MEMORY_EVENTS), |b| {
        b.iter(|| fold(AvailableSeatsProjection::new(), &log));
    });
    group.bench_function(BenchmarkId::new("sales_analytics", MEMORY_EVENTS), |b| {
        b.iter(|| fold(SalesAnalyticsProjection::new(), &log));
    });
    group.bench_function(BenchmarkId::new("customer_history", MEMORY_EVENTS), |b| {
        b.iter(|| fold(CustomerHistoryProjection::new(), &log));
    });
    group.finish();
}

fn fold<P: Projection>(mut model: P, log: &[Envelope]) -> u64 {
    for envelope in log {
        model.apply(envelope).unwrap();
    }
    model.position()
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{BenchmarkId, Criterion, Duration, Instant, Throughput, log_of, projections_support};
    use boxoffice::event_store::{EventStore, PostgresConfig, PostgresEventStore};
    use boxoffice::projections::{PostgresReadModels, ReadModel};
    use sqlx::{Connection, Executor};

    const POSTGRES_EVENTS: usize = 100_000;

    pub fn rebuild(c: &mut Criterion) {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| panic!("DATABASE_URL must name a scratch database for the PostgreSQL benchmark"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let store = runtime.block_on(async {
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
            let config = PostgresConfig { schema: Some(schema.clone()), ..PostgresConfig::default() };
            let store = PostgresEventStore::connect(&url, config).await.unwrap();
            store.migrate().await.unwrap();
            store
        });
        let log = log_of(POSTGRES_EVENTS);
        let started = Instant::now();
        runtime.block_on(projections_support::append_all(&store, &log, 1_000));
        eprintln!("stored {} events in PostgreSQL in {:?}", log.len(), started.elapsed());
        let models = PostgresReadModels::new(store.pool().clone());

        let mut group = c.benchmark_group("rebuild_postgres");
        group.sample_size(10).throughput(Throughput::Elements(POSTGRES_EVENTS as u64));
        for model in ReadModel::ALL {
            group.bench_function(BenchmarkId::new(model.name(), POSTGRES_EVENTS), |b| {
                b.to_async(&runtime).iter_custom(|iterations| {
                    let (models, store) = (models.clone(), store.clone());
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            models.reset(model).await.unwrap();
                            let started = Instant::now();
                            let reached = models.catch_up(&store, model, 5_000).await.unwrap();
                            total += started.elapsed();
                            assert_eq!(reached, store.head_position().await.unwrap());
                        }
                        total
                    }
                });
            });
        }
        group.finish();
        runtime.block_on(async {
            store.close().await;
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
        });
    }
}

#[cfg(not(feature = "postgres"))]
criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = memory
}
#[cfg(feature = "postgres")]
criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = memory, postgres::rebuild
}
criterion_main!(benches);
