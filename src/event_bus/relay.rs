//! The outbox relay: publishes the event store's global log to the bus without losing events.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{EventBus, EventBusError, Outgoing, TopicRouter};
use crate::event_store::{
    BadEventPolicy, CheckpointStore, Envelope, EventStore, FollowConfig, FollowStatus, LogConsumer, RetryPolicy, follow,
};

/// How an [`OutboxRelay`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Checkpoint name; two relays with the same name share progress.
    pub name: String,
    /// Most events published (concurrently) before the checkpoint is saved.
    pub batch_size: usize,
    /// Pauses between attempts after a failed publish, checkpoint save or store read.
    pub retry: RetryPolicy,
    /// What to do with a stored event that cannot be read: quarantined, it is not published
    /// (and the next message names the last event published before it as its predecessor).
    pub bad_events: BadEventPolicy,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: "outbox-relay".to_owned(),
            batch_size: 1000,
            retry: RetryPolicy::default(),
            bad_events: BadEventPolicy::default(),
        }
    }
}

/// What a relay did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Events published and covered by a saved checkpoint.
    pub published: u64,
    /// Batches checkpointed.
    pub batches: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// The last checkpoint saved.
    pub checkpoint: u64,
}

/// Follows the event store's global log from a checkpoint and publishes every event to its
/// topic, keyed by stream id, stamped with the global position of the event published before it
/// ([`Outgoing::previous_position`]; 0 for the first event of the log).
///
/// The stamp depends only on the log, so a relay restarted from its checkpoint stamps a
/// republished event exactly as before: the checkpoint is always the position of the last event
/// of a published batch. It lets a consumer of all the topics (see
/// `BusProjectionRunner` in the projections layer) restore the global order and tell a gap that
/// will fill (an event still in flight on another partition) from a burnt position that never
/// will.
///
/// The store is the outbox: the relay only publishes what the store's subscription yields, which
/// is committed events in global order. The checkpoint is saved only after the broker has
/// acknowledged every event up to it, so a crash between publish and checkpoint republishes
/// (never skips) events; consumers drop the duplicates by event id or stream version (see
/// [`Deduplicator`](super::Deduplicator)). It runs on the event store's
/// [`follow`](crate::event_store::follow): a failed publish or checkpoint save retries the same
/// batch with the [`RetryPolicy`] without moving the checkpoint (a batch the broker took whose
/// checkpoint save failed is not published again, only its save is retried).
pub struct OutboxRelay {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    checkpoints: Arc<dyn CheckpointStore>,
    router: TopicRouter,
    config: RelayConfig,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("router", &self.router)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A relay running in a background task.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    progress: watch::Receiver<u64>,
    status: watch::Receiver<FollowStatus>,
    task: JoinHandle<Result<RelayStats, EventBusError>>,
}

impl RelayHandle {
    /// The last saved checkpoint, updated after every batch.
    #[must_use]
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }

    /// How the relay is doing: position, retries, and the failure it is retrying, if any.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<FollowStatus> {
        self.status.clone()
    }

    /// Asks the relay to stop after (or instead of) its current batch and waits for it.
    ///
    /// # Errors
    /// [`EventBusError::Relay`] when the relay was retrying a failure when it stopped, or
    /// [`EventBusError::RelayTask`] when its task panicked.
    pub async fn stop(self) -> Result<RelayStats, EventBusError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(EventBusError::RelayTask)?
    }

    /// Kills the relay task at once, as a crash would: nothing after the last checkpoint is saved.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl OutboxRelay {
    /// A relay from `store` to `bus` that routes with `router` and keeps its checkpoint in
    /// `checkpoints`.
    #[must_use]
    pub fn new(
        store: Arc<dyn EventStore>,
        bus: Arc<dyn EventBus>,
        checkpoints: Arc<dyn CheckpointStore>,
        router: TopicRouter,
        config: RelayConfig,
    ) -> Self {
        Self { store, bus, checkpoints, router, config }
    }

    /// Runs the relay in a background task.
    #[must_use]
    pub fn spawn(self) -> RelayHandle {
        let (stop, shutdown) = watch::channel(false);
        let (progress_tx, progress) = watch::channel(0);
        let status_tx = watch::Sender::new(FollowStatus::default());
        let status = status_tx.subscribe();
        let task = tokio::spawn(async move { self.run_reporting(shutdown, &progress_tx, &status_tx).await });
        RelayHandle { stop, progress, status, task }
    }

    /// Relays until `shutdown` becomes `true` (or its sender is dropped).
    ///
    /// # Errors
    /// [`EventBusError::Relay`] when the relay was retrying a failure (loading its checkpoint,
    /// reading the store, publishing or saving) when it stopped, or its retry policy gave up.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<RelayStats, EventBusError> {
        self.run_reporting(shutdown, &watch::Sender::new(0), &watch::Sender::new(FollowStatus::default())).await
    }

    async fn run_reporting(
        &self,
        shutdown: watch::Receiver<bool>,
        progress: &watch::Sender<u64>,
        status: &watch::Sender<FollowStatus>,
    ) -> Result<RelayStats, EventBusError> {
        let mut publisher = Publisher { relay: self, progress, checkpoint: 0, sent: None, published: 0, batches: 0 };
        let config = FollowConfig {
            max_batch: self.config.batch_size.max(1),
            retry: self.config.retry,
            bad_events: self.config.bad_events,
        };
        let span = tracing::info_span!("outbox_relay", relay = %self.config.name);
        let outcome = follow(&*self.store, &mut publisher, &config, shutdown, status).instrument(span).await;
        let done = RelayStats {
            published: publisher.published,
            batches: publisher.batches,
            retries: status.borrow().retries,
            checkpoint: publisher.checkpoint,
        };
        match outcome {
            Ok(_) => Ok(done),
            Err(source) => Err(EventBusError::Relay { relay: self.config.name.clone(), source }),
        }
    }
}

/// The relay's side of [`follow`]: publishes a batch, then saves its checkpoint.
struct Publisher<'a> {
    relay: &'a OutboxRelay,
    progress: &'a watch::Sender<u64>,
    /// The last checkpoint saved (or loaded).
    checkpoint: u64,
    /// The last position of a batch the broker took whose checkpoint is not saved yet.
    sent: Option<u64>,
    published: u64,
    batches: u64,
}

#[async_trait]
impl LogConsumer for Publisher<'_> {
    type Error = EventBusError;

    fn name(&self) -> &str {
        &self.relay.config.name
    }

    async fn start_position(&mut self) -> Result<u64, EventBusError> {
        self.checkpoint = self.relay.checkpoints.load_checkpoint(&self.relay.config.name).await?;
        self.progress.send_replace(self.checkpoint);
        tracing::info!(relay = %self.relay.config.name, checkpoint = self.checkpoint, "outbox relay starting");
        Ok(self.checkpoint)
    }

    async fn handle(&mut self, envelopes: &[Envelope]) -> Result<(), EventBusError> {
        let Some(last) = envelopes.last().map(|e| e.global_position) else { return Ok(()) };
        let span = tracing::debug_span!("relay_batch", relay = %self.relay.config.name, count = envelopes.len(), last);
        async {
            if self.sent != Some(last) {
                self.publish(envelopes).await?;
                self.sent = Some(last);
            }
            self.relay.checkpoints.save_checkpoint(&self.relay.config.name, last).await?;
            self.sent = None;
            self.published += envelopes.len() as u64;
            self.batches += 1;
            self.checkpoint = last;
            self.progress.send_replace(last);
            Ok(())
        }
        .instrument(span)
        .await
    }
}

impl Publisher<'_> {
    /// Publishes one batch; the broker takes all of it or the call fails.
    async fn publish(&self, envelopes: &[Envelope]) -> Result<(), EventBusError> {
        let router = &self.relay.router;
        let topics: Vec<String> = envelopes.iter().map(|e| router.topic_for_stream(e.stream_id.as_str())).collect();
        // Each message names the event published before it: the checkpoint for the first (the
        // last event of the previous batch, or 0), then its neighbour in the batch.
        let previous = std::iter::once(self.checkpoint).chain(envelopes.iter().map(|e| e.global_position));
        let messages: Vec<Outgoing<'_>> = envelopes
            .iter()
            .zip(&topics)
            .zip(previous)
            .map(|((envelope, topic), previous)| Outgoing {
                topic,
                key: envelope.stream_id.as_str(),
                envelope,
                previous_position: Some(previous),
            })
            .collect();
        self.relay.bus.publish_batch(&messages).await
    }
}
