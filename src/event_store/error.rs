//! The error type of the event store layer.

use uuid::Uuid;

use super::{ExpectedVersion, StreamId};

/// Everything that can go wrong in an [`EventStore`](super::EventStore).
///
/// Bad input (an empty append, an invalid stream id, a stale expected version, a reused idempotency
/// key) gets its own variant and writes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error("concurrency conflict on stream {stream}: expected {expected}, actual version {actual}")]
    ConcurrencyConflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was rejected.
        actual: u64,
    },
    /// An append carried no events.
    #[error("append to stream {stream} carries no events")]
    EmptyAppend {
        /// The stream appended to.
        stream: StreamId,
    },
    /// A stream id failed validation.
    #[error("invalid stream id {value:?}: {reason}")]
    InvalidStreamId {
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An idempotency key was reused for a different stream or different events.
    #[error("idempotency key {key:?} was already used for a different append (now on stream {stream})")]
    IdempotencyKeyReused {
        /// The reused key.
        key: String,
        /// The stream of the rejected append.
        stream: StreamId,
    },
    /// An upcaster failed to lift an event to its current shape.
    #[error(
        "cannot upcast event {event_id} at global position {global_position} ({event_type} v{schema_version}): {reason}"
    )]
    Upcast {
        /// The event being read.
        event_id: Uuid,
        /// Where it is in the global log.
        global_position: u64,
        /// Its type.
        event_type: String,
        /// The schema version the failing upcaster started from.
        schema_version: u32,
        /// What the upcaster reported.
        reason: String,
    },
    /// A stored row could not be decoded.
    #[error("stored event at global position {global_position} is corrupt")]
    Corrupt {
        /// Where the row is.
        global_position: u64,
        /// What was wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something an append carries could not be encoded for storage; nothing was written.
    #[error("cannot encode an append to stream {stream}")]
    Encode {
        /// The stream appended to.
        stream: StreamId,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A value does not fit the backend's storage (for example a version above `i64::MAX`).
    #[error("value out of range for the backend: {what}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
    },
    /// The database failed (never used for constraint violations, which have their own variants).
    #[cfg(feature = "postgres")]
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Running the embedded migrations failed.
    #[cfg(feature = "postgres")]
    #[error("migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The backend failed for a reason that may pass (a dropped connection, a timeout, a
    /// failover): nothing was written, or (for an append whose acknowledgement was lost) the
    /// caller cannot know. Handling: reload and retry; appends are safe to retry because commands
    /// are decided again against the reloaded stream.
    #[error("the event store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend's tables are missing: its schema was never migrated (for `PostgreSQL`,
    /// [`PostgresEventStore::migrate`](super::PostgresEventStore::migrate) was never run on it).
    /// Handling: run the migration, then start again. Reported by
    /// [`EventStore::ready`](super::EventStore::ready).
    #[error("the event store is not migrated: schema {schema} lacks {missing}; run migrate() first")]
    NotMigrated {
        /// The schema looked in.
        schema: String,
        /// The missing tables, comma-separated.
        missing: String,
    },
    /// The store was closed.
    #[error("the event store is closed")]
    Closed,
}

impl EventStoreError {
    /// Whether retrying the same operation may succeed: a conflict (after reloading), an
    /// unavailable backend, or a database error that is not about the data itself.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::ConcurrencyConflict { .. } | Self::Unavailable(_) => true,
            #[cfg(feature = "postgres")]
            Self::Database(error) => match error {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
                // Connection exceptions, serialisation failures and deadlocks, insufficient
                // resources, operator intervention (a restart or a failover).
                sqlx::Error::Database(db) => {
                    db.code().is_some_and(|code| ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)))
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The global position of the stored event this error is about, when the event itself is
    /// bad (it cannot be decoded, or an upcaster fails on it) and reading it again cannot help:
    /// log readers quarantine it or halt (see [`BadEventPolicy`](super::BadEventPolicy)).
    #[must_use]
    pub fn bad_event_position(&self) -> Option<u64> {
        match self {
            Self::Corrupt { global_position, .. } | Self::Upcast { global_position, .. } => Some(*global_position),
            _ => None,
        }
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::Error> for EventStoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolClosed => Self::Closed,
            other => Self::Database(other),
        }
    }
}
