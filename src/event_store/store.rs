//! The `EventStore` trait every backend implements.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{
    AppendResult, Envelope, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot, StreamAppend, StreamId,
};

/// An append-only log of events, grouped into streams and ordered globally.
///
/// Object safe: use it as `Arc<dyn EventStore>`. Every backend numbers events the same way (see
/// [`Envelope`]): stream versions start at 1 (an absent stream is at version 0) and global positions
/// start at 1 and strictly increase in the order readers see them. Reads of the global log
/// ([`read_all`](Self::read_all), [`subscribe`](Self::subscribe), [`head_position`](Self::head_position))
/// only return events that can no longer be preceded by an event committed later (invariant I7), so a
/// reader that resumes from the last position it handled never skips anything.
///
/// ```
/// use std::sync::Arc;
/// use boxoffice::event_store::{
///     EventStore, EventStoreError, ExpectedVersion, MemoryEventStore, Metadata, NewEvent, StreamId,
/// };
/// use futures::StreamExt;
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
/// let stream = StreamId::new("inventory-1")?;
/// let event = NewEvent::new("SeatsReserved", 1, json!({ "seats": 2 }));
///
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![event], &Metadata::default(), None).await?;
/// assert_eq!(result.stream_version, 1);
///
/// // A stale expectation writes nothing and says why.
/// let stale = NewEvent::new("SeatsReserved", 1, json!({ "seats": 1 }));
/// let err = store.append(&stream, ExpectedVersion::NoStream, vec![stale], &Metadata::default(), None).await;
/// assert!(matches!(err, Err(EventStoreError::ConcurrencyConflict { actual: 1, .. })));
///
/// let events = store.load_stream(&stream, 1).await?;
/// assert_eq!(*events[0].payload, json!({ "seats": 2 }));
///
/// let mut live = store.subscribe(0);
/// let first = live.next().await.unwrap()?;
/// assert_eq!(first.global_position, result.first_global_position);
/// # Ok::<(), EventStoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version satisfies `expected`, all or nothing.
    ///
    /// With an `idempotency_key`, a retry carrying the same key, stream and event ids returns the
    /// original result and writes nothing; the same key with another stream or other events fails with
    /// [`EventStoreError::IdempotencyKeyReused`].
    ///
    /// # Errors
    /// [`EventStoreError::EmptyAppend`], [`EventStoreError::ConcurrencyConflict`],
    /// [`EventStoreError::IdempotencyKeyReused`], or a backend failure.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Result<AppendResult, EventStoreError> {
        let append = StreamAppend::of(stream, expected, events, metadata, idempotency_key);
        let mut results = self.append_batch(vec![append]).await?;
        results.pop().ok_or(EventStoreError::EmptyAppend { stream: stream.clone() })
    }

    /// Performs several appends (possibly to different streams) in one transaction: either all are
    /// written or none. Appends are applied in order, so two appends to the same stream see each
    /// other. Results come back in input order.
    ///
    /// # Errors
    /// The first failing append's error (for example its stream's
    /// [`EventStoreError::ConcurrencyConflict`]); nothing from the batch is written.
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError>;

    /// Events of `stream` with `stream_version >= from_version` (1 loads everything), in order.
    /// An absent stream yields an empty vector.
    ///
    /// # Errors
    /// Backend or upcasting failures.
    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError>;

    /// The stream's current version (0 when absent).
    ///
    /// # Errors
    /// Backend failures.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError>;

    /// Up to `limit` events of the global log with `global_position > after_position`, in order.
    ///
    /// A bad stored event (one that cannot be decoded, or that an upcaster fails on) ends the
    /// page: the events before it are returned, and a read that starts at it fails with an error
    /// whose [`bad_event_position`](EventStoreError::bad_event_position) names it, so a reader
    /// can report it and read on after it.
    ///
    /// # Errors
    /// Backend failures, or the bad event the read starts at.
    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError>;

    /// Every event after `after_position`: first the backlog in batches, then live events as they
    /// become readable. Never skips or repeats an event. The stream ends after yielding an error;
    /// resubscribe from the last handled position to continue.
    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>>;

    /// The highest readable global position (0 when the log is empty).
    ///
    /// # Errors
    /// Backend failures.
    async fn head_position(&self) -> Result<u64, EventStoreError>;

    /// The global position of the last event committed so far (0 when none), which may be ahead
    /// of [`head_position`](Self::head_position): a backend with a visibility frontier (see
    /// invariant I7) holds committed events back from readers while an older transaction is
    /// still open. Readers of the global log reach this position once the frontier passes it, so
    /// waiting for a reader to pass it is how to wait for "everything committed so far". The
    /// default is `head_position`, right for backends whose readers see every commit at once.
    ///
    /// # Errors
    /// Backend failures.
    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        self.head_position().await
    }

    /// Whether the store can serve: a backend that needs a schema checks that it exists. A
    /// [`TicketingSystem`](crate::system::TicketingSystem) calls it before it starts. The default
    /// is `Ok`, right for backends that need no preparation (memory).
    ///
    /// # Errors
    /// [`EventStoreError::NotMigrated`] when the backend's tables are missing, or a backend
    /// failure.
    async fn ready(&self) -> Result<(), EventStoreError> {
        Ok(())
    }

    /// Stores `snapshot` unless one with a higher version already exists for its stream.
    ///
    /// # Errors
    /// Backend failures.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError>;

    /// The latest snapshot of `stream`, if any.
    ///
    /// # Errors
    /// Backend failures.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError>;
}

/// The events of a page up to its first bad one (see [`EventStore::read_all`]): the error only
/// when the page starts with it.
pub(crate) fn readable_prefix(
    events: impl IntoIterator<Item = Result<Envelope, EventStoreError>>,
) -> Result<Vec<Envelope>, EventStoreError> {
    let events = events.into_iter();
    let mut page = Vec::with_capacity(events.size_hint().0);
    for event in events {
        match event {
            Ok(event) => page.push(event),
            Err(error) if page.is_empty() => return Err(error),
            Err(_) => break,
        }
    }
    Ok(page)
}
