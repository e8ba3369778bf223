//! The assembled system end to end with everything in `PostgreSQL`: the same scenarios as
//! `tests/system.rs` (read models queried through the system), plus what only durable read models
//! can show: their tables and checkpoints survive a restart, and a database whose read models were
//! kept in memory before switches to `PostgreSQL` ones without losing anything. Needs
//! `DATABASE_URL`; each test works in a fresh schema.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod system_support;

use std::sync::Arc;

use boxoffice::projections::{PostgresReadModels, ReadModel};
use boxoffice::system::ReadModelStorage;
use system_support::{Backend, Storage};

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::$name(Backend::Postgres).await;
        }
    )*};
}

scenarios!(
    purchase_sells_seats_and_books_revenue,
    declined_payment_releases_the_seats,
    unpaid_hold_expires_on_the_clock_and_late_payment_is_refused,
    customer_cancellation_releases_the_seats,
    last_seat_goes_to_exactly_one_of_many_concurrent_buyers,
    retried_reserve_with_the_same_key_returns_the_original_hold,
    bad_input_gets_a_typed_error_and_appends_nothing,
    a_request_beyond_the_free_seats_is_recorded_as_compensated,
    text_the_store_cannot_hold_is_refused_before_anything_is_appended,
    a_restarted_system_expires_holds_taken_before_the_restart,
    cancelling_the_event_refunds_purchases_and_releases_holds,
    two_systems_sharing_a_store_never_oversell,
    sums_past_one_amount_are_counted_exactly,
);

system_support::payments::payment_scenarios!(Backend::Postgres);
system_support::health::health_scenarios!(Backend::Postgres);
system_support::tickets::ticket_scenarios!(Backend::Postgres);
system_support::orders::order_scenarios!(Backend::Postgres);
system_support::nodes::node_scenarios!(Backend::Postgres);
system_support::read_models_tickets::ticket_read_model_scenarios!(Backend::Postgres);

fn tables(storage: &Storage) -> PostgresReadModels {
    match &storage.read_models {
        ReadModelStorage::Postgres(models) => models.clone(),
        ReadModelStorage::Memory => panic!("the PostgreSQL backend keeps its read models in PostgreSQL"),
    }
}

/// After the restart scenario, the tables themselves hold the answers, with every model's
/// checkpoint at the head of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_system_counts_nothing_twice() {
    let f = system_support::a_restarted_system_counts_nothing_twice(Backend::Postgres).await;
    let head = f.storage.store.head_position().await.unwrap();
    let own = tables(&f.storage);
    for model in ReadModel::ALL {
        assert_eq!(own.position(model).await.unwrap(), head, "{model:?}");
    }
    let sales = own.get_metrics(f.event).await.unwrap().unwrap();
    assert_eq!(sales, system_support::metrics(&f.system, f.event).await);
    assert_eq!(sales.tickets_sold, 4);
    f.system.shutdown().await;
}

/// A database whose systems kept their read models in memory (so nothing of them is stored) and
/// then starts one with `PostgreSQL` read models: the new tables are folded from the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_to_postgres_read_models_folds_the_whole_log() {
    let durable = Backend::Postgres.storage().await;
    let in_memory = Storage { read_models: ReadModelStorage::Memory, ..durable.clone() };
    let clock = boxoffice::prelude::FixedClock::new(chrono::Utc::now());
    let gateway = Arc::new(boxoffice::prelude::SimulatedGateway::always_succeed());
    let before = system_support::system_with(&in_memory, &clock, Arc::clone(&gateway)).await;
    let event = system_support::open_sale_on(&before, &clock, &[("Stalls", 10)]).await;
    system_support::buy(&before, event, "Stalls", 2, boxoffice::domain::CustomerId::new_v4()).await;
    before.settled().await.unwrap();
    let expected = system_support::metrics(&before, event).await;
    assert_eq!(expected.tickets_sold, 2);
    before.shutdown().await;

    let system = system_support::system_with(&durable, &clock, gateway).await;
    system.settled().await.unwrap();
    assert_eq!(tables(&durable).get_metrics(event).await.unwrap(), Some(expected.clone()));
    assert_eq!(system_support::metrics(&system, event).await, expected);
    system.shutdown().await;
}

/// A system built over a schema where `migrate()` never ran refuses to start with a typed error
/// that says to migrate (instead of failing its first command); once migrated, it builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn building_on_an_unmigrated_schema_says_to_migrate() {
    let store = Arc::new(system_support::postgres::unmigrated_store().await);
    let built = boxoffice::system::TicketingSystem::builder().event_store(store.clone()).build().await;
    let error = built.err().expect("built on an unmigrated schema");
    let boxoffice::system::SystemError::NotMigrated { source } = &error else {
        panic!("expected NotMigrated: {error:?}");
    };
    let boxoffice::event_store::EventStoreError::NotMigrated { schema, missing } = source.as_ref() else {
        panic!("expected the store's NotMigrated: {source:?}");
    };
    assert!(schema.starts_with("sys_"), "the configured schema: {schema}");
    assert_eq!(missing, "events, snapshots, idempotency_keys, checkpoints");
    assert!(error.to_string().contains("migration"), "{error}");
    assert!(source.to_string().contains("run migrate()"), "{source}");

    store.migrate().await.unwrap();
    let system = boxoffice::system::TicketingSystem::builder().event_store(store).build().await.unwrap();
    system.shutdown().await;
}

/// A row this release cannot decode at all (metadata of the wrong shape, written by something
/// other than this crate) is quarantined by every consumer, each naming its position, and they
/// all read on: the purchase after it is carried out and counted and `settled()` returns (before:
/// `read_all` failed at the row, nothing after it was read and `settled()` waited for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undecodable_row_is_quarantined_by_every_consumer() {
    use boxoffice::event_store::EventStore;
    use boxoffice::framework::FixedClock;
    use boxoffice::system::SimulatedGateway;

    let store = Arc::new(system_support::postgres::fresh_store().await);
    let models = PostgresReadModels::new(store.pool().clone());
    let storage =
        Storage { store: store.clone(), checkpoints: store.clone(), read_models: ReadModelStorage::Postgres(models) };
    let clock = FixedClock::new(system_support::start());
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = system_support::system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let event = system_support::open_sale_on(&system, &clock, &[("Stalls", 10)]).await;
    let f = system_support::Fixture { clock, storage, gateway, system, event };
    f.system.settled().await.unwrap();

    let bad: i64 = sqlx::query_scalar(
        "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, schema_version, payload, metadata) \
         VALUES (boxoffice_reserve_positions(1), gen_random_uuid(), 'reservation-' || gen_random_uuid(), 1, \
         'ReservationInitiated', 1, '{}', '{\"correlation_id\": 42}') RETURNING global_position",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let bad = u64::try_from(bad).unwrap();
    let hold = f.system.reserve(system_support::request(&f, "Stalls", 2)).await.unwrap();
    f.system.pay(hold.reservation_id, system_support::card()).await.unwrap();
    f.system.settled().await.unwrap();

    // The log reads up to the bad row, names it to a read that starts there, and goes on after it.
    let prefix = store.read_all(0, 10_000).await.unwrap();
    assert!(prefix.iter().all(|e| e.global_position < bad) && !prefix.is_empty());
    let at_bad = store.read_all(prefix.last().unwrap().global_position, 10_000).await.unwrap_err();
    assert_eq!(at_bad.bad_event_position(), Some(bad), "{at_bad}");
    let after = store.read_all(bad, 10_000).await.unwrap();
    assert!(after.iter().any(|e| &*e.event_type == "PaymentSucceeded"), "the purchase after it is readable");
    let health = f.system.health().await.unwrap();
    assert!(health.is_healthy(), "{health:?}");
    for name in ["boxoffice-saga", "available-seats", "sales-analytics", "customer-history"] {
        let consumer = health.consumer(name).unwrap();
        let entry = consumer.quarantined.iter().find(|q| q.global_position == bad);
        let entry = entry.unwrap_or_else(|| panic!("{name} did not quarantine the row at {bad}: {consumer:?}"));
        let why = system_support::health::causes(&*entry.cause);
        assert!(why.iter().any(|c| c.contains("corrupt")), "{name}: {why:?}");
        assert_eq!(consumer.lag, 0, "{name} read on past the bad row");
    }
    assert_eq!(system_support::available(&f, "Stalls").await, 8);
    assert_eq!(system_support::metrics(&f.system, f.event).await.tickets_sold, 2);
}
