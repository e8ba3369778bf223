//! Feeds a read model from the global log with checkpoints, and rebuilds it beside the live one.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::event_store::{
    BadEventPolicy, CheckpointStore, Envelope, EventStore, EventStoreError, FollowConfig, FollowStatus, LogConsumer,
    RetryPolicy, follow,
};

use super::{Projection, ProjectionError, ProjectionHandle};

/// How a [`ProjectionRunner`] reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Most events applied under one write lock and covered by one checkpoint save.
    pub batch_size: usize,
    /// Pauses between attempts after a failed read, apply or checkpoint save.
    pub retry: RetryPolicy,
    /// What to do with an event the model can never apply.
    pub bad_events: BadEventPolicy,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { batch_size: 512, retry: RetryPolicy::default(), bad_events: BadEventPolicy::default() }
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

/// Runs one read model: [`follow`]s the log from its checkpoint, applies events in batches,
/// saves the checkpoint after each batch, and serves readers through a [`ProjectionHandle`] the
/// whole time.
///
/// Restart safety (invariant I8): the checkpoint is saved after applying, so a crash in between
/// makes the next runner see some events again; the model's own position (see
/// [`Projection::apply`]) turns those into no-ops. The runner starts from the lower of the saved
/// checkpoint and the model's position, so a model that lost its state (an in-memory model after
/// a process restart starts at 0) is replayed from where its state actually ends.
///
/// A batch that fails (a checkpoint that cannot be saved, the log that cannot be read) is retried
/// with the configured [`RetryPolicy`], never skipped: the model waits at the event before it,
/// loudly (a `warn` per attempt and the failure in [`status`](Self::status)), and
/// [`stop`](Self::stop) returns the failure it was retrying. An event the model can never apply
/// (see [`ProjectionError::bad_event_position`]) is quarantined, or halts the model, by
/// [`RunnerConfig::bad_events`].
///
/// It reads the event store, not the event bus, even when a bus is configured. A projection's
/// one-number idempotency (ignore what is at or below its position) needs the global order, and
/// a bus keeps order only per key within a partition: an event of one topic can arrive after a
/// later event of another, and would then be dropped as already seen. Per-stream deduplication
/// would not be enough either: the sales and customer models join a payment to the reservation it
/// pays for, which travel on different topics, and a payment whose reservation has not arrived
/// yet would go uncounted. The store's subscription gives every reader the global order.
pub struct ProjectionRunner<P: Projection> {
    feed: Arc<Feed<P>>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<FollowStatus>,
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
        let status_tx = watch::Sender::new(FollowStatus::default());
        let status = status_tx.subscribe();
        let feed =
            Arc::new(Feed { store, checkpoints, handle, batch_size: config.batch_size, saved: Mutex::new(saved) });
        let mut consumer = Consumer { feed: Arc::clone(&feed), from };
        let follow_config =
            FollowConfig { max_batch: config.batch_size.max(1), retry: config.retry, bad_events: config.bad_events };
        let span = tracing::info_span!("projection_runner", projection = %name, from);
        let task = tokio::spawn(
            async move {
                let store = Arc::clone(&consumer.feed.store);
                follow(&*store, &mut consumer, &follow_config, stop_rx, &status_tx)
                    .await
                    .map(|_| ())
                    .map_err(|source| ProjectionError::Halted { projection: name, source })
            }
            .instrument(span),
        );
        Ok(Self { feed, stop, status, task })
    }

    /// The model, for queries and [`wait_for_position`](ProjectionHandle::wait_for_position).
    #[must_use]
    pub fn handle(&self) -> &ProjectionHandle<P> {
        &self.feed.handle
    }

    /// How the runner is doing: position, retries, and the failure it is retrying, if any.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<FollowStatus> {
        self.status.clone()
    }

    /// Rebuilds the model from the start of the log into `fresh` (reset first), beside the live
    /// model, which keeps answering queries meanwhile; then swaps `fresh` in and saves its
    /// checkpoint. Live batches wait while the rebuild runs and are applied after the swap (those
    /// the rebuild already covered are skipped). Returns the position of the rebuilt model.
    ///
    /// # Errors
    /// [`ProjectionError::Stopped`] when the runner is not running, or the error that ended the
    /// rebuild (the live model is then left in place).
    pub async fn rebuild(&self, mut fresh: P) -> Result<u64, ProjectionError> {
        let feed = &self.feed;
        let mut saved = feed.saved.lock().await;
        if self.task.is_finished() || *self.stop.borrow() {
            return Err(ProjectionError::Stopped { projection: feed.handle.name().to_owned() });
        }
        fresh.reset();
        let position = replay(&*feed.store, &mut fresh, feed.batch_size)
            .instrument(tracing::info_span!("projection_rebuild", projection = %feed.handle.name()))
            .await?;
        feed.handle.swap(fresh);
        feed.save(&mut saved).await?;
        Ok(position)
    }

    /// Stops after (or instead of) the batch in hand, waits for the task, and saves the
    /// checkpoint of what the model has applied (a batch cut short by the stop may have been
    /// applied without its checkpoint).
    ///
    /// # Errors
    /// [`ProjectionError::Halted`] with the failure the runner was retrying, if any,
    /// [`ProjectionError::Stopped`] when its task panicked, or the checkpoint save's error.
    pub async fn stop(self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        let name = self.feed.handle.name().to_owned();
        let ended = self.task.await.map_err(|_| ProjectionError::Stopped { projection: name });
        let mut saved = self.feed.saved.lock().await;
        let flushed = self.feed.save(&mut saved).await;
        ended??;
        flushed
    }
}

/// What the live feed and a rebuild share.
struct Feed<P: Projection> {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    handle: ProjectionHandle<P>,
    batch_size: usize,
    /// The last checkpoint saved; held while a batch or a rebuild changes the model.
    saved: Mutex<u64>,
}

impl<P: Projection> Feed<P> {
    async fn save(&self, saved: &mut u64) -> Result<(), ProjectionError> {
        let position = self.handle.position();
        if position != *saved {
            let name = self.handle.name();
            self.checkpoints.save_checkpoint(name, position).await.map_err(|source| store_error(name, source))?;
            *saved = position;
        }
        Ok(())
    }
}

/// The runner's side of [`follow`].
struct Consumer<P: Projection> {
    feed: Arc<Feed<P>>,
    from: u64,
}

#[async_trait]
impl<P: Projection> LogConsumer for Consumer<P> {
    type Error = ProjectionError;

    fn name(&self) -> &str {
        self.feed.handle.name()
    }

    async fn start_position(&mut self) -> Result<u64, ProjectionError> {
        Ok(self.from)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), ProjectionError> {
        let mut saved = self.feed.saved.lock().await;
        let span =
            tracing::debug_span!("projection_batch", projection = %self.feed.handle.name(), events = batch.len());
        span.in_scope(|| self.feed.handle.apply_batch(batch))?;
        self.feed.save(&mut saved).await
    }

    fn bad_event(&self, error: &ProjectionError) -> Option<u64> {
        error.bad_event_position()
    }

    async fn skip(&mut self, position: u64) -> Result<(), ProjectionError> {
        let mut saved = self.feed.saved.lock().await;
        self.feed.handle.skip_to(position);
        self.feed.save(&mut saved).await
    }
}
