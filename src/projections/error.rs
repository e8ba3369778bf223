//! The error type of the projections layer.

use std::time::Duration;

use crate::aggregates::StreamDecodeError;
use crate::domain::DomainError;
use crate::event_store::EventStoreError;

/// Everything that can go wrong while building or querying a read model.
///
/// A failed [`apply`](super::Projection::apply) leaves the projection as it was before the event,
/// with its position unchanged, so the event can be retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A stored event could not be read as a ticketing event.
    #[error("projection {projection}: {source}")]
    Decode {
        /// The projection that read it.
        projection: String,
        /// What was wrong (carries the stream, event id and position).
        #[source]
        source: StreamDecodeError,
    },
    /// Money arithmetic failed (overflow, or amounts in two currencies for one event).
    #[error("projection {projection}: money error at global position {global_position}: {source}")]
    Money {
        /// The projection.
        projection: String,
        /// The event being applied.
        global_position: u64,
        /// The domain error.
        #[source]
        source: DomainError,
    },
    /// Reading the log or a checkpoint failed.
    #[error("projection {projection}: event store error: {source}")]
    EventStore {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: EventStoreError,
    },
    /// [`wait_for_position`](super::ProjectionHandle::wait_for_position) ran out of time.
    #[error("projection {projection} did not reach position {position} within {timeout:?} (at {reached})")]
    Timeout {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position it had reached.
        reached: u64,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The runner is no longer running (stopped, failed or its task panicked).
    #[error("projection runner {projection} is not running")]
    Stopped {
        /// The projection.
        projection: String,
    },
    /// A stored read-model row could not be read back.
    #[error("projection {projection}: corrupt row: {reason}")]
    Corrupt {
        /// The projection.
        projection: String,
        /// What was wrong.
        reason: String,
    },
    /// The read model's database failed.
    #[cfg(feature = "postgres")]
    #[error("projection {projection}: database error: {source}")]
    Database {
        /// The projection.
        projection: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}
