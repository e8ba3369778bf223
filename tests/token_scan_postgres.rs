//! Invariant I13, "no payment token at rest", with durable storage: the token-scan scenario (see
//! `tests/token_scan_support`) over a `PostgreSQL` event store, checkpoints and read models, with
//! the outbox relay publishing to a Kafka-protocol broker. Afterwards no payment token may be in
//! any row of any table of the database (events, snapshots, checkpoints, read models, whatever
//! exists), in any message on the relay's topics (key, payload, headers), in the tracing output
//! or in any error message. Needs `DATABASE_URL` and `KAFKA_BROKERS` (scripts/test-services.sh
//! sets both) and fails, never skips, without them. One test in this binary: it installs the
//! process-wide capturing subscriber.
#![cfg(all(feature = "postgres", feature = "kafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod system_support;
mod token_scan_support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_bus::{EventBus, KafkaConfig, KafkaEventBus};
use boxoffice::event_store::EventStore;
use boxoffice::projections::PostgresReadModels;
use boxoffice::system::ReadModelStorage;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use sqlx::{Connection, PgConnection, Row};
use token_scan_support::{
    ERRORS, KAFKA, LOG, READ_MODELS, REPLIES, SNAPSHOTS, Scanner, Setup, TABLES, TRACES, capture_traces,
    expect_canaries, run_scenario, scan_log, scan_memory_texts, scan_read_models, scan_snapshots, topics_of, within,
};
use uuid::Uuid;

fn kafka_config() -> KafkaConfig {
    let mut config = KafkaConfig::from_env().unwrap_or_else(|e| {
        panic!("the token scan needs a Kafka broker: set KAFKA_BROKERS (scripts/test-services.sh does): {e}")
    });
    // Topics of this run only, so the scan reads exactly what this run's relay published.
    config.topic_prefix = format!("tokscan{}", &Uuid::new_v4().simple().to_string()[..12]);
    config.partitions = 2;
    config.session_timeout = Some(Duration::from_secs(6));
    config.fetch_wait_max = Some(Duration::from_millis(10));
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Every row of every table in every non-system schema of the database, as text (and so also
/// in our fresh schema: events, snapshots, idempotency keys, checkpoints, read-model tables,
/// dedup, migrations). Returns the qualified names of the tables scanned.
async fn scan_tables(scanner: &mut Scanner, url: &str) -> BTreeSet<String> {
    let mut db =
        PgConnection::connect(url).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
    let tables = sqlx::query(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg_toast%' \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut tables_seen = BTreeSet::new();
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let sql = format!("SELECT t::text FROM {}.{} t", quote(&schema), quote(&table));
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(&mut db)
            .await
            .unwrap_or_else(|e| panic!("cannot read {schema}.{table}: {e}"));
        let place = format!("{schema}.{table}");
        // An empty table still counts as scanned, with nothing in it.
        scanner.scan(TABLES, &format!("{place} ({} rows)", rows.len()), "");
        for (n, text) in rows.iter().enumerate() {
            scanner.scan(TABLES, &format!("{place} row {n}"), text);
        }
        tables_seen.insert(place);
    }
    db.close().await.unwrap();
    tables_seen
}

/// Every message on the topics with `prefix`, read raw from the beginning in a fresh group, until
/// each topic has given at least `expected[topic]` messages (then a short linger for duplicates):
/// key, payload and every header. Checks the broker has no other topic with the prefix.
async fn scan_kafka(scanner: &mut Scanner, config: &KafkaConfig, expected: &HashMap<String, usize>) -> usize {
    let group = format!("token-scan-{}", Uuid::new_v4().simple());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let metadata = tokio::task::block_in_place(|| consumer.fetch_metadata(None, Duration::from_secs(10))).unwrap();
    let on_broker: BTreeSet<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| name.starts_with(&format!("{}-", config.topic_prefix)))
        .collect();
    let wanted: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(on_broker, wanted, "the relay published to exactly the topics of the log's streams");
    let names: Vec<&str> = on_broker.iter().map(String::as_str).collect();
    consumer.subscribe(&names).unwrap();

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut messages = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut linger: Option<tokio::time::Instant> = None;
    loop {
        let until = linger.unwrap_or(deadline);
        let Ok(next) = tokio::time::timeout_at(until, consumer.recv()).await else { break };
        let message = next.unwrap_or_else(|e| panic!("consuming {names:?}: {e}"));
        messages += 1;
        *seen.entry(message.topic().to_owned()).or_default() += 1;
        let place = format!("{} [{}] @{}", message.topic(), message.partition(), message.offset());
        scanner.scan(KAFKA, &format!("{place} key"), &String::from_utf8_lossy(message.key().unwrap_or_default()));
        scanner.scan(
            KAFKA,
            &format!("{place} payload"),
            &String::from_utf8_lossy(message.payload().unwrap_or_default()),
        );
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                scanner.scan(KAFKA, &format!("{place} header"), &format!("{}={value}", header.key));
            }
        }
        if linger.is_none() && expected.iter().all(|(topic, n)| seen.get(topic).copied().unwrap_or(0) >= *n) {
            linger = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
    }
    for (topic, n) in expected {
        let got = seen.get(topic).copied().unwrap_or(0);
        assert!(got >= *n, "{topic}: {got} messages read back, {n} events of the log belong there");
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_payment_token_at_rest_in_postgres_and_kafka() {
    let traces = capture_traces();
    let url = system_support::postgres::database_url();
    let config = kafka_config();
    let bus: Arc<dyn EventBus> = Arc::new(
        within("connecting to Kafka", KafkaEventBus::connect(config.clone()))
            .await
            .unwrap_or_else(|e| panic!("KAFKA_BROKERS={} is unreachable: {e}", config.brokers)),
    );
    let pg = Arc::new(system_support::postgres::fresh_store().await);
    let store: Arc<dyn EventStore> = pg.clone();
    let setup = Setup {
        store: Arc::clone(&store),
        checkpoints: pg.clone(),
        read_models: ReadModelStorage::Postgres(PostgresReadModels::new(pg.pool().clone())),
        bus: Some((bus, config.router())),
    };
    let run = run_scenario(&setup).await;

    let mut scanner = Scanner::new(&run.tokens);
    expect_canaries(&mut scanner, &run);
    scanner.expect(TABLES, run.canary.clone());
    scanner.expect(KAFKA, run.canary.clone());
    let log = scan_log(&mut scanner, &store).await;
    let snapshots = scan_snapshots(&mut scanner, &store, &log).await;
    scan_read_models(&mut scanner, &run).await;
    within("shutdown", run.system.shutdown()).await;

    let tables = scan_tables(&mut scanner, &url).await;
    let schema = tables.iter().find(|t| t.ends_with(".events")).map(|t| t.trim_end_matches(".events").to_owned());
    let schema = schema.unwrap_or_else(|| panic!("no events table among {tables:?}"));
    for table in ["events", "snapshots", "checkpoints", "rm_sections", "rm_reservations", "rm_purchases"] {
        assert!(tables.contains(&format!("{schema}.{table}")), "{schema}.{table} was not scanned: {tables:?}");
    }
    let messages = within("reading Kafka", scan_kafka(&mut scanner, &config, &topics_of(&log, &config.router()))).await;
    scan_memory_texts(&mut scanner, &run, &traces);
    eprintln!(
        "{} payments with unique tokens, {} events, {snapshots} snapshots, {} tables, {messages} Kafka messages",
        run.tokens.len(),
        log.len(),
        tables.len()
    );
    scanner.assert_clean(&[LOG, SNAPSHOTS, READ_MODELS, REPLIES, ERRORS, TRACES, TABLES, KAFKA]);
}
