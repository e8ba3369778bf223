//! Embedding boxoffice in an application's own `PostgreSQL` database: its tables and its migration
//! bookkeeping live in a schema of their own (`DATABASE_SCHEMA`), next to the application's own
//! sqlx migration history without disturbing it; and a system shut down leaves no connection
//! open, `LISTEN` included. Needs `DATABASE_URL` (any database on the server: each test creates
//! its own).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fresh_database;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::aggregates::Section;
use boxoffice::event_store::{CheckpointStore, EventStore, EventStoreError, PostgresConfig, PostgresEventStore};
use boxoffice::prelude::*;
use boxoffice::system::{EventSpec, ReserveRequest, SystemConfig, TicketingSystem};
use chrono::Utc;
use fresh_database::{database_name, drop_database, fresh_database};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, PgConnection};

/// The application's own migrations, as `sqlx::migrate!` would embed them: a history in the
/// default schema that knows nothing of boxoffice.
fn app_migrator() -> Migrator {
    let migration = |version: i64, description: &'static str, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
    };
    Migrator {
        migrations: Cow::Owned(vec![
            migration(1, "app users", "CREATE TABLE app_users (id bigint PRIMARY KEY, name text NOT NULL)"),
            migration(2, "app orders", "CREATE TABLE app_orders (id bigint PRIMARY KEY, user_id bigint NOT NULL)"),
        ]),
        ..Migrator::DEFAULT
    }
}

/// `(schema, table)` of every base table of the database outside the system catalogs.
async fn tables(connection: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1, 2",
    )
    .fetch_all(connection)
    .await
    .unwrap()
}

/// `(version, checksum)` of every row of `schema`'s `_sqlx_migrations`.
async fn history(connection: &mut PgConnection, schema: &str) -> Vec<(i64, Vec<u8>)> {
    sqlx::query_as(&format!("SELECT version, checksum FROM {schema}._sqlx_migrations ORDER BY version"))
        .fetch_all(connection)
        .await
        .unwrap()
}

const BOXOFFICE_TABLES: [&str; 19] = [
    "_sqlx_migrations",
    "checkpoints",
    "event_bus_dedup",
    "events",
    "idempotency_keys",
    "rm_customer_spent",
    "rm_daily_sales",
    "rm_event_sales",
    "rm_gate_checkins",
    "rm_gate_reservations",
    "rm_held_tickets",
    "rm_orders",
    "rm_purchases",
    "rm_refund_splits",
    "rm_reservations",
    "rm_seats",
    "rm_section_sales",
    "rm_sections",
    "snapshots",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crate_migrations_in_their_own_schema_leave_the_apps_history_alone() {
    let url = fresh_database("embed_schema").await;
    let mut admin = PgConnection::connect(&url).await.unwrap();
    app_migrator().run(&mut admin).await.unwrap();
    let app_history = history(&mut admin, "public").await;
    assert_eq!(app_history.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [1, 2]);

    // The schema does not exist yet: migrating creates it.
    let config = PostgresConfig { schema: Some("ticketing".to_owned()), ..PostgresConfig::default() };
    let store = PostgresEventStore::connect(&url, config).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.save_checkpoint("probe", 7).await.unwrap();
    assert_eq!(store.load_checkpoint("probe").await.unwrap(), 7);
    assert_eq!(store.head_position().await.unwrap(), 0);
    store.close().await;

    assert_eq!(history(&mut admin, "public").await, app_history, "the app's migration history is untouched");
    let crate_history = history(&mut admin, "ticketing").await;
    assert_eq!(
        crate_history.len(),
        crate_migrations(),
        "the crate's bookkeeping lives in its schema: {crate_history:?}"
    );
    assert!(crate_history.iter().all(|(v, _)| *v > 2));
    let all = tables(&mut admin).await;
    let public: Vec<&str> = all.iter().filter(|(s, _)| s == "public").map(|(_, t)| t.as_str()).collect();
    assert_eq!(public, ["_sqlx_migrations", "app_orders", "app_users"], "nothing of boxoffice in public: {all:?}");
    let ours: Vec<&str> = all.iter().filter(|(s, _)| s == "ticketing").map(|(_, t)| t.as_str()).collect();
    assert_eq!(ours, BOXOFFICE_TABLES, "every boxoffice table is in its schema: {all:?}");
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.proname LIKE 'boxoffice%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!functions.is_empty() && functions.iter().all(|s| s == "ticketing"), "functions: {functions:?}");

    // The app can still migrate further with its own migrator: boxoffice's rows are not in its table.
    let mut grown = app_migrator();
    grown.migrations.to_mut().push(Migration::new(
        3,
        Cow::Borrowed("app coupons"),
        MigrationType::Simple,
        Cow::Borrowed("CREATE TABLE app_coupons (code text PRIMARY KEY)"),
        false,
    ));
    grown.run(&mut admin).await.unwrap();
    assert_eq!(history(&mut admin, "public").await.len(), 3);
    admin.close().await.unwrap();
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crate_migrations_in_the_default_schema_tolerate_the_apps_rows() {
    let url = fresh_database("embed_default").await;
    let mut admin = PgConnection::connect(&url).await.unwrap();
    app_migrator().run(&mut admin).await.unwrap();
    let store = PostgresEventStore::connect(&url, PostgresConfig::default()).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let versions: Vec<i64> = history(&mut admin, "public").await.into_iter().map(|(v, _)| v).collect();
    assert_eq!(
        versions.len(),
        2 + crate_migrations(),
        "the app's two rows and the crate's share the table: {versions:?}"
    );
    assert_eq!(&versions[..2], [1, 2]);
    admin.close().await.unwrap();
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_is_refused_before_connecting() {
    let config = PostgresConfig { schema: Some("Public; DROP".to_owned()), ..PostgresConfig::default() };
    let refused = PostgresEventStore::connect("postgres://nobody@127.0.0.1:1/none", config).await;
    assert!(matches!(refused, Err(EventStoreError::Database(_))), "{refused:?}");
}

fn config_for(url: &str, schema: Option<&str>) -> SystemConfig {
    SystemConfig::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.to_owned()),
        "DATABASE_MAX_CONNECTIONS" => Some("4".to_owned()),
        "DATABASE_SCHEMA" => schema.map(str::to_owned),
        "PAYMENT_GATEWAY" => Some("simulated".to_owned()),
        _ => None,
    })
    .unwrap()
}

/// Creates an event, opens its sales, and buys two seats.
async fn buy_something(system: &TicketingSystem) {
    let eur = Currency::new("EUR").unwrap();
    let stalls = SectionName::new("stalls").unwrap();
    let event = system
        .create_event(EventSpec {
            name: "Matinee".into(),
            venue: Venue::new(VenueId::new_v4(), "Royal Hall").unwrap(),
            date: Utc::now() + chrono::Duration::days(30),
            sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(10).unwrap() }],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, stalls.clone(), Money::new(4_500, eur), None).unwrap(),
            ],
            policy: SalesPolicy::default(),
        })
        .await
        .unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    let hold = system
        .reserve(ReserveRequest {
            event_id: event,
            section: stalls,
            quantity: 2,
            customer_id: CustomerId::new_v4(),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let receipt = system.pay(hold.reservation_id, PaymentDetails { token: "tok_test".into() }).await.unwrap();
    assert_eq!(receipt.seats.len(), 2);
    system.settled().await.unwrap();
}

/// Connections to `url`'s database other than `admin`'s own.
async fn connections(admin: &mut PgConnection, url: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(database_name(url))
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Connections to `url`'s database whose last statement was a `LISTEN`.
async fn listening(admin: &mut PgConnection, url: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %'",
    )
    .bind(database_name(url))
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Waits (at most 10 s) until `url`'s database has no connection but `admin`'s; returns the last count.
async fn wait_for_no_connections(admin: &mut PgConnection, url: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = connections(admin, url).await;
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(application_name, state, query)` of every connection but `admin`'s, for failure messages.
async fn who(admin: &mut PgConnection, url: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database_name(url))
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_system_built_from_config_with_database_schema_keeps_everything_in_that_schema() {
    let url = fresh_database("embed_config").await;
    let mut admin = PgConnection::connect(&url).await.unwrap();
    app_migrator().run(&mut admin).await.unwrap();
    let config = config_for(&url, Some("boxoffice"));
    assert_eq!(config.database_schema.as_deref(), Some("boxoffice"));
    let system = TicketingSystem::builder_from_config(&config).await.unwrap().build().await.unwrap();
    buy_something(&system).await;
    system
        .wait_for_read_models(system.event_store().last_committed_position().await.unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    let sold: i64 =
        sqlx::query_scalar("SELECT count(*) FROM boxoffice.rm_purchases").fetch_one(&mut admin).await.unwrap();
    assert_eq!(sold, 1, "the read models live in the schema too");
    let checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM boxoffice.checkpoints").fetch_one(&mut admin).await.unwrap();
    assert!(checkpoints > 0, "so do the checkpoints");
    system.shutdown().await;
    drop(system);
    let all = tables(&mut admin).await;
    let public: Vec<&str> = all.iter().filter(|(s, _)| s == "public").map(|(_, t)| t.as_str()).collect();
    assert_eq!(public, ["_sqlx_migrations", "app_orders", "app_users"], "nothing of boxoffice in public: {all:?}");
    let ours: Vec<&str> = all.iter().filter(|(s, _)| s == "boxoffice").map(|(_, t)| t.as_str()).collect();
    assert_eq!(ours, BOXOFFICE_TABLES, "every boxoffice table is in its schema: {all:?}");
    assert_eq!(history(&mut admin, "public").await.len(), 2, "the app's history is untouched");
    admin.close().await.unwrap();
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_every_connection_a_system_built_from_config_opened() {
    let url = fresh_database("embed_shutdown").await;
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let system = TicketingSystem::builder_from_config(&config_for(&url, None)).await.unwrap().build().await.unwrap();
    buy_something(&system).await;
    assert!(connections(&mut admin, &url).await > 0, "the system is connected");
    let handle = system.clone();
    system.shutdown().await;
    // Closed by shutdown itself, while handles to the system are still around...
    let open = wait_for_no_connections(&mut admin, &url).await;
    assert_eq!(open, 0, "connections left after shutdown: {:?}", who(&mut admin, &url).await);
    let refused = handle.event_store().head_position().await;
    assert!(matches!(refused, Err(EventStoreError::Closed)), "the system's pool is closed: {refused:?}");
    // ...and nothing reopens when they go.
    drop((system, handle));
    assert_eq!(connections(&mut admin, &url).await, 0, "{:?}", who(&mut admin, &url).await);
    admin.close().await.unwrap();
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_supplied_store_stays_open_after_shutdown_but_the_systems_listeners_end() {
    let url = fresh_database("embed_own_store").await;
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let store = PostgresEventStore::connect(&url, PostgresConfig { max_connections: 4, ..PostgresConfig::default() })
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let shared = Arc::new(store.clone());
    let system = TicketingSystem::builder()
        .event_store(Arc::clone(&shared) as Arc<dyn EventStore>)
        .checkpoints(shared)
        .payment_gateway(Arc::new(boxoffice::system::SimulatedGateway::always_succeed()))
        .build()
        .await
        .unwrap();
    buy_something(&system).await;
    assert!(listening(&mut admin, &url).await > 0, "the system's subscription listens");
    system.shutdown().await;
    // The system's LISTEN connection ends with shutdown, even with the system still around.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening(&mut admin, &url).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listening(&mut admin, &url).await, 0, "{:?}", who(&mut admin, &url).await);
    drop(system);

    // The user's store still works after the system is gone.
    let head = store.head_position().await.unwrap();
    assert!(head > 0);
    // Once the user closes it, nothing is left: the system's LISTEN connections ended with it.
    store.close().await;
    let open = wait_for_no_connections(&mut admin, &url).await;
    assert_eq!(open, 0, "connections left after closing the user's store: {:?}", who(&mut admin, &url).await);
    admin.close().await.unwrap();
    drop_database(&url).await;
}

/// How many migrations the crate ships (its `migrations` folder).
fn crate_migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "sql"))
        .count()
}
