//! A shared, concurrently readable read model and its applied position.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::event_store::Envelope;

use super::{Projection, ProjectionError};

/// A read model shared between the runner that feeds it and any number of readers.
///
/// Cloning gives another handle to the same model. Readers never wait for a whole batch of the
/// log: the runner holds the write lock only while applying one batch, and a
/// [rebuild](super::ProjectionRunner::rebuild) replaces the model in one swap.
///
/// ```
/// use boxoffice::projections::{AvailableSeatsProjection, ProjectionHandle};
/// use boxoffice::domain::EventId;
///
/// let handle = ProjectionHandle::new(AvailableSeatsProjection::new());
/// assert_eq!(handle.read(|seats| seats.get_total_available(EventId::new_v4())), 0);
/// assert_eq!(handle.position(), 0);
/// ```
pub struct ProjectionHandle<P> {
    shared: Arc<Shared<P>>,
}

struct Shared<P> {
    name: String,
    model: RwLock<P>,
    applied: watch::Sender<u64>,
}

impl<P> Clone for ProjectionHandle<P> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<P> std::fmt::Debug for ProjectionHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.shared.name)
            .field("position", &*self.shared.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionHandle<P> {
    /// Shares `model`.
    pub fn new(model: P) -> Self {
        let name = model.name().to_owned();
        let applied = watch::Sender::new(model.position());
        Self { shared: Arc::new(Shared { name, model: RwLock::new(model), applied }) }
    }

    /// The model's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Runs `query` against the model as it is now.
    pub fn read<T>(&self, query: impl FnOnce(&P) -> T) -> T {
        query(&self.shared.model.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The global position the model has applied.
    #[must_use]
    pub fn position(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Waits until the model has applied everything up to `position` (read-your-writes: pass the
    /// position an append returned). Woken by the runner, never by polling.
    ///
    /// # Errors
    /// [`ProjectionError::Timeout`] when `timeout` passes first.
    pub async fn wait_for_position(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let mut applied = self.shared.applied.subscribe();
        let reached = tokio::time::timeout(timeout, applied.wait_for(|p| *p >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // The sender lives in `self`, so the channel cannot close while we wait.
            Ok(Err(_)) | Err(_) => Err(ProjectionError::Timeout {
                projection: self.shared.name.clone(),
                position,
                reached: self.position(),
                timeout,
                cause: None,
            }),
        }
    }

    /// Applies `batch` under one write lock and publishes the new position. Stops at the first
    /// failing event; the events before it stay applied (and their position published).
    ///
    /// # Errors
    /// The failing event's [`ProjectionError`].
    pub fn apply_batch(&self, batch: &[Envelope]) -> Result<u64, ProjectionError> {
        let mut model = self.shared.model.write().unwrap_or_else(PoisonError::into_inner);
        let mut outcome = Ok(());
        for envelope in batch {
            if let Err(error) = model.apply(envelope) {
                outcome = Err(error);
                break;
            }
        }
        let position = model.position();
        drop(model);
        self.shared.applied.send_if_modified(|p| {
            let moved = *p != position;
            *p = position;
            moved
        });
        outcome.map(|()| position)
    }

    /// Moves the model's position to `position` (if it is behind) without applying anything:
    /// the event there was quarantined. Publishes the new position.
    pub(crate) fn skip_to(&self, position: u64) {
        let mut model = self.shared.model.write().unwrap_or_else(PoisonError::into_inner);
        if model.position() < position {
            model.set_position(position);
        }
        let position = model.position();
        drop(model);
        self.shared.applied.send_if_modified(|p| {
            let moved = *p != position;
            *p = position;
            moved
        });
    }

    /// Replaces the model with `model` in one step (readers see the old or the new one, never a
    /// mix) and publishes its position. Returns the old model.
    pub fn swap(&self, model: P) -> P {
        let position = model.position();
        let old = std::mem::replace(&mut *self.shared.model.write().unwrap_or_else(PoisonError::into_inner), model);
        self.shared.applied.send_replace(position);
        old
    }
}

impl<P: Projection + Clone> ProjectionHandle<P> {
    /// A copy of the model as it is now.
    #[must_use]
    pub fn snapshot(&self) -> P {
        self.read(P::clone)
    }
}
