//! The Postgres backend (feature `postgres`).
//!
//! Writes: one transaction per [`append_batch`](EventStore::append_batch). It takes a transaction
//! advisory lock per stream (in a fixed order, so batches cannot deadlock), checks expected versions
//! and idempotency keys, reserves global positions through `boxoffice_reserve_positions` (see the
//! migration) and inserts every event with one statement. After the commit it wakes live
//! subscribers with `pg_notify` in a separate asynchronous-commit transaction (see
//! `PostgresEventStore::notify` for why); subscribers also poll every
//! [`PostgresConfig::poll_interval`] as a safety net. The unique `(stream_id, stream_version)` constraint stays as the last line of defence:
//! inserts use `ON CONFLICT DO NOTHING`, so a race that slips past the lock becomes a typed
//! [`EventStoreError::ConcurrencyConflict`] after a rollback, never a database error or an aborted
//! transaction left in use.
//!
//! Reads of the global log return only rows below the *visibility frontier*: the lowest position
//! an appending transaction of this store that is still open may write (invariant I7, no skipped
//! event, even when transactions commit out of position order). Every append announces the lowest
//! position it may write with a transaction-level advisory lock, keyed by this store's events
//! table, taken before it draws positions from the sequence; a reader reads the sequence, then the
//! held locks (`pg_locks`), and only then, with a later snapshot, the rows below the smaller of the
//! two (`boxoffice_read_all`; the migration `..._frontier_from_own_appenders.sql` has the proof).
//! Only this store's appenders hold readers back: an open transaction in another database, on
//! another table or of another store leaves the frontier alone (invariant I14). An appending
//! transaction that stays open (say one of [`append_in_transaction`](PostgresEventStore::append_in_transaction)
//! the caller keeps open) holds readers back until it ends: readers lag, they never skip.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
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

/// What one attempt at a batch ended with.
enum Attempt<T = Vec<AppendResult>> {
    Done(T),
    /// A transient race; the transaction was rolled back and the batch can run again.
    Retry,
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
        match self.write_batch(connection, appends, true, false).await? {
            Attempt::Done(results) => Ok(results),
            Attempt::Retry => Err(EventStoreError::ConcurrencyConflict {
                stream: first.stream.clone(),
                expected: first.expected,
                actual: self.stream_version(&first.stream).await?,
            }),
        }
    }

    async fn write_batch(
        &self,
        connection: &mut PgConnection,
        appends: &[StreamAppend],
        notify_in_transaction: bool,
        already_locked: bool,
    ) -> Result<Attempt, EventStoreError> {
        let (versions, known_keys) = lock_and_read(connection, appends, already_locked).await?;
        let plan = plan(appends, &versions, &known_keys)?;
        let appends: Vec<&StreamAppend> = appends.iter().collect();
        self.write_planned(connection, &appends, plan, notify_in_transaction).await
    }

    /// Writes the appends `plan` (made under the stream locks this transaction holds) accepts.
    async fn write_planned(
        &self,
        connection: &mut PgConnection,
        appends: &[&StreamAppend],
        plan: Vec<Planned>,
        notify_in_transaction: bool,
    ) -> Result<Attempt, EventStoreError> {
        let total: u64 = plan.iter().map(|p| if let Planned::Write { count, .. } = p { *count } else { 0 }).sum();
        if total == 0 {
            let mut results: Vec<AppendResult> = Vec::with_capacity(plan.len());
            for planned in plan {
                match planned {
                    Planned::Replay(result) => results.push(result),
                    Planned::SameAs(index) => results.push(results[index]),
                    Planned::Write { .. } => {}
                }
            }
            return Ok(Attempt::Done(results));
        }

        let mut rows = EventRows::default();
        // Positions are only known once reserved, in the insert statement: results are first built
        // relative to the first reserved position.
        let mut next_offset = 0;
        let mut slots = Vec::with_capacity(appends.len());
        let writes: Vec<bool> = plan.iter().map(|p| matches!(p, Planned::Write { .. })).collect();
        for (append, planned) in appends.iter().zip(plan) {
            let (current, count) = match planned {
                Planned::Replay(result) => {
                    slots.push((result, false));
                    continue;
                }
                Planned::SameAs(index) => {
                    slots.push(slots[index]);
                    continue;
                }
                Planned::Write { current, count } => (current, count),
            };
            let metadata = serde_json::to_value(&append.metadata)
                .map_err(|source| EventStoreError::Encode { stream: append.stream.clone(), source })?;
            for (offset, event) in (0..).zip(&append.events) {
                rows.push(append, event, metadata.clone(), next_offset + offset, current + offset + 1)?;
            }
            let relative = AppendResult {
                stream_version: current + count,
                first_global_position: next_offset,
                last_global_position: next_offset + count - 1,
            };
            slots.push((relative, true));
            next_offset += count;
        }

        let Some(first) = insert_events(connection, total, &rows, appends).await? else {
            return Ok(Attempt::Retry);
        };
        let results: Vec<AppendResult> = slots
            .into_iter()
            .map(|(result, relative)| {
                if relative {
                    AppendResult {
                        stream_version: result.stream_version,
                        first_global_position: first + result.first_global_position,
                        last_global_position: first + result.last_global_position,
                    }
                } else {
                    result
                }
            })
            .collect();

        let mut new_keys = KeyRows::default();
        for ((append, planned), result) in appends.iter().zip(&writes).zip(&results) {
            if let (Some(key), true) = (&append.idempotency_key, *planned) {
                new_keys.push(key, append, *result)?;
            }
        }
        if !new_keys.keys.is_empty() {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, stream_id, event_ids, stream_version, first_global_position, last_global_position) \
                 SELECT k, s, ARRAY(SELECT jsonb_array_elements_text(ids)::uuid), v, f, l \
                 FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bigint[], $5::bigint[], $6::bigint[]) AS t(k, s, ids, v, f, l) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&new_keys.keys)
            .bind(&new_keys.streams)
            .bind(&new_keys.event_ids)
            .bind(&new_keys.versions)
            .bind(&new_keys.firsts)
            .bind(&new_keys.lasts)
            .execute(&mut *connection)
            .await?
            .rows_affected();
            if inserted != new_keys.keys.len() as u64 {
                // A concurrent append committed one of our keys after we looked: start over so the
                // key is seen and the append replayed or rejected.
                return Ok(Attempt::Retry);
            }
        }

        if notify_in_transaction {
            sqlx::query("SELECT pg_notify($1, '')").bind(&self.config.notify_channel).execute(&mut *connection).await?;
        }
        Ok(Attempt::Done(results))
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

    /// Runs `appends` in one transaction that holds their stream locks, commits it and wakes
    /// subscribers. A transient failure, or a race with a writer that bypassed the stream locks,
    /// runs it again after a short jittered pause ([`APPEND_RETRY`]); `Ok(None)` when the races
    /// never stopped.
    async fn commit_locked(
        &self,
        appends: &[StreamAppend],
        grouping: Grouping,
    ) -> Result<Option<Outcomes>, EventStoreError> {
        let mut delays = APPEND_RETRY.backoff();
        loop {
            let mut connection = self.pool.acquire().await?;
            let mut tx = connection.begin_with(begin_locked(appends)).await?;
            let outcome = match grouping {
                Grouping::AllOrNothing => {
                    self.write_batch(&mut tx, appends, false, true).await.map(|attempt| match attempt {
                        Attempt::Done(results) => Attempt::Done(results.into_iter().map(Ok).collect()),
                        Attempt::Retry => Attempt::Retry,
                    })
                }
                Grouping::Independent => self.write_each_locked(&mut tx, appends).await,
            };
            let retry = match outcome {
                Ok(Attempt::Done(outcomes)) => match tx.commit().await {
                    Ok(()) => {
                        self.notify(&mut connection).await;
                        return Ok(Some(outcomes));
                    }
                    Err(error) if is_transient(&error) => Err(error.into()),
                    Err(error) => return Err(error.into()),
                },
                Ok(Attempt::Retry) => {
                    roll_back(tx).await;
                    Ok(())
                }
                Err(EventStoreError::Database(error)) if is_transient(&error) => {
                    roll_back(tx).await;
                    Err(EventStoreError::Database(error))
                }
                Err(error) => {
                    roll_back(tx).await;
                    return Err(error);
                }
            };
            drop(connection);
            match (delays.next(), retry) {
                (Some(delay), _) => tokio::time::sleep(delay).await,
                (None, Ok(())) => return Ok(None),
                (None, Err(error)) => return Err(error),
            }
        }
    }

    /// Group commit's transaction body: every append is planned on its own under the stream
    /// locks of the whole group; rejected appends get their error and the others are written
    /// together.
    async fn write_each_locked(
        &self,
        connection: &mut PgConnection,
        appends: &[StreamAppend],
    ) -> Result<Attempt<Outcomes>, EventStoreError> {
        let (versions, known_keys) = lock_and_read(connection, appends, true).await?;
        let mut planner = Planner::new(&versions, &known_keys);
        let mut accepted = Vec::with_capacity(appends.len());
        let mut rejected = Vec::with_capacity(appends.len());
        for append in appends {
            match planner.push(append) {
                Ok(()) => {
                    accepted.push(append);
                    rejected.push(None);
                }
                Err(error) => rejected.push(Some(error)),
            }
        }
        let Attempt::Done(written) = self.write_planned(connection, &accepted, planner.planned, false).await? else {
            return Ok(Attempt::Retry);
        };
        let mut written = written.into_iter();
        Ok(Attempt::Done(
            rejected
                .into_iter()
                .map(|rejection| match rejection {
                    Some(error) => Err(error),
                    None => written.next().ok_or(EventStoreError::Closed),
                })
                .collect(),
        ))
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

/// `BEGIN` plus the batch's stream locks in one round trip (simple protocol, numeric literals only).
fn begin_locked(appends: &[StreamAppend]) -> String {
    let locks: Vec<String> =
        stream_lock_keys(appends).iter().map(|key| format!("pg_advisory_xact_lock({key})")).collect();
    format!("BEGIN; SELECT {}", locks.join(", "))
}

/// Takes the stream locks (unless the caller did) and reads the streams' versions and the batch's known idempotency keys.
async fn lock_and_read(
    connection: &mut PgConnection,
    appends: &[StreamAppend],
    already_locked: bool,
) -> Result<(HashMap<String, u64>, KnownKeys), EventStoreError> {
    let streams: Vec<&str> = appends.iter().map(|a| a.stream.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    if !already_locked {
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n")
            .bind(stream_lock_keys(appends))
            .execute(&mut *connection)
            .await?;
    }

    let versions: HashMap<String, u64> = sqlx::query(
            "SELECT s, coalesce((SELECT max(stream_version) FROM events WHERE stream_id = s), 0) FROM unnest($1::text[]) AS s",
        )
        .bind(&streams)
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, to_u64(row.try_get::<i64, _>(1)?))))
        .collect::<Result<_, sqlx::Error>>()?;

    let keys: Vec<&str> = appends.iter().filter_map(|a| a.idempotency_key.as_deref()).collect();
    let mut known_keys: HashMap<String, (StreamId, Vec<Uuid>, AppendResult)> = HashMap::new();
    if !keys.is_empty() {
        let rows = sqlx::query(
            "SELECT key, stream_id, event_ids, stream_version, first_global_position, last_global_position \
                 FROM idempotency_keys WHERE key = ANY($1::text[])",
        )
        .bind(&keys)
        .fetch_all(&mut *connection)
        .await?;
        for row in rows {
            let stream = StreamId::new(row.try_get::<String, _>(1)?)?;
            let result = AppendResult {
                stream_version: to_u64(row.try_get(3)?),
                first_global_position: to_u64(row.try_get(4)?),
                last_global_position: to_u64(row.try_get(5)?),
            };
            known_keys.insert(row.try_get(0)?, (stream, row.try_get(2)?, result));
        }
    }

    Ok((versions, known_keys))
}

/// Reserves positions for the batch's events and inserts them in one statement, returning the first
/// position; `Ok(None)` when a write that bypassed the stream locks got there first and the batch
/// should run again.
async fn insert_events(
    connection: &mut PgConnection,
    total: u64,
    rows: &EventRows,
    appends: &[&StreamAppend],
) -> Result<Option<u64>, EventStoreError> {
    // The reservation is evaluated before any row is inserted: it announces the batch's positions
    // to readers (the frontier) before they exist.
    let inserted: Vec<(i64, String)> = sqlx::query_as(
        "WITH r AS MATERIALIZED (SELECT boxoffice_reserve_positions($1) AS first) \
         INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, schema_version, payload, metadata) \
         SELECT r.first + t.o, t.e, t.s, t.v, t.ty, t.sv, t.pl, t.m FROM r, \
         unnest($2::bigint[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::integer[], $8::jsonb[], $9::jsonb[]) \
         AS t(o, e, s, v, ty, sv, pl, m) ORDER BY t.s, t.v \
         ON CONFLICT (stream_id, stream_version) DO NOTHING RETURNING global_position, stream_id",
    )
    .bind(i32::try_from(total).map_err(|_| EventStoreError::OutOfRange { what: "events in one batch" })?)
    .bind(&rows.offsets)
    .bind(&rows.event_ids)
    .bind(&rows.streams)
    .bind(&rows.versions)
    .bind(&rows.types)
    .bind(&rows.schema_versions)
    .bind(&rows.payloads)
    .bind(&rows.metadata)
    .fetch_all(&mut *connection)
    .await?;
    if inserted.len() == rows.offsets.len() {
        return Ok(inserted.iter().map(|(position, _)| to_u64(*position)).min());
    }
    // Someone wrote without the stream lock; report the first stream that lost.
    let mut written: HashMap<&str, usize> = HashMap::new();
    for (_, stream) in &inserted {
        *written.entry(stream.as_str()).or_default() += 1;
    }
    for append in appends {
        let left = written.entry(append.stream.as_str()).or_default();
        if *left < append.events.len() {
            // The transaction is not aborted (ON CONFLICT), so this statement sees the winner.
            let actual: i64 =
                sqlx::query_scalar("SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1")
                    .bind(append.stream.as_str())
                    .fetch_one(&mut *connection)
                    .await?;
            return Err(EventStoreError::ConcurrencyConflict {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: to_u64(actual),
            });
        }
        *left -= append.events.len();
    }
    Ok(None)
}

type KnownKeys = HashMap<String, (StreamId, Vec<Uuid>, AppendResult)>;

/// What one append of a batch will do, decided before anything is written.
enum Planned {
    /// A retry of an append committed earlier: return its stored result.
    Replay(AppendResult),
    /// A repeat of the append at this index of the same batch (same idempotency key and events).
    SameAs(usize),
    /// Write `count` events after `current`.
    Write { current: u64, count: u64 },
}

/// Plans a batch that is written all or nothing: the first failing append fails the batch.
fn plan(
    appends: &[StreamAppend],
    versions: &HashMap<String, u64>,
    known_keys: &KnownKeys,
) -> Result<Vec<Planned>, EventStoreError> {
    let mut planner = Planner::new(versions, known_keys);
    for append in appends {
        planner.push(append)?;
    }
    Ok(planner.planned)
}

/// Decides appends one after another against the versions and keys read under the stream
/// locks, staging each accepted append so the next ones see it. A rejected append leaves the
/// planner as it was, which lets group commit drop it and carry on with the rest.
struct Planner<'a> {
    versions: &'a HashMap<String, u64>,
    known_keys: &'a KnownKeys,
    staged: HashMap<&'a str, u64>,
    /// Idempotency keys of accepted appends: the append and its index in `planned`.
    staged_keys: HashMap<&'a str, (&'a StreamAppend, usize)>,
    planned: Vec<Planned>,
}

impl<'a> Planner<'a> {
    fn new(versions: &'a HashMap<String, u64>, known_keys: &'a KnownKeys) -> Self {
        Self { versions, known_keys, staged: HashMap::new(), staged_keys: HashMap::new(), planned: Vec::new() }
    }

    /// Accepts `append` (its plan is the next entry of `planned`) or says why not.
    fn push(&mut self, append: &'a StreamAppend) -> Result<(), EventStoreError> {
        let key = append.idempotency_key.as_deref();
        if let Some(key) = key {
            let reused =
                || EventStoreError::IdempotencyKeyReused { key: key.to_owned(), stream: append.stream.clone() };
            if let Some((stream, ids, result)) = self.known_keys.get(key) {
                let same = *stream == append.stream
                    && ids.len() == append.events.len()
                    && ids.iter().zip(&append.events).all(|(id, e)| *id == e.event_id);
                if !same {
                    return Err(reused());
                }
                self.planned.push(Planned::Replay(*result));
                return Ok(());
            }
            if let Some(&(original, index)) = self.staged_keys.get(key) {
                if original.stream != append.stream || original.events != append.events {
                    return Err(reused());
                }
                self.planned.push(Planned::SameAs(index));
                return Ok(());
            }
        }
        let stream = append.stream.as_str();
        let current =
            self.staged.get(stream).copied().unwrap_or_else(|| self.versions.get(stream).copied().unwrap_or(0));
        if !append.expected.matches(current) {
            return Err(EventStoreError::ConcurrencyConflict {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: current,
            });
        }
        let count = append.events.len() as u64;
        self.staged.insert(stream, current + count);
        if let Some(key) = key {
            self.staged_keys.insert(key, (append, self.planned.len()));
        }
        self.planned.push(Planned::Write { current, count });
        Ok(())
    }
}

fn validate(appends: &[StreamAppend]) -> Result<(), EventStoreError> {
    match appends.iter().find(|a| a.events.is_empty()) {
        Some(empty) => Err(EventStoreError::EmptyAppend { stream: empty.stream.clone() }),
        None => Ok(()),
    }
}

#[derive(Default)]
struct EventRows {
    offsets: Vec<i64>,
    event_ids: Vec<Uuid>,
    streams: Vec<String>,
    versions: Vec<i64>,
    types: Vec<String>,
    schema_versions: Vec<i32>,
    payloads: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl EventRows {
    fn push(
        &mut self,
        append: &StreamAppend,
        event: &super::NewEvent,
        metadata: serde_json::Value,
        offset: u64,
        version: u64,
    ) -> Result<(), EventStoreError> {
        self.offsets.push(to_i64(offset, "global position")?);
        self.event_ids.push(event.event_id);
        self.streams.push(append.stream.as_str().to_owned());
        self.versions.push(to_i64(version, "stream version")?);
        self.types.push(event.event_type.clone());
        self.schema_versions.push(
            i32::try_from(event.schema_version).map_err(|_| EventStoreError::OutOfRange { what: "schema version" })?,
        );
        self.payloads.push(event.payload.clone());
        self.metadata.push(metadata);
        Ok(())
    }
}

#[derive(Default)]
struct KeyRows {
    keys: Vec<String>,
    streams: Vec<String>,
    event_ids: Vec<serde_json::Value>,
    versions: Vec<i64>,
    firsts: Vec<i64>,
    lasts: Vec<i64>,
}

impl KeyRows {
    fn push(&mut self, key: &str, append: &StreamAppend, result: AppendResult) -> Result<(), EventStoreError> {
        self.keys.push(key.to_owned());
        self.streams.push(append.stream.as_str().to_owned());
        self.event_ids.push(append.events.iter().map(|e| serde_json::Value::String(e.event_id.to_string())).collect());
        self.versions.push(to_i64(result.stream_version, "stream version")?);
        self.firsts.push(to_i64(result.first_global_position, "global position")?);
        self.lasts.push(to_i64(result.last_global_position, "global position")?);
        Ok(())
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

/// Rolls back after a failed attempt. A failing rollback means the connection is broken; the pool
/// discards it, so only the original error is worth returning.
async fn roll_back(tx: sqlx::Transaction<'_, sqlx::Postgres>) {
    if let Err(error) = tx.rollback().await {
        tracing::warn!(%error, "rollback of a failed event store append failed");
    }
}

/// A unique violation (SQLSTATE 23505) of `(stream_id, stream_version)`.
fn is_stream_version_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().is_some_and(|code| code == "23505") && e.constraint() == Some("events_stream_version_unique")
    })
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
            match self.commit_locked(&appends, Grouping::Independent).await {
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
        match self.commit_locked(&appends, Grouping::AllOrNothing).await {
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
        let sql = format!("SELECT {EVENT_COLUMNS} FROM boxoffice_read_all($1, $2)");
        let after = i64::try_from(after_position).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.pool).await?;
        readable_prefix(rows.iter().map(|row| self.decode(row)))
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
        let page = self.store.read_all(after, limit).await?;
        let read_to = page.last().map_or(after, |e| e.global_position);
        let held_back = page.len() < limit && self.store.last_committed_position().await? > read_to;
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
}
