//! A [`Journal`] over one stream of an [`EventStore`]: how a framework [`Store`](crate::framework::Store)
//! persists an aggregate instance with optimistic concurrency.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CommandContext;
use crate::event_store::{EventStore, EventStoreError, ExpectedVersion, NewEvent, StreamId};
use crate::framework::{Journal, JournalError, Message};

/// The payload shape version every event is written with today; older shapes are lifted by the
/// store's upcasters before they reach [`StreamJournal::replay`].
pub const SCHEMA_VERSION: u32 = 1;

/// Appends an aggregate's events to its stream, expecting the version it last saw, so two
/// writers (threads or processes) can never both extend the same version: the loser gets
/// [`JournalError::Conflict`] and its store rebuilds from the stream.
pub struct StreamJournal<A> {
    store: Arc<dyn EventStore>,
    stream: StreamId,
    base: u64,
    version: AtomicU64,
    actions: PhantomData<fn() -> A>,
}

impl<A> StreamJournal<A> {
    /// A journal for the whole of `stream`; its version is learnt on the first [`Journal::replay`].
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>, stream: StreamId) -> Self {
        Self::after(store, stream, 0)
    }

    /// A journal for the events of `stream` after version `base` (the version of a snapshot the
    /// caller folds them onto): [`Journal::replay`] returns only those.
    #[must_use]
    pub fn after(store: Arc<dyn EventStore>, stream: StreamId, base: u64) -> Self {
        Self { store, stream, base, version: AtomicU64::new(base), actions: PhantomData }
    }

    /// The stream version this journal last wrote or read.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

fn storage(error: impl std::error::Error + Send + Sync + 'static) -> JournalError {
    JournalError::Storage(Box::new(error))
}

#[async_trait]
impl<A> Journal<A> for StreamJournal<A>
where
    A: Message + Serialize + DeserializeOwned + Send + Sync,
{
    async fn append(&self, events: &[A]) -> Result<(), JournalError> {
        let new_events = events
            .iter()
            .map(|event| Ok(NewEvent::new(event.name(), SCHEMA_VERSION, serde_json::to_value(event)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(storage)?;
        let seen = self.version();
        let metadata = CommandContext::current().map(|c| c.metadata()).unwrap_or_default();
        match self.store.append(&self.stream, ExpectedVersion::Exact(seen), new_events, &metadata, None).await {
            Ok(result) => {
                self.version.store(result.stream_version, Ordering::Release);
                Ok(())
            }
            Err(EventStoreError::ConcurrencyConflict { actual, .. }) => {
                Err(JournalError::Conflict { expected: seen, actual })
            }
            Err(error) => Err(storage(error)),
        }
    }

    async fn replay(&self) -> Result<Vec<A>, JournalError> {
        let envelopes = self.store.load_stream(&self.stream, self.base + 1).await.map_err(storage)?;
        let version = envelopes.last().map_or(self.base, |e| e.stream_version);
        let events = envelopes
            .into_iter()
            .map(|envelope| A::deserialize(&*envelope.payload))
            .collect::<Result<Vec<A>, _>>()
            .map_err(storage)?;
        self.version.store(version, Ordering::Release);
        Ok(events)
    }
}
