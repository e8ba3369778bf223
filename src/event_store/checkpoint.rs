//! Named positions in the global log, kept by consumers that resume after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::EventStoreError;

/// Durable storage for consumer checkpoints: the last global position a named consumer handled.
///
/// ```
/// use boxoffice::event_store::{CheckpointStore, MemoryCheckpointStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkpoints = MemoryCheckpointStore::new();
/// assert_eq!(checkpoints.load_checkpoint("seat-map").await?, 0);
/// checkpoints.save_checkpoint("seat-map", 42).await?;
/// assert_eq!(checkpoints.load_checkpoint("seat-map").await?, 42);
/// # Ok::<(), boxoffice::event_store::EventStoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// The saved position of consumer `name`, or 0 (the start of the log) when none was saved.
    ///
    /// # Errors
    /// Backend failures.
    async fn load_checkpoint(&self, name: &str) -> Result<u64, EventStoreError>;

    /// Records that consumer `name` handled everything up to and including `position`.
    ///
    /// # Errors
    /// Backend failures.
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError>;

    /// Records `position` for consumer `name` unless a later position is saved already: for a
    /// checkpoint that several processes save under one name, each knowing a true lower bound
    /// (the saga's: every event at or before it has its reactions recorded), so the slower one
    /// never moves it back. The default reads and then saves, which is atomic only for a single
    /// writer; the crate's stores do it in one step.
    ///
    /// # Errors
    /// Backend failures.
    async fn advance_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        if self.load_checkpoint(name).await? < position {
            self.save_checkpoint(name, position).await?;
        }
        Ok(())
    }
}

/// Checkpoints kept in process memory (lost on restart; for tests and the in-memory setup).
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpointStore {
    positions: Arc<Mutex<HashMap<String, u64>>>,
}

impl MemoryCheckpointStore {
    /// An empty checkpoint store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CheckpointStore for MemoryCheckpointStore {
    async fn load_checkpoint(&self, name: &str) -> Result<u64, EventStoreError> {
        let positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(positions.get(name).copied().unwrap_or(0))
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        positions.insert(name.to_owned(), position);
        Ok(())
    }

    async fn advance_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = positions.entry(name.to_owned()).or_default();
        *saved = (*saved).max(position);
        Ok(())
    }
}
