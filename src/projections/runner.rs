//! Feeds a read model from the global log with checkpoints, and rebuilds it beside the live one.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::event_store::{CheckpointStore, EventStore, EventStoreError};

use super::{Projection, ProjectionError, ProjectionHandle};

/// How a [`ProjectionRunner`] reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Most events applied under one write lock and covered by one checkpoint save.
    pub batch_size: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { batch_size: 512 }
    }
}

/// Folds the global log from `model`'s position to the current head into `model`, `batch_size`
/// events per read. Returns the position reached. Used by rebuilds and benchmarks.
///
/// # Errors
/// [`ProjectionError::EventStore`] when reading fails, or the model's error for an event.
pub async fn replay<P: Projection>(
    store: &dyn EventStore,
    model: &mut P,
    batch_size: usize,
) -> Result<u64, ProjectionError> {
    loop {
        let batch = store
            .read_all(model.position(), batch_size.max(1))
            .await
            .map_err(|source| store_error(model.name(), source))?;
        if batch.is_empty() {
            return Ok(model.position());
        }
        for envelope in &batch {
            model.apply(envelope)?;
        }
    }
}

fn store_error(projection: &str, source: EventStoreError) -> ProjectionError {
    ProjectionError::EventStore { projection: projection.to_owned(), source }
}

enum Command<P> {
    Rebuild { fresh: P, done: oneshot::Sender<Result<u64, ProjectionError>> },
}

/// Runs one read model: follows [`EventStore::subscribe`] from its checkpoint, applies events in
/// batches, saves the checkpoint after each batch, and serves readers through a
/// [`ProjectionHandle`] the whole time.
///
/// Restart safety (invariant I8): the checkpoint is saved after applying, so a crash in between
/// makes the next runner see some events again; the model's own position (see
/// [`Projection::apply`]) turns those into no-ops. The runner starts from the lower of the saved
/// checkpoint and the model's position, so a model that lost its state (an in-memory model after
/// a process restart starts at 0) is replayed from where its state actually ends.
///
/// The runner stops on [`stop`](Self::stop) (after the batch in hand) or on the first error,
/// which `stop` then returns; the model keeps what it had applied.
///
/// It reads the event store, not the event bus, even when a bus is configured. A projection's
/// one-number idempotency (ignore what is at or below its position) needs the global order, and
/// a bus keeps order only per key within a partition: an event of one topic can arrive after a
/// later event of another, and would then be dropped as already seen. Per-stream deduplication
/// would not be enough either: the sales and customer models join a payment to the reservation it
/// pays for, which travel on different topics, and a payment whose reservation has not arrived
/// yet would go uncounted. The store's subscription gives every reader the global order.
pub struct ProjectionRunner<P: Projection> {
    handle: ProjectionHandle<P>,
    stop: watch::Sender<bool>,
    commands: mpsc::Sender<Command<P>>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl<P: Projection> ProjectionRunner<P> {
    /// Loads the checkpoint of `handle`'s model and starts following the log on a tokio task.
    ///
    /// # Errors
    /// [`ProjectionError::EventStore`] when the checkpoint cannot be loaded.
    pub async fn start(
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn CheckpointStore>,
        handle: ProjectionHandle<P>,
        config: RunnerConfig,
    ) -> Result<Self, ProjectionError> {
        let name = handle.name().to_owned();
        let saved = checkpoints.load_checkpoint(&name).await.map_err(|source| store_error(&name, source))?;
        let from = saved.min(handle.position());
        let (stop, stop_rx) = watch::channel(false);
        let (commands, commands_rx) = mpsc::channel(4);
        let worker = Worker { store, checkpoints, handle: handle.clone(), config, saved };
        let span = tracing::info_span!("projection_runner", projection = %name, from);
        let task = tokio::spawn(worker.run(from, stop_rx, commands_rx).instrument(span));
        Ok(Self { handle, stop, commands, task })
    }

    /// The model, for queries and [`wait_for_position`](ProjectionHandle::wait_for_position).
    #[must_use]
    pub fn handle(&self) -> &ProjectionHandle<P> {
        &self.handle
    }

    /// Rebuilds the model from the start of the log into `fresh` (reset first), beside the live
    /// model, which keeps answering queries meanwhile; then swaps `fresh` in and saves its
    /// checkpoint. Live events wait while the rebuild runs and are applied after the swap (those
    /// the rebuild already covered are skipped). Returns the position of the rebuilt model.
    ///
    /// # Errors
    /// [`ProjectionError::Stopped`] when the runner is not running, or the error that ended the
    /// rebuild (the live model is then left in place).
    pub async fn rebuild(&self, fresh: P) -> Result<u64, ProjectionError> {
        let (done, result) = oneshot::channel();
        let stopped = || ProjectionError::Stopped { projection: self.handle.name().to_owned() };
        self.commands.send(Command::Rebuild { fresh, done }).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Stops after the batch in hand and waits for the task.
    ///
    /// # Errors
    /// The error that had already stopped the runner, if any, or [`ProjectionError::Stopped`]
    /// when its task panicked.
    pub async fn stop(self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        let name = self.handle.name().to_owned();
        self.task.await.map_err(|_| ProjectionError::Stopped { projection: name })?
    }
}

struct Worker<P: Projection> {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    handle: ProjectionHandle<P>,
    config: RunnerConfig,
    saved: u64,
}

impl<P: Projection> Worker<P> {
    async fn run(
        mut self,
        from: u64,
        mut stop: watch::Receiver<bool>,
        mut commands: mpsc::Receiver<Command<P>>,
    ) -> Result<(), ProjectionError> {
        let mut events = self.store.subscribe(from).ready_chunks(self.config.batch_size.max(1));
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                Some(Command::Rebuild { fresh, done }) = commands.recv() => {
                    let _ignored_if_caller_left = done.send(self.rebuild(fresh).await);
                }
                chunk = events.next() => {
                    let Some(chunk) = chunk else {
                        return Err(ProjectionError::Stopped { projection: self.handle.name().to_owned() });
                    };
                    self.apply(chunk).await?;
                }
            }
        }
    }

    async fn apply(
        &mut self,
        chunk: Vec<Result<crate::event_store::Envelope, EventStoreError>>,
    ) -> Result<(), ProjectionError> {
        let mut batch = Vec::with_capacity(chunk.len());
        let mut failure = None;
        for item in chunk {
            match item {
                Ok(envelope) => batch.push(envelope),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let span = tracing::debug_span!("projection_batch", projection = %self.handle.name(), events = batch.len());
        span.in_scope(|| self.handle.apply_batch(&batch))?;
        self.save().await?;
        match failure {
            Some(source) => Err(store_error(self.handle.name(), source)),
            None => Ok(()),
        }
    }

    async fn rebuild(&mut self, mut fresh: P) -> Result<u64, ProjectionError> {
        fresh.reset();
        let position = replay(&*self.store, &mut fresh, self.config.batch_size)
            .instrument(tracing::info_span!("projection_rebuild", projection = %self.handle.name()))
            .await?;
        self.handle.swap(fresh);
        self.save().await?;
        Ok(position)
    }

    async fn save(&mut self) -> Result<(), ProjectionError> {
        let position = self.handle.position();
        if position != self.saved {
            let name = self.handle.name();
            self.checkpoints.save_checkpoint(name, position).await.map_err(|source| store_error(name, source))?;
            self.saved = position;
        }
        Ok(())
    }
}
