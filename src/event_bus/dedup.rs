//! Consumer-side deduplication: at-least-once delivery plus a per-stream high-water mark gives
//! effectively-once handling.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{Delivery, EventBusError};
use crate::event_store::{Envelope, StreamId};

/// Remembers, per consumer and stream, the highest stream version already handled.
///
/// A high-water mark is enough because the relay publishes each stream's events in order under
/// one key, so a consumer sees them in order; a redelivered or republished event always has a
/// version at or below the mark.
#[async_trait]
pub trait DedupStore: Send + Sync {
    /// The highest version of `stream` that `consumer` has handled (0 when none).
    async fn high_water_mark(&self, consumer: &str, stream: &StreamId) -> Result<u64, EventBusError>;

    /// Records that `consumer` has handled `stream` up to `version`; never lowers the mark.
    async fn record(&self, consumer: &str, stream: &StreamId, version: u64) -> Result<(), EventBusError>;
}

/// A [`DedupStore`] in memory; progress is lost with the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryDedupStore {
    marks: Arc<Mutex<HashMap<(String, StreamId), u64>>>,
}

impl MemoryDedupStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DedupStore for MemoryDedupStore {
    async fn high_water_mark(&self, consumer: &str, stream: &StreamId) -> Result<u64, EventBusError> {
        let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(marks.get(&(consumer.to_owned(), stream.clone())).copied().unwrap_or(0))
    }

    async fn record(&self, consumer: &str, stream: &StreamId, version: u64) -> Result<(), EventBusError> {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mark = marks.entry((consumer.to_owned(), stream.clone())).or_insert(0);
        *mark = (*mark).max(version);
        Ok(())
    }
}

/// What [`Deduplicator::handle`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The handler ran, the event was recorded and the delivery acknowledged.
    Processed,
    /// The event had been handled before: the handler did not run; the delivery was acknowledged.
    Duplicate,
}

/// Why [`Deduplicator::handle`] failed; the delivery was not acknowledged and will come again.
#[derive(Debug, thiserror::Error)]
pub enum HandleError<E> {
    /// The handler failed.
    #[error("handler failed: {0}")]
    Handler(#[source] E),
    /// Recording or acknowledging failed.
    #[error(transparent)]
    Bus(#[from] EventBusError),
}

/// Drops deliveries a consumer has already handled.
#[derive(Clone)]
pub struct Deduplicator {
    consumer: String,
    store: Arc<dyn DedupStore>,
}

impl std::fmt::Debug for Deduplicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduplicator").field("consumer", &self.consumer).finish_non_exhaustive()
    }
}

impl Deduplicator {
    /// Deduplicates for `consumer` (e.g. a projection name) with progress kept in `store`.
    #[must_use]
    pub fn new(consumer: impl Into<String>, store: Arc<dyn DedupStore>) -> Self {
        Self { consumer: consumer.into(), store }
    }

    /// The consumer name.
    #[must_use]
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Whether `envelope` has not been handled by this consumer yet.
    ///
    /// # Errors
    /// [`EventBusError::Dedup`] when the store cannot be read.
    pub async fn is_new(&self, envelope: &Envelope) -> Result<bool, EventBusError> {
        let mark = self.store.high_water_mark(&self.consumer, &envelope.stream_id).await?;
        if envelope.stream_version > mark.saturating_add(1) {
            tracing::warn!(
                consumer = %self.consumer,
                stream = %envelope.stream_id,
                version = envelope.stream_version,
                mark,
                "stream versions skipped: earlier events of this stream were never delivered to this consumer"
            );
        }
        Ok(envelope.stream_version > mark)
    }

    /// Records `envelope` as handled. Call it after the handler's effect is durable (ideally in
    /// the same transaction, with a store that shares it).
    ///
    /// # Errors
    /// [`EventBusError::Dedup`] when the store cannot be written.
    pub async fn mark_handled(&self, envelope: &Envelope) -> Result<(), EventBusError> {
        self.store.record(&self.consumer, &envelope.stream_id, envelope.stream_version).await
    }

    /// Runs `handler` for a delivery seen for the first time, records it, and acknowledges the
    /// delivery; a duplicate is acknowledged without running the handler.
    ///
    /// # Errors
    /// [`HandleError::Handler`] when the handler fails and [`HandleError::Bus`] when recording or
    /// acknowledging fails; either way the delivery stays unacknowledged and will be redelivered.
    pub async fn handle<F, Fut, E>(&self, delivery: Delivery, handler: F) -> Result<Handled, HandleError<E>>
    where
        F: FnOnce(&Envelope) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
    {
        if !self.is_new(delivery.envelope()).await? {
            delivery.ack().await?;
            return Ok(Handled::Duplicate);
        }
        handler(delivery.envelope()).await.map_err(HandleError::Handler)?;
        self.mark_handled(delivery.envelope()).await?;
        delivery.ack().await?;
        Ok(Handled::Processed)
    }
}
