//! Rebuild speed of the read models: 1,000,000 events from the in-memory store (target: at least
//! 500,000 events/s) and, with the `postgres` feature and `DATABASE_URL`, 100,000 events from
//! `PostgreSQL` (target: at least 30,000 events/s). The log is a realistic ticketing workload generated
//! once per run by driving the `Ticketing` reducer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/projections_support/mod.rs"]
mod projections_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_store::{EventStore, MemoryEventStore};
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = memory
}
criterion_main!(benches);
