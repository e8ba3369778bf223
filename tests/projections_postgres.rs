//! The `PostgreSQL` read models answer exactly like the in-memory ones, and never count an event
//! twice. Needs `DATABASE_URL`; each test works in a fresh schema.
#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::default_trait_access,
    clippy::cast_possible_truncation
)]

mod projections_support;

use std::collections::BTreeSet;

use boxoffice::aggregates::TicketingAction;
use boxoffice::domain::{Currency, CustomerId, EventId};
use boxoffice::event_store::{BadEventPolicy, Envelope, EventStore, PostgresConfig, PostgresEventStore};
use boxoffice::projections::{
    AvailableSeatsProjection, AvailableSeatsQueries, CustomerHistoryProjection, CustomerHistoryQueries,
    PostgresReadModels, Projection, ProjectionHandle, ReadModel, SalesAnalyticsProjection, SalesAnalyticsQueries,
};
use projections_support::{Driver, customer, eur, ev, event, rid, usd};
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL read model tests need a database (run scripts/test-services.sh)"
        )
    })
}

async fn fresh_store() -> PostgresEventStore {
    let url = database_url();
    let schema = format!("rm_{}", Uuid::new_v4().simple());
    let mut admin =
        PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    let config = PostgresConfig { schema: Some(schema), max_connections: 4, ..PostgresConfig::default() };
    let store = PostgresEventStore::connect(&url, config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
    store.migrate().await.unwrap();
    store
}

struct Memory {
    seats: AvailableSeatsProjection,
    sales: SalesAnalyticsProjection,
    history: CustomerHistoryProjection,
}

fn memory_models(log: &[Envelope]) -> Memory {
    let mut m = Memory {
        seats: AvailableSeatsProjection::new(),
        sales: SalesAnalyticsProjection::new(),
        history: CustomerHistoryProjection::new(),
    };
    for e in log {
        m.seats.apply(e).unwrap();
        m.sales.apply(e).unwrap();
        m.history.apply(e).unwrap();
    }
    m
}

/// Every query of every model, for every key the log mentions (and unknown ones), gives the same
/// answer from both storages, both reached through the storage-neutral query traits.
async fn assert_same_answers(pg: &PostgresReadModels, m: &Memory) {
    let (seats, sales, history) = (
        ProjectionHandle::new(m.seats.clone()),
        ProjectionHandle::new(m.sales.clone()),
        ProjectionHandle::new(m.history.clone()),
    );
    let [ps, ms]: [&dyn AvailableSeatsQueries; 2] = [pg, &seats];
    let [pa, ma]: [&dyn SalesAnalyticsQueries; 2] = [pg, &sales];
    let [pc, mc]: [&dyn CustomerHistoryQueries; 2] = [pg, &history];
    let unknown_event = EventId::from_uuid(Uuid::from_u128(77));
    let mut events: BTreeSet<EventId> = m.sales.events().into_iter().collect();
    events.extend(m.seats.sections().into_iter().map(|(e, _)| e));
    events.insert(unknown_event);
    for (e, s) in m.seats.sections() {
        let name = s.as_str();
        assert_eq!(ps.get_availability(e, name).await.unwrap(), ms.get_availability(e, name).await.unwrap());
        for quantity in [0, 1, 2, 5, 100_000] {
            assert_eq!(
                ps.has_availability(e, name, quantity).await.unwrap(),
                ms.has_availability(e, name, quantity).await.unwrap()
            );
        }
    }
    assert_eq!(ps.get_availability(unknown_event, "Nowhere").await.unwrap(), None);
    assert!(!ps.has_availability(unknown_event, "Nowhere", 0).await.unwrap());
    for e in &events {
        assert_eq!(ps.get_total_available(*e).await.unwrap(), ms.get_total_available(*e).await.unwrap());
        assert_eq!(pa.get_metrics(*e).await.unwrap(), ma.get_metrics(*e).await.unwrap(), "metrics of {e}");
        assert_eq!(pa.get_most_popular_section(*e).await.unwrap(), ma.get_most_popular_section(*e).await.unwrap());
        assert_eq!(pc.get_event_attendees(*e).await.unwrap(), mc.get_event_attendees(*e).await.unwrap());
    }
    assert_eq!(pa.get_total_revenue_all_events().await.unwrap(), ma.get_total_revenue_all_events().await.unwrap());
    let mut customers: Vec<CustomerId> = m.history.customers();
    customers.push(CustomerId::from_uuid(Uuid::from_u128(78)));
    for c in &customers {
        assert_eq!(pc.get_customer_profile(*c).await.unwrap(), mc.get_customer_profile(*c).await.unwrap());
        for e in &events {
            assert_eq!(pc.has_attended_event(*c, *e).await.unwrap(), mc.has_attended_event(*c, *e).await.unwrap());
        }
    }
    for currency in [Currency::EUR, Currency::USD] {
        for n in [0, 1, 3, 1_000] {
            assert_eq!(
                pc.get_top_spenders(currency, n).await.unwrap(),
                mc.get_top_spenders(currency, n).await.unwrap()
            );
        }
    }
}

/// Appends `actions` and returns the whole log once it is readable. Reads stop at the visibility
/// frontier (invariant I7), which transactions of tests running beside this one hold back for a
/// moment, hence the bounded wait.
async fn load(store: &PostgresEventStore, actions: &[TicketingAction]) -> Vec<Envelope> {
    projections_support::append_all(store, actions, 50).await;
    for _ in 0..1_000 {
        let log = store.read_all(0, 1_000_000).await.unwrap();
        if log.len() == actions.len() {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the log never became readable");
}

/// Catches every model up to the end of `log` (see `load` about the frontier).
async fn catch_up_all(pg: &PostgresReadModels, store: &PostgresEventStore, log: &[Envelope], batch: usize) {
    let head = log.last().map_or(0, |e| e.global_position);
    for model in ReadModel::ALL {
        let mut reached = 0;
        for _ in 0..1_000 {
            reached = pg.catch_up(store, model, batch).await.unwrap();
            if reached == head {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(reached, head);
    }
}

fn hand_built() -> Vec<TicketingAction> {
    let (e0, e1) = (event(0), event(1));
    vec![
        ev::inventory(e0, "VIP", 5),
        ev::inventory(e0, "GA", 10),
        ev::initiated(rid(1), e0, "VIP", 2, customer(1), eur(5_000)),
        ev::reserved(e0, "VIP", rid(1), [0, 1]),
        ev::paid(rid(1), eur(10_000)),
        ev::paid_reservation_side(rid(1), eur(10_000), false),
        ev::completed(rid(1), e0, "VIP"),
        ev::confirmed(e0, "VIP", rid(1), [0, 1]),
        ev::initiated(rid(2), e0, "GA", 3, customer(2), eur(2_001)),
        ev::reserved(e0, "GA", rid(2), [0, 1, 2]),
        ev::paid(rid(2), eur(6_003)),
        ev::completed(rid(2), e0, "GA"),
        ev::confirmed(e0, "GA", rid(2), [0, 1, 2]),
        ev::refunded(rid(2), eur(1_000)),
        ev::initiated(rid(3), e0, "GA", 1, customer(1), eur(2_001)),
        ev::reserved(e0, "GA", rid(3), [3]),
        ev::cancelled(rid(3), e0, "GA"),
        ev::released(e0, "GA", rid(3), [3]),
        ev::initiated(rid(4), e0, "GA", 1, customer(3), eur(2_001)),
        ev::reserved(e0, "GA", rid(4), [3]),
        ev::expired(rid(4), e0, "GA"),
        ev::released(e0, "GA", rid(4), [3]),
        ev::paid(rid(4), eur(2_001)),
        ev::refunded(rid(4), eur(2_001)),
        ev::initiated(rid(5), e1, "Floor", 1, customer(1), usd(700)),
        ev::paid(rid(5), usd(700)),
        ev::completed(rid(5), e1, "Floor"),
        ev::initiated(rid(6), e0, "GA", 1, customer(4), eur(2_001)),
        ev::reserved(e0, "GA", rid(6), [4]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_log_gives_the_same_answers_in_every_batching() {
    let store = fresh_store().await;
    let log = load(&store, &hand_built()).await;
    let memory = memory_models(&log);
    let pg = PostgresReadModels::new(store.pool().clone());
    for batch in [1, 3, 1_000] {
        for model in ReadModel::ALL {
            pg.reset(model).await.unwrap();
            assert_eq!(pg.position(model).await.unwrap(), 0);
        }
        catch_up_all(&pg, &store, &log, batch).await;
        assert_same_answers(&pg, &memory).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batches_and_restarts_never_double_count() {
    let store = fresh_store().await;
    let log = load(&store, &projections_support::workload(120)).await;
    let memory = memory_models(&log);
    let pg = PostgresReadModels::new(store.pool().clone());
    let half = log.len() / 2;
    for model in ReadModel::ALL {
        // The first half, then overlapping and repeated batches, as after a crash before an ack.
        pg.apply_batch(model, &log[..half]).await.unwrap();
        pg.apply_batch(model, &log[..half]).await.unwrap();
        pg.apply_batch(model, &log[half / 2..half + 10]).await.unwrap();
    }
    // A restarted process: new handle, resumes from the checkpoints in the database.
    let restarted = PostgresReadModels::new(store.pool().clone());
    catch_up_all(&restarted, &store, &log, 64).await;
    catch_up_all(&restarted, &store, &log, 64).await;
    for model in ReadModel::ALL {
        assert_eq!(restarted.apply_batch(model, &log).await.unwrap(), log.last().unwrap().global_position);
    }
    assert_same_answers(&restarted, &memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workloads_give_the_same_answers() {
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut d = Driver::new();
        for _ in 0..60 {
            let k = rng.random_range(0..64usize);
            match rng.random_range(0..10) {
                0..4 => d.reserve(
                    rng.random_range(0..2),
                    rng.random_range(0..2),
                    rng.random_range(1..4),
                    rng.random_range(0..4),
                ),
                4..7 => d.answer_payment(k, true),
                7 => d.answer_payment(k, false),
                8 => d.cancel(k),
                _ if rng.random_bool(0.5) => d.expire(k),
                _ => d.refund(k, rng.random_range(1..=100)),
            }
        }
        let store = fresh_store().await;
        let log = load(&store, d.log()).await;
        let memory = memory_models(&log);
        let pg = PostgresReadModels::new(store.pool().clone());
        catch_up_all(&pg, &store, &log, 1 + seed as usize * 7).await;
        assert_same_answers(&pg, &memory).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_applies_live_events_and_stops() {
    let store = fresh_store().await;
    let pg = PostgresReadModels::new(store.pool().clone());
    let shared: std::sync::Arc<dyn EventStore> = std::sync::Arc::new(store.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let follower = {
        let (pg, shared) = (pg.clone(), shared.clone());
        tokio::spawn(async move {
            pg.follow(shared, ReadModel::SalesAnalytics, 100, BadEventPolicy::default(), stop_rx).await
        })
    };
    let log = load(&store, &hand_built()).await;
    let head = log.last().unwrap().global_position;
    // The follower commits its checkpoint with its rows and wakes waiters after each commit.
    pg.wait_for_position(ReadModel::SalesAnalytics, head, std::time::Duration::from_secs(30)).await.unwrap();
    let late = pg.wait_for_position(ReadModel::SalesAnalytics, head + 1, std::time::Duration::from_millis(50)).await;
    assert!(matches!(late, Err(boxoffice::projections::ProjectionError::Timeout { reached, .. }) if reached == head));
    stop.send_replace(true);
    follower.await.unwrap().unwrap();
    let memory = memory_models(&log);
    assert_eq!(pg.get_metrics(event(0)).await.unwrap(), memory.sales.get_metrics(event(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_over_the_postgres_store_resumes_from_its_checkpoint() {
    use boxoffice::event_store::CheckpointStore;
    use boxoffice::projections::{ProjectionRunner, RunnerConfig};
    use std::sync::Arc;
    use std::time::Duration;

    let store = fresh_store().await;
    let actions = hand_built();
    let log = load(&store, &actions[..10]).await;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let checkpoints: Arc<dyn CheckpointStore> = Arc::new(store.clone());
    let handle = ProjectionHandle::new(CustomerHistoryProjection::new());
    let runner = ProjectionRunner::start(shared.clone(), checkpoints.clone(), handle.clone(), RunnerConfig::default())
        .await
        .unwrap();
    handle.wait_for_position(log.last().unwrap().global_position, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    // The checkpoint lags (a crash before saving): the events after it come again and are skipped.
    checkpoints.save_checkpoint(CustomerHistoryProjection::NAME, 3).await.unwrap();
    projections_support::append_all(&store, &actions[10..], 7).await;
    let runner =
        ProjectionRunner::start(shared, checkpoints.clone(), handle.clone(), RunnerConfig::default()).await.unwrap();
    let head = actions.len() as u64;
    handle.wait_for_position(head, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    let full = load_all(&store, actions.len()).await;
    assert_eq!(handle.snapshot(), memory_models(&full).history);
    assert_eq!(checkpoints.load_checkpoint(CustomerHistoryProjection::NAME).await.unwrap(), head);
}

async fn load_all(store: &PostgresEventStore, count: usize) -> Vec<Envelope> {
    for _ in 0..1_000 {
        let log = store.read_all(0, 1_000_000).await.unwrap();
        if log.len() == count {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the log never became readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_keeps_serving_the_old_rows_until_it_commits() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let store = fresh_store().await;
    let log = load(&store, &projections_support::workload(150)).await;
    let memory = memory_models(&log);
    let pg = PostgresReadModels::new(store.pool().clone());
    catch_up_all(&pg, &store, &log, 100).await;
    let revenue = memory.sales.get_total_revenue_all_events();
    let available = memory.seats.get_total_available(event(0));
    let customers = memory.history.get_top_spenders(Currency::EUR, 5);
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let reader = {
        let (pg, stop, queries) = (pg.clone(), stop.clone(), queries.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Never an emptied or half-rebuilt model: the old rows until the commit, then the new.
                assert_eq!(pg.get_total_revenue_all_events().await.unwrap(), revenue);
                assert_eq!(pg.get_total_available(event(0)).await.unwrap(), available);
                assert_eq!(pg.get_top_spenders(Currency::EUR, 5).await.unwrap(), customers);
                queries.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let head = log.last().unwrap().global_position;
    for model in ReadModel::ALL {
        assert_eq!(pg.rebuild(&store, model, 40).await.unwrap(), head);
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(queries.load(Ordering::Relaxed) > 0);
    assert_same_answers(&pg, &memory).await;
}

/// Appends `part` and waits until the log holds `total` events; returns the head.
async fn append_readable(store: &PostgresEventStore, part: &[TicketingAction], total: usize) -> u64 {
    projections_support::append_all(store, part, 50).await;
    for _ in 0..1_000 {
        let log = store.read_all(0, 1_000_000).await.unwrap();
        if log.len() == total {
            return log.last().unwrap().global_position;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the log never became readable");
}

/// Two processes follow the same model: one feeds it, the other stands by, sees the feeder's
/// progress in its waits and applies nothing; once the feeder stops, the standby takes the
/// lease over and feeds the model from its checkpoint. (Before, every process applied every
/// batch, each waiting on the checkpoint row the others held.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_feeds_a_model_and_another_takes_over_when_it_stops() {
    let store = fresh_store().await;
    let shared: std::sync::Arc<dyn EventStore> = std::sync::Arc::new(store.clone());
    let (a, b) = (PostgresReadModels::new(store.pool().clone()), PostgresReadModels::new(store.pool().clone()));
    let model = ReadModel::SalesAnalytics;
    let follow = |pg: &PostgresReadModels, stop| {
        let (pg, shared) = (pg.clone(), shared.clone());
        tokio::spawn(async move { pg.follow(shared, model, 100, BadEventPolicy::default(), stop).await })
    };
    let actions = hand_built();
    let (first, rest) = actions.split_at(4);
    let (second, third) = rest.split_at(rest.len() / 2);
    let wait = std::time::Duration::from_secs(30);

    let (stop_a, stop_a_rx) = tokio::sync::watch::channel(false);
    let feeder = follow(&a, stop_a_rx);
    let head = append_readable(&store, first, first.len()).await;
    a.wait_for_position(model, head, wait).await.unwrap();

    let (stop_b, stop_b_rx) = tokio::sync::watch::channel(false);
    let standby = follow(&b, stop_b_rx);
    let head = append_readable(&store, second, first.len() + second.len()).await;
    b.wait_for_position(model, head, wait).await.unwrap();
    // The standby publishes what it saw of the feeder's progress on its own next wait.
    let mut standby_status = b.status(model);
    // (The guard `wait_for` returns is dropped at once: held, it would block the publisher.)
    let saw =
        tokio::time::timeout(wait, standby_status.wait_for(|s| s.position >= head)).await.is_ok_and(|r| r.is_ok());
    assert!(saw, "its status shows the feeder's progress");
    assert!(a.status(model).borrow().batches > 0, "the first process feeds the model");
    assert_eq!(b.status(model).borrow().batches, 0, "the second one stands by and applies nothing");
    assert_eq!(b.status(model).borrow().position, head, "its status shows the feeder's progress, no further");

    stop_a.send_replace(true);
    feeder.await.unwrap().unwrap();
    let head = append_readable(&store, third, actions.len()).await;
    b.wait_for_position(model, head, wait).await.unwrap();
    let mut status = b.status(model);
    let fed = tokio::time::timeout(wait, status.wait_for(|s| s.batches > 0)).await;
    assert!(fed.is_ok(), "the standby took the lease over and fed the model");
    stop_b.send_replace(true);
    standby.await.unwrap().unwrap();
    let log = store.read_all(0, 1_000_000).await.unwrap();
    let memory = memory_models(&log);
    assert_eq!(b.get_metrics(event(0)).await.unwrap(), memory.sales.get_metrics(event(0)));
    assert_eq!(b.get_metrics(event(1)).await.unwrap(), memory.sales.get_metrics(event(1)));
}
