//! Where a [`Store`](super::Store) keeps the events its reducer persists.

use std::sync::Mutex;

use async_trait::async_trait;

/// A journal could not take or give back events.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Someone else appended first; the store must rebuild its state and try again.
    #[error("journal conflict: expected version {expected}, found {actual}")]
    Conflict {
        /// The version this writer had seen.
        expected: u64,
        /// The version the journal holds.
        actual: u64,
    },
    /// The backing storage failed.
    #[error("journal storage failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The durable, ordered record of one reducer's events.
#[async_trait]
pub trait Journal<A>: Send + Sync {
    /// Appends events after everything appended so far; all or nothing.
    async fn append(&self, events: &[A]) -> Result<(), JournalError>;

    /// Every event appended so far, in order.
    async fn replay(&self) -> Result<Vec<A>, JournalError>;
}

/// A journal held in memory: the default for a [`Store`](super::Store).
#[derive(Debug)]
pub struct MemoryJournal<A> {
    events: Mutex<Vec<A>>,
}

impl<A> Default for MemoryJournal<A> {
    fn default() -> Self {
        Self { events: Mutex::new(Vec::new()) }
    }
}

#[async_trait]
impl<A: Clone + Send + Sync> Journal<A> for MemoryJournal<A> {
    async fn append(&self, events: &[A]) -> Result<(), JournalError> {
        let mut stored = self.events.lock().map_err(|e| JournalError::Storage(e.to_string().into()))?;
        stored.extend_from_slice(events);
        Ok(())
    }

    async fn replay(&self) -> Result<Vec<A>, JournalError> {
        let stored = self.events.lock().map_err(|e| JournalError::Storage(e.to_string().into()))?;
        Ok(stored.clone())
    }
}
