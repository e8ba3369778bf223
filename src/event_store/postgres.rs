//! The Postgres backend (feature `postgres`).
//!
//! Writes: one statement per [`append_batch`](EventStore::append_batch) and per group-commit
//! batch, `SELECT … FROM boxoffice_append(…)` (see its migration), run outside an explicit
//! transaction so it commits as it returns: one round trip. Inside it, the batch takes a
//! transaction advisory lock per stream (in a fixed order, so batches cannot deadlock), checks
//! expected versions and idempotency keys, reserves global positions through
//! `boxoffice_reserve_positions` and inserts every event and key with one statement each. After
//! the commit it wakes live subscribers with `pg_notify` in a separate asynchronous-commit
//! transaction (see `PostgresEventStore::notify` for why); subscribers also poll every
//! [`PostgresConfig::poll_interval`] as a safety net. The unique `(stream_id, stream_version)`
//! constraint stays as the last line of defence: inserts use `ON CONFLICT DO NOTHING`, and a race
//! that slips past the locks rolls the statement back (SQLSTATE 40001) and runs the batch again,
//! which then sees the winner: a typed [`EventStoreError::ConcurrencyConflict`], never a database
//! error.
//!
//! Reads of the global log return only rows below the *visibility frontier*: the lowest position
//! an appending transaction of this store that is still open may write (invariant I7, no skipped
//! event, even when transactions commit out of position order). Every append announces the lowest
//! position it may write with a transaction-level advisory lock, keyed by this store's events
//! table, taken before it draws positions from the sequence; a reader reads the sequence, then the
//! held locks (`pg_locks`), and only then, with a later snapshot, the rows below the smaller of the
//! two (`boxoffice_read_page`, which also returns the last committed position, read by a
//! statement of its own; the migration `..._frontier_from_own_appenders.sql` has the proof).
//! Only this store's appenders hold readers back: an open transaction in another database, on
//! another table or of another store leaves the frontier alone (invariant I14). An appending
//! transaction that stays open (say one of [`append_in_transaction`](PostgresEventStore::append_in_transaction)
//! the caller keeps open) holds readers back until it ends: readers lag, they never skip.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Executor, PgConnection, PgPool, Row};
use uuid::Uuid;

use super::group_commit::{AppendEach, GroupCommit};
use super::{
    AppendResult, CheckpointStore, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent,
    PageSource, RetryPolicy, Snapshot, StreamAppend, StreamId, Upcasters, is_plain_identifier, readable_prefix,
    subscription,
};

/// The tables of the event store's migration, checked by [`EventStore::ready`].
const REQUIRED_TABLES: [&str; 4] = ["events", "snapshots", "idempotency_keys", "checkpoints"];

const EVENT_COLUMNS: &str =
    "global_position, event_id, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at";

/// Pauses before running a whole batch again after a transient failure (deadlock, serialization
/// failure or an idempotency key committed by a concurrent append): short, jittered so racing
/// appenders spread out, and bounded (8 attempts in all) before the error is returned.
const APPEND_RETRY: RetryPolicy =
    RetryPolicy { min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(50), max_attempts: Some(7) };

/// Most extra passes [`PostgresEventStore::close`] makes, 10 ms apart, for connections sqlx's
/// `close` missed.
const CLOSE_PASSES: u32 = 100;

/// Connection and behaviour settings of a [`PostgresEventStore`].
///
/// ```
/// use std::time::Duration;
/// use boxoffice::event_store::PostgresConfig;
///
/// let config = PostgresConfig { max_connections: 16, acquire_timeout: Duration::from_secs(2), ..PostgresConfig::default() };
/// assert_eq!(config.read_batch_size, 1000);
/// ```
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// Largest number of pooled connections. Each live subscription additionally holds one
    /// dedicated connection for `LISTEN` once it has caught up.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long to wait for a pooled connection before failing.
    pub acquire_timeout: Duration,
    /// Whether the pool pings a connection before handing it out (one extra round trip per
    /// operation, in exchange for transparently replacing connections a server restart broke).
    pub test_before_acquire: bool,
    /// Server-side `statement_timeout` for every connection, if any.
    pub statement_timeout: Option<Duration>,
    /// Schema holding the tables and the crate's migration history (set as the only schema of
    /// the `search_path` by [`connect`](PostgresEventStore::connect); created by
    /// [`migrate`](PostgresEventStore::migrate) if missing); `None` uses the server default.
    /// Must be a plain lower-case identifier.
    pub schema: Option<String>,
    /// Events fetched per query by subscriptions.
    pub read_batch_size: usize,
    /// Longest time a live subscription waits without a notification before polling anyway.
    pub poll_interval: Duration,
    /// `LISTEN`/`NOTIFY` channel that wakes live subscriptions.
    pub notify_channel: String,
    /// Group commit: most single-stream [`append`](EventStore::append)s written in one
    /// transaction. Concurrent appends queue while [`group_commit_in_flight`](Self::group_commit_in_flight)
    /// transactions are running and the next free one takes them all, each keeping its own
    /// outcome (a stale expected version fails only that append). 1 turns group commit off: every
    /// append is its own transaction. [`append_batch`](EventStore::append_batch) is never grouped.
    pub group_commit_max_batch: usize,
    /// Group commit: most append transactions running at once from this store (at least 1).
    pub group_commit_in_flight: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            test_before_acquire: true,
            statement_timeout: None,
            schema: None,
            read_batch_size: 1000,
            poll_interval: Duration::from_millis(500),
            notify_channel: "boxoffice_events".to_owned(),
            group_commit_max_batch: 256,
            group_commit_in_flight: 2,
        }
    }
}

/// An [`EventStore`] (and [`CheckpointStore`]) on Postgres through a sqlx connection pool.
///
/// Create it with [`connect`](Self::connect) or [`from_pool`](Self::from_pool), then run
/// [`migrate`](Self::migrate) once. Clones share the pool. A live subscription waits on its own
/// `LISTEN` connection, but reads through the pool: keep polling subscriptions you hold (one left
/// unpolled in the middle of a read keeps that pooled connection until it is polled or dropped).
///
/// ```no_run
/// use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
///
/// # async fn demo() -> Result<(), boxoffice::event_store::EventStoreError> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1/boxoffice", PostgresConfig::default()).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresEventStore {
    pool: PgPool,
    config: Arc<PostgresConfig>,
    upcasters: Arc<Upcasters>,
    /// Present when group commit is on.
    group: Option<Arc<GroupCommit>>,
}

/// How the appends sharing one transaction relate.
#[derive(Clone, Copy)]
enum Grouping {
    /// [`EventStore::append_batch`]: the first failing append fails them all.
    AllOrNothing,
    /// Group commit: each append succeeds or fails on its own.
    Independent,
}

/// One outcome per append, in input order.
type Outcomes = Vec<Result<AppendResult, EventStoreError>>;

impl PostgresEventStore {
    /// Opens a pool to `url` with `config`.
    ///
    /// # Errors
    /// [`EventStoreError::Database`] when the URL or schema name is invalid or the server is
    /// unreachable.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self, EventStoreError> {
        let mut options: PgConnectOptions = url.parse()?;
        if let Some(schema) = &config.schema {
            if !is_plain_identifier(schema) {
                return Err(sqlx::Error::Configuration(format!("invalid schema name {schema:?}").into()).into());
            }
            options = options.options([("search_path", schema.as_str())]);
        }
        if let Some(timeout) = config.statement_timeout {
            options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(config.test_before_acquire)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool, config))
    }

    /// Wraps an existing pool (its connections must see the event store tables).
    #[must_use]
    pub fn from_pool(pool: PgPool, config: PostgresConfig) -> Self {
        let group = (config.group_commit_max_batch > 1)
            .then(|| Arc::new(GroupCommit::new(config.group_commit_max_batch, config.group_commit_in_flight)));
        Self { pool, config: Arc::new(config), upcasters: Arc::new(Upcasters::new()), group }
    }

    /// Uses `upcasters` on every read path of this handle.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The underlying pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations in `migrations/` (idempotent).
    ///
    /// With [`PostgresConfig::schema`] set, the schema is created first if it does not exist, and
    /// everything lands in it: the tables, the functions and sqlx's `_sqlx_migrations`
    /// bookkeeping table (sqlx creates it unqualified, so in the first schema of the
    /// `search_path`, which [`connect`](Self::connect) sets to that schema alone). An application
    /// sharing the database keeps its own sqlx migration history in its own schema, and neither
    /// migrator sees the other's rows: **this is the supported way to embed boxoffice**. (With
    /// [`from_pool`](Self::from_pool) the pool's own `search_path` decides where everything goes;
    /// the schema named in the configuration is only created.)
    ///
    /// Without a schema, the crate's rows share the default schema's `_sqlx_migrations` with any
    /// other migration history there. Rows the crate does not know are ignored
    /// ([`Migrator::set_ignore_missing`](sqlx::migrate::Migrator::set_ignore_missing)), so an
    /// application's history does not stop this; but the application's own migrator then sees
    /// the crate's rows and needs `set_ignore_missing(true)` too, and a version number both use
    /// makes the checksums clash ([`MigrateError::VersionMismatch`](sqlx::migrate::MigrateError)).
    /// The ignoring also means an older boxoffice runs against a schema migrated by a newer one
    /// without complaint.
    ///
    /// # Errors
    /// [`EventStoreError::Database`] when the schema name is invalid or the schema cannot be
    /// created; [`EventStoreError::Migration`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), EventStoreError> {
        if let Some(schema) = &self.config.schema {
            create_schema(&self.pool, schema).await?;
        }
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await.map_err(EventStoreError::Migration)
    }

    /// Closes the pool; later calls fail with [`EventStoreError::Closed`]. Waits until every
    /// pooled connection is closed (connections in use are closed as they are returned).
    pub async fn close(&self) {
        self.pool.close().await;
        // sqlx's `close` can return while a connection dropped just before is still on its way
        // back to the pool (that happens in a spawned task): it would then stay open, idle, until
        // the last handle to the pool is dropped. Further passes close it once it is back.
        for _ in 0..CLOSE_PASSES {
            if self.pool.size() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.pool.close().await;
        }
    }

    /// Runs `appends` inside a transaction the caller opened on `connection`, so events can be
    /// written atomically with the caller's own rows, before or after them. Until the caller's
    /// transaction ends, readers of the log stop short of its events (and of any appended after
    /// them), so keep it short. Live subscribers are notified when the caller commits. After an error the caller must roll
    /// back. A concurrent append that commits the same idempotency key first surfaces as
    /// [`EventStoreError::ConcurrencyConflict`]: reload and retry.
    ///
    /// # Errors
    /// As for [`EventStore::append_batch`].
    pub async fn append_in_transaction(
        &self,
        connection: &mut PgConnection,
        appends: &[StreamAppend],
    ) -> Result<Vec<AppendResult>, EventStoreError> {
        validate(appends)?;
        let Some(first) = appends.first() else { return Ok(Vec::new()) };
        match self.write(connection, appends, Grouping::AllOrNothing, true).await {
            Ok(written) => written.outcomes.into_iter().collect(),
            Err(EventStoreError::Database(error)) if is_race(&error) => Err(EventStoreError::ConcurrencyConflict {
                stream: first.stream.clone(),
                expected: first.expected,
                actual: self.stream_version(&first.stream).await?,
            }),
            Err(error) => Err(error),
        }
    }

    /// Decides and writes `appends` with one `boxoffice_append` statement on `connection` (see
    /// its migration, `..._append_function.sql`): it takes the stream locks, checks expected
    /// versions and idempotency keys, reserves positions and inserts the events and keys. Outside
    /// an explicit transaction the statement commits as it returns, so a whole batch is one round
    /// trip. `notify_in_transaction` notifies subscribers inside the statement, for a caller that
    /// commits the transaction itself.
    async fn write(
        &self,
        connection: &mut PgConnection,
        appends: &[StreamAppend],
        grouping: Grouping,
        notify_in_transaction: bool,
    ) -> Result<Written, EventStoreError> {
        let rows = AppendRows::of(appends)?;
        let decided: Vec<(i16, i64, i64, i64)> = sqlx::query_as(
            "SELECT outcome, version, first_position, last_position \
             FROM boxoffice_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(matches!(grouping, Grouping::AllOrNothing))
        .bind(stream_lock_keys(appends))
        .bind(&rows.streams)
        .bind(&rows.expected)
        .bind(&rows.counts)
        .bind(&rows.keys)
        .bind(&rows.metadata)
        .bind(&rows.event_ids)
        .bind(&rows.types)
        .bind(&rows.schema_versions)
        .bind(&rows.payloads)
        .bind(&rows.event_appends)
        .bind(notify_in_transaction.then_some(self.config.notify_channel.as_str()))
        .fetch_all(&mut *connection)
        .await?;
        if decided.len() != appends.len() {
            return Err(sqlx::Error::Protocol(format!(
                "boxoffice_append answered {} outcomes for {} appends",
                decided.len(),
                appends.len()
            ))
            .into());
        }
        let mut wrote = false;
        let outcomes = appends
            .iter()
            .zip(decided)
            .map(|(append, (outcome, version, first, last))| {
                let result = AppendResult {
                    stream_version: to_u64(version),
                    first_global_position: to_u64(first),
                    last_global_position: to_u64(last),
                };
                match outcome {
                    OUTCOME_WRITTEN => {
                        wrote = true;
                        Ok(result)
                    }
                    OUTCOME_REPLAYED => Ok(result),
                    OUTCOME_CONFLICT => Err(EventStoreError::ConcurrencyConflict {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual: to_u64(version),
                    }),
                    OUTCOME_KEY_REUSED => Err(EventStoreError::IdempotencyKeyReused {
                        key: append.idempotency_key.clone().unwrap_or_default(),
                        stream: append.stream.clone(),
                    }),
                    other => Err(sqlx::Error::Protocol(format!("boxoffice_append answered outcome {other}")).into()),
                }
            })
            .collect::<Outcomes>();
        // All or nothing: one refusal means nothing was written.
        let refused = outcomes.iter().any(Result::is_err);
        let wrote = wrote && !(refused && matches!(grouping, Grouping::AllOrNothing));
        Ok(Written { outcomes, wrote })
    }

    /// Wakes live subscribers after a commit. It runs as its own transaction with asynchronous
    /// commit: `NOTIFY` serialises committing transactions on a database-wide lock, and holding that
    /// lock across the event transaction's WAL flush would serialise every append. A lost wake-up
    /// (crash right after the event commit) only delays subscribers until their next poll.
    async fn notify(&self, connection: &mut PgConnection) {
        let channel = self.config.notify_channel.replace('\'', "''");
        let sql = format!("BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify('{channel}', ''); COMMIT;");
        if let Err(error) = connection.execute(sql.as_str()).await {
            tracing::warn!(%error, "could not notify event store subscribers; they will poll");
        }
    }

    /// Writes `appends` in one statement that commits as it returns, then wakes subscribers. A
    /// transient failure, or a race with a writer that bypassed the stream locks, runs it again
    /// after a short jittered pause ([`APPEND_RETRY`]); `Ok(None)` when the races never stopped.
    async fn commit(&self, appends: &[StreamAppend], grouping: Grouping) -> Result<Option<Outcomes>, EventStoreError> {
        let mut delays = APPEND_RETRY.backoff();
        loop {
            let mut connection = self.pool.acquire().await?;
            let error = match self.write(&mut connection, appends, grouping, false).await {
                Ok(written) => {
                    if written.wrote {
                        self.notify(&mut connection).await;
                    }
                    return Ok(Some(written.outcomes));
                }
                Err(EventStoreError::Database(error)) if is_transient(&error) => error,
                Err(error) => return Err(error),
            };
            drop(connection);
            match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None if is_race(&error) => return Ok(None),
                None => return Err(error.into()),
            }
        }
    }

    /// Up to `limit` readable events after `after` and the last committed position, in one
    /// statement (`boxoffice_read_page`): a subscription's page and its held-back check.
    async fn read_page(&self, after: u64, limit: usize) -> Result<(Vec<Envelope>, u64), EventStoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS}, last_committed FROM boxoffice_read_page($1, $2)");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.pool).await?;
        let last_committed = match rows.first() {
            Some(row) => to_u64(row.try_get("last_committed")?),
            None => 0,
        };
        // An empty page is one row without an event.
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("global_position")?.is_some() {
                events.push(self.decode(row));
            }
        }
        let page = readable_prefix(events)?;
        Ok((page, last_committed))
    }

    async fn fetch_events(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Envelope>, EventStoreError> {
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|row| self.decode(row)).collect()
    }

    /// One stored row as an upcast envelope.
    fn decode(&self, row: &PgRow) -> Result<Envelope, EventStoreError> {
        let mut envelope = decode_envelope(row)?;
        self.upcasters.apply(&mut envelope)?;
        Ok(envelope)
    }
}

/// Advisory lock keys of the batch's streams, sorted and deduplicated.
///
/// A per-stream transaction lock serialises appends to one stream, so version checks are
/// authoritative and `ExpectedVersion::Any` appenders never race. Every batch takes its keys in
/// ascending order, so two batches sharing streams cannot deadlock (a hash collision only adds
/// waiting, or a detected deadlock that is retried). Locks are not writes: no transaction id yet.
fn stream_lock_keys(appends: &[StreamAppend]) -> Vec<i64> {
    let keys: BTreeSet<i64> = appends
        .iter()
        .map(|append| {
            // FNV-1a, 64 bits: stable across processes and releases, unlike std's hasher.
            let hash = append.stream.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            i64::from_ne_bytes(hash.to_ne_bytes())
        })
        .collect();
    keys.into_iter().collect()
}

fn validate(appends: &[StreamAppend]) -> Result<(), EventStoreError> {
    match appends.iter().find(|a| a.events.is_empty()) {
        Some(empty) => Err(EventStoreError::EmptyAppend { stream: empty.stream.clone() }),
        None => Ok(()),
    }
}

/// `boxoffice_append`'s outcome of an append that was written.
const OUTCOME_WRITTEN: i16 = 0;
/// The outcome of an append answered with an earlier append's result (its idempotency key).
const OUTCOME_REPLAYED: i16 = 1;
/// The outcome of an append whose expected version did not match.
const OUTCOME_CONFLICT: i16 = 3;
/// The outcome of an append whose idempotency key names other events or another stream.
const OUTCOME_KEY_REUSED: i16 = 4;

/// What one `boxoffice_append` statement decided.
struct Written {
    /// One outcome per append, in input order.
    outcomes: Outcomes,
    /// Whether any event was written (so subscribers are worth waking).
    wrote: bool,
}

/// `boxoffice_append`'s arguments: one entry per append, then one per event.
struct AppendRows<'a> {
    streams: Vec<&'a str>,
    /// -1 for any version, else the exact version expected (0: no stream).
    expected: Vec<i64>,
    counts: Vec<i32>,
    keys: Vec<Option<&'a str>>,
    metadata: Vec<serde_json::Value>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a serde_json::Value>,
    /// The 1-based index of each event's append.
    event_appends: Vec<i32>,
}

impl<'a> AppendRows<'a> {
    fn of(appends: &'a [StreamAppend]) -> Result<Self, EventStoreError> {
        let events: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut rows = Self {
            streams: Vec::with_capacity(appends.len()),
            expected: Vec::with_capacity(appends.len()),
            counts: Vec::with_capacity(appends.len()),
            keys: Vec::with_capacity(appends.len()),
            metadata: Vec::with_capacity(appends.len()),
            event_ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            event_appends: Vec::with_capacity(events),
        };
        for (place, append) in (1..).zip(appends) {
            rows.streams.push(append.stream.as_str());
            rows.expected.push(match append.expected {
                ExpectedVersion::Any => -1,
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(version) => to_i64(version, "stream version")?,
            });
            rows.counts.push(
                i32::try_from(append.events.len())
                    .map_err(|_| EventStoreError::OutOfRange { what: "events in one append" })?,
            );
            rows.keys.push(append.idempotency_key.as_deref());
            rows.metadata.push(
                serde_json::to_value(&append.metadata)
                    .map_err(|source| EventStoreError::Encode { stream: append.stream.clone(), source })?,
            );
            for event in &append.events {
                rows.event_ids.push(event.event_id);
                rows.types.push(&event.event_type);
                rows.schema_versions.push(
                    i32::try_from(event.schema_version)
                        .map_err(|_| EventStoreError::OutOfRange { what: "schema version" })?,
                );
                rows.payloads.push(&event.payload);
                rows.event_appends.push(place);
            }
        }
        Ok(rows)
    }
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, EventStoreError> {
    i64::try_from(value).map_err(|_| EventStoreError::OutOfRange { what })
}

/// Stored positions and versions are never negative (check constraints and sequence start).
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `CREATE SCHEMA IF NOT EXISTS schema`. Two processes doing it at once can still collide in the
/// catalog (a unique violation, or `duplicate_schema`): the schema exists then, which is all
/// that was asked.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), EventStoreError> {
    if !is_plain_identifier(schema) {
        return Err(sqlx::Error::Configuration(format!("invalid schema name {schema:?}").into()).into());
    }
    match pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str()).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) if matches!(error.code().as_deref(), Some("23505" | "42P06")) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn decode_envelope(row: &PgRow) -> Result<Envelope, EventStoreError> {
    let global_position = to_u64(row.try_get("global_position")?);
    let corrupt = |source: BoxError| EventStoreError::Corrupt { global_position, source };
    let stream_id = StreamId::new(row.try_get::<String, _>("stream_id")?).map_err(|e| corrupt(e.into()))?;
    let Json(metadata): Json<Metadata> = row.try_get("metadata").map_err(|e| corrupt(e.into()))?;
    let schema_version: i32 = row.try_get("schema_version")?;
    Ok(Envelope {
        event_id: row.try_get("event_id")?,
        stream_id,
        stream_version: to_u64(row.try_get("stream_version")?),
        global_position,
        event_type: row.try_get::<String, _>("event_type")?.into(),
        schema_version: u32::try_from(schema_version).map_err(|e| corrupt(e.into()))?,
        payload: Arc::new(row.try_get("payload")?),
        metadata: Arc::new(metadata),
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
    })
}

/// A unique violation (SQLSTATE 23505) of `(stream_id, stream_version)`.
fn is_stream_version_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().is_some_and(|code| code == "23505") && e.constraint() == Some("events_stream_version_unique")
    })
}

/// A race with a writer that bypassed the stream locks, as `boxoffice_append` reports it
/// (SQLSTATE 40001, serialization failure): running the batch again sees the winner.
fn is_race(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(sqlx::error::DatabaseError::code).is_some_and(|code| code == "40001")
}

fn is_transient(error: &sqlx::Error) -> bool {
    // 40001 serialization failure, 40P01 deadlock detected.
    error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "40001" || code == "40P01")
}

#[async_trait]
impl AppendEach for PostgresEventStore {
    async fn append_each(&self, appends: Vec<StreamAppend>) -> Vec<Result<AppendResult, EventStoreError>> {
        if appends.len() > 1 {
            match self.commit(&appends, Grouping::Independent).await {
                Ok(Some(outcomes)) => return outcomes,
                Ok(None) => tracing::warn!(
                    appends = appends.len(),
                    "group commit kept racing with writers that bypass the stream locks; appending one at a time"
                ),
                Err(error) => {
                    tracing::warn!(%error, appends = appends.len(), "group commit failed; appending one at a time");
                }
            }
        }
        let mut outcomes = Vec::with_capacity(appends.len());
        for append in appends {
            let stream = append.stream.clone();
            let written = self.append_batch(vec![append]).await;
            outcomes.push(written.and_then(|mut results| results.pop().ok_or(EventStoreError::EmptyAppend { stream })));
        }
        outcomes
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    /// Joins the store's group commit when it is on (see [`PostgresConfig::group_commit_max_batch`]).
    #[tracing::instrument(
        name = "event_store.append",
        skip_all,
        fields(stream = stream.as_str(), correlation_id = ?metadata.correlation_id),
    )]
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Result<AppendResult, EventStoreError> {
        let append = StreamAppend::of(stream, expected, events, metadata, idempotency_key);
        match &self.group {
            Some(group) => {
                validate(std::slice::from_ref(&append))?;
                group.submit(self, append).await
            }
            None => self
                .append_each(vec![append])
                .await
                .pop()
                .unwrap_or(Err(EventStoreError::EmptyAppend { stream: stream.clone() })),
        }
    }

    #[tracing::instrument(
        name = "event_store.append_batch",
        skip_all,
        fields(
            appends = appends.len(),
            stream = appends.first().map(|a| a.stream.as_str()),
            correlation_id = ?appends.first().and_then(|a| a.metadata.correlation_id),
        )
    )]
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        validate(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let conflict = async || {
            let append = &appends[0];
            Err(EventStoreError::ConcurrencyConflict {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: self.stream_version(&append.stream).await?,
            })
        };
        match self.commit(&appends, Grouping::AllOrNothing).await {
            Ok(Some(outcomes)) => outcomes.into_iter().collect(),
            Ok(None) => conflict().await,
            // Defensive: the insert's ON CONFLICT clause already absorbs these.
            Err(EventStoreError::Database(error)) if is_stream_version_violation(&error) => conflict().await,
            Err(error) => Err(error),
        }
    }

    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
        );
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        self.fetch_events(sqlx::query(&sql).bind(stream.as_str()).bind(from)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        let version: i64 =
            sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1")
                .bind(stream.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(version))
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.read_page(after_position, limit).await.map(|(page, _)| page)
    }

    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        let source = Notifications { store: self.clone(), listener: None, held_back: None };
        subscription(source, after_position, self.config.read_batch_size)
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        let head: i64 = sqlx::query_scalar("SELECT boxoffice_head_position()").fetch_one(&self.pool).await?;
        Ok(to_u64(head))
    }

    /// Checks that the event store's tables are visible on the configured `search_path` (the
    /// schema of [`PostgresConfig::schema`]), without creating anything.
    async fn ready(&self) -> Result<(), EventStoreError> {
        let (schema, missing): (Option<String>, Vec<String>) = sqlx::query_as(
            "SELECT coalesce(current_schema()::text, current_setting('search_path')), \
             coalesce(array_agg(t ORDER BY n) FILTER (WHERE to_regclass(t) IS NULL), '{}') \
             FROM unnest($1::text[]) WITH ORDINALITY AS required(t, n)",
        )
        .bind(REQUIRED_TABLES.to_vec())
        .fetch_one(&self.pool)
        .await?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(EventStoreError::NotMigrated { schema: schema.unwrap_or_default(), missing: missing.join(", ") })
    }

    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        let last: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(&self.pool).await?;
        Ok(to_u64(last))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, stream_version, schema_version, state) VALUES ($1, $2, $3, $4::json) \
             ON CONFLICT (stream_id) DO UPDATE SET stream_version = excluded.stream_version, \
             schema_version = excluded.schema_version, state = excluded.state, saved_at = now() \
             WHERE snapshots.stream_version <= excluded.stream_version",
        )
        .bind(snapshot.stream_id.as_str())
        .bind(to_i64(snapshot.stream_version, "stream version")?)
        .bind(
            i32::try_from(snapshot.schema_version)
                .map_err(|_| EventStoreError::OutOfRange { what: "schema version" })?,
        )
        .bind(&snapshot.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        let row = sqlx::query("SELECT stream_version, schema_version, state::text FROM snapshots WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let schema_version: i32 = row.try_get(1)?;
        Ok(Some(Snapshot {
            stream_id: stream.clone(),
            stream_version: to_u64(row.try_get(0)?),
            state: row.try_get(2)?,
            schema_version: u32::try_from(schema_version).unwrap_or(0),
        }))
    }
}

/// The first pause before reading again when committed events are held back.
const HELD_BACK_FIRST_PAUSE: Duration = Duration::from_millis(2);

/// The `PostgreSQL` side of a subscription: pages of the readable log, woken by `LISTEN`/`NOTIFY`
/// on a dedicated connection, with [`PostgresConfig::poll_interval`] as the safety net for a lost
/// notification or a broken listener.
struct Notifications {
    store: PostgresEventStore,
    listener: Option<PgListener>,
    /// The last read stopped short of an event that is committed but not readable yet (an older
    /// appending transaction is still open). That transaction's end sends no notification when it
    /// rolls back, so the next wait ends at the next notification or after this pause, which grows
    /// while reads find nothing new.
    held_back: Option<std::time::Duration>,
}

#[async_trait]
impl PageSource for Notifications {
    async fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        let (page, last_committed) = self.store.read_page(after, limit).await?;
        let read_to = page.last().map_or(after, |e| e.global_position);
        let held_back = page.len() < limit && last_committed > read_to;
        self.held_back = match (held_back, self.held_back) {
            (false, _) => None,
            (true, Some(pause)) if page.is_empty() => Some((pause * 2).min(self.store.config.poll_interval)),
            (true, _) => Some(HELD_BACK_FIRST_PAUSE),
        };
        Ok(page)
    }

    async fn wait(&mut self) -> Result<(), EventStoreError> {
        let config = &self.store.config;
        let Some(listener) = self.listener.as_mut() else {
            // A dedicated connection outside the main pool, so idle subscriptions never starve
            // appends of pooled connections. Once it listens, the cursor reads again before the
            // first real wait: events committed before `LISTEN` sent no wake-up.
            let listener_pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(config.acquire_timeout)
                .connect_lazy_with((*self.store.pool.connect_options()).clone());
            let listening = match PgListener::connect_with(&listener_pool).await {
                Ok(mut listener) => listener.listen(&config.notify_channel).await.map(|()| listener),
                Err(error) => Err(error),
            };
            match listening {
                Ok(listener) => self.listener = Some(listener),
                Err(sqlx::Error::PoolClosed) => return Err(EventStoreError::Closed),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for event store notifications; polling");
                    tokio::time::sleep(config.poll_interval).await;
                }
            }
            return Ok(());
        };
        let pause = self.held_back.unwrap_or(config.poll_interval);
        match tokio::time::timeout(pause, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(sqlx::Error::PoolClosed)) => Err(EventStoreError::Closed),
            Ok(Err(error)) => {
                // Dropped and re-created on the next wait; the read in between covers the gap.
                tracing::warn!(%error, "event store listener failed; reconnecting");
                self.listener = None;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl CheckpointStore for PostgresEventStore {
    async fn load_checkpoint(&self, name: &str) -> Result<u64, EventStoreError> {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(position.map_or(0, to_u64))
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
        )
        .bind(name)
        .bind(to_i64(position, "checkpoint position")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn advance_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = GREATEST(checkpoints.position, excluded.position), \
             updated_at = now()",
        )
        .bind(name)
        .bind(to_i64(position, "checkpoint position")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
