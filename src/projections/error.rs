//! The error type of the projections layer.

use std::time::Duration;

use crate::aggregates::StreamDecodeError;
use crate::domain::DomainError;
use crate::event_bus::EventBusError;
use crate::event_store::{EventStoreError, FollowError};

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
    /// The model is failing right now (its feed retries a batch it cannot apply, or cannot read
    /// the log): its answers would be stale, so none are given.
    #[error("projection {projection} is failing: {source}")]
    Failing {
        /// The projection.
        projection: String,
        /// The failure it is retrying.
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
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
    /// Reading from the event bus failed.
    #[error("projection {projection}: event bus error: {source}")]
    EventBus {
        /// The projection.
        projection: String,
        /// The bus's error.
        #[source]
        source: EventBusError,
    },
    /// A bus message carries no previous position, so its place in the global order is unknown
    /// (it was not published by the outbox relay).
    #[error(
        "projection {projection}: message at {topic}/{partition}@{offset} has no previous position; \
         only messages published by the outbox relay can be put in global order"
    )]
    Unstamped {
        /// The projection.
        projection: String,
        /// Topic of the message.
        topic: String,
        /// Partition of the message.
        partition: i32,
        /// Offset of the message.
        offset: i64,
    },
    /// Too many bus messages wait for an event that has not arrived: the gap after `position`
    /// never filled.
    #[error(
        "projection {projection}: {waiting} events wait for the one after position {position} \
         (the earliest waiting one follows {earliest}); is the relay running, or did the consumer \
         group acknowledge events this model lacks? Catch the model up from the event store"
    )]
    Gap {
        /// The projection.
        projection: String,
        /// The position the model has applied.
        position: u64,
        /// How many events were waiting.
        waiting: usize,
        /// The lowest previous position among the waiting events.
        earliest: u64,
    },
    /// A bus message's previous position contradicts the order already established: it does not
    /// precede its own event, it falls inside what the model has applied, or another event claims
    /// the same predecessor. The messages were not stamped from one log.
    #[error(
        "projection {projection}: the event at {global_position} claims to follow {previous_position}, \
         which contradicts position {conflict}"
    )]
    Inconsistent {
        /// The projection.
        projection: String,
        /// The event's global position.
        global_position: u64,
        /// The previous position it carries.
        previous_position: u64,
        /// The applied position or the other event's position it contradicts.
        conflict: u64,
    },
    /// [`wait_for_position`](super::ProjectionHandle::wait_for_position) ran out of time.
    #[error(
        "projection {projection} did not reach position {position} within {timeout:?} (at {reached}){}",
        .cause.as_ref().map(|cause| format!(": {cause}")).unwrap_or_default()
    )]
    Timeout {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position it had reached.
        reached: u64,
        /// How long the caller waited.
        timeout: Duration,
        /// What the model's feed is failing with (or last failed with), if anything.
        #[source]
        cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The runner stopped while retrying a failure, or its retry policy gave up.
    #[error("projection {projection} halted")]
    Halted {
        /// The projection.
        projection: String,
        /// The failure it was retrying (with the batch and the model's error).
        #[source]
        source: FollowError<ProjectionError>,
    },
    /// The runner is no longer running (stopped, failed or its task panicked).
    #[error("projection runner {projection} is not running")]
    Stopped {
        /// The projection.
        projection: String,
    },
    /// A stored read-model row could not be read back.
    #[error("projection {projection}: corrupt row")]
    Corrupt {
        /// The projection.
        projection: String,
        /// What was wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

impl ProjectionError {
    /// The global position of the stored event this error is about, when the model can never
    /// apply that event (it cannot be decoded, read as a ticketing event, or its money does not
    /// add up): retrying cannot help, so the model's feed quarantines it or halts (see
    /// [`BadEventPolicy`](crate::event_store::BadEventPolicy)). `None` for failures worth retrying.
    #[must_use]
    pub fn bad_event_position(&self) -> Option<u64> {
        match self {
            Self::Decode { source, .. } => Some(source.global_position()),
            Self::Money { global_position, .. } => Some(*global_position),
            Self::EventStore { source, .. } => source.bad_event_position(),
            _ => None,
        }
    }
}
