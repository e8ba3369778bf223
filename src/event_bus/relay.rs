//! The outbox relay: publishes the event store's global log to the bus without losing events.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{EventBus, EventBusError, Outgoing, TopicRouter};
use crate::event_store::{CheckpointStore, Envelope, EventStore};

/// How an [`OutboxRelay`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Checkpoint name; two relays with the same name share progress.
    pub name: String,
    /// Most events published (concurrently) before the checkpoint is saved.
    pub batch_size: usize,
    /// First pause after a failed publish or store read; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: "outbox-relay".to_owned(),
            batch_size: 1000,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
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
/// [`Deduplicator`](super::Deduplicator)). Failed publishes are retried with backoff without
/// moving the checkpoint.
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
    task: JoinHandle<Result<RelayStats, EventBusError>>,
}

impl RelayHandle {
    /// The last saved checkpoint, updated after every batch.
    #[must_use]
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }

    /// Asks the relay to stop after (or instead of) its current batch and waits for it.
    ///
    /// # Errors
    /// The error that ended the relay, if it failed before it was asked to stop.
    pub async fn stop(self) -> Result<RelayStats, EventBusError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| EventBusError::Config(format!("relay task failed: {e}")))?
    }

    /// Kills the relay task at once, as a crash would: nothing after the last checkpoint is saved.
    pub fn abort(self) {
        self.task.abort();
    }
}

enum Step<T> {
    Done(T),
    Stopped,
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
        let task = tokio::spawn(async move { self.run_reporting(shutdown, Some(progress_tx)).await });
        RelayHandle { stop, progress, task }
    }

    /// Relays until `shutdown` becomes `true` (or its sender is dropped).
    ///
    /// # Errors
    /// Only when the checkpoint cannot be loaded at start-up; later failures are retried.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<RelayStats, EventBusError> {
        self.run_reporting(shutdown, None).await
    }

    async fn run_reporting(
        &self,
        mut shutdown: watch::Receiver<bool>,
        progress: Option<watch::Sender<u64>>,
    ) -> Result<RelayStats, EventBusError> {
        let mut stats = RelayStats {
            checkpoint: self.checkpoints.load_checkpoint(&self.config.name).await?,
            ..RelayStats::default()
        };
        if let Some(progress) = &progress {
            progress.send_replace(stats.checkpoint);
        }
        tracing::info!(relay = %self.config.name, checkpoint = stats.checkpoint, "outbox relay starting");
        loop {
            let mut batches = self.store.subscribe(stats.checkpoint).ready_chunks(self.config.batch_size.max(1));
            loop {
                let next = tokio::select! {
                    biased;
                    () = stopped(&mut shutdown) => return Ok(stats),
                    next = batches.next() => next,
                };
                let Some(items) = next else { break };
                let mut envelopes = Vec::with_capacity(items.len());
                let mut failure = None;
                for item in items {
                    match item {
                        Ok(envelope) if envelope.global_position > stats.checkpoint => envelopes.push(envelope),
                        Ok(_) => {}
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if !envelopes.is_empty() {
                    match self.relay_batch(&envelopes, &mut shutdown, &mut stats).await {
                        Step::Done(()) => {
                            if let Some(progress) = &progress {
                                progress.send_replace(stats.checkpoint);
                            }
                        }
                        Step::Stopped => return Ok(stats),
                    }
                }
                if let Some(error) = failure {
                    tracing::warn!(relay = %self.config.name, %error, "event store subscription failed; resubscribing");
                    break;
                }
            }
            stats.retries += 1;
            if let Step::Stopped = pause(self.config.backoff, &mut shutdown).await {
                return Ok(stats);
            }
        }
    }

    /// Publishes one batch until the broker takes all of it, then saves the checkpoint.
    async fn relay_batch(
        &self,
        envelopes: &[Envelope],
        shutdown: &mut watch::Receiver<bool>,
        stats: &mut RelayStats,
    ) -> Step<()> {
        let Some(last) = envelopes.last().map(|e| e.global_position) else { return Step::Done(()) };
        let span = tracing::debug_span!("relay_batch", relay = %self.config.name, count = envelopes.len(), last);
        async {
            let topics: Vec<String> =
                envelopes.iter().map(|e| self.router.topic_for_stream(e.stream_id.as_str())).collect();
            // Each message names the event published before it: the checkpoint for the first
            // (the last event of the previous batch, or 0), then its neighbour in the batch.
            let previous = std::iter::once(stats.checkpoint).chain(envelopes.iter().map(|e| e.global_position));
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
            let mut backoff = self.config.backoff;
            loop {
                let outcome = tokio::select! {
                    biased;
                    () = stopped(shutdown) => return Step::Stopped,
                    outcome = self.bus.publish_batch(&messages) => outcome,
                };
                match outcome {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "publishing a relay batch failed; retrying the whole batch");
                        stats.retries += 1;
                        if let Step::Stopped = pause(backoff, shutdown).await {
                            return Step::Stopped;
                        }
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                }
            }
            let mut backoff = self.config.backoff;
            while let Err(error) = self.checkpoints.save_checkpoint(&self.config.name, last).await {
                tracing::warn!(%error, "saving the relay checkpoint failed; retrying");
                stats.retries += 1;
                if let Step::Stopped = pause(backoff, shutdown).await {
                    return Step::Stopped;
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
            stats.published += envelopes.len() as u64;
            stats.batches += 1;
            stats.checkpoint = last;
            Step::Done(())
        }
        .instrument(span)
        .await
    }
}

/// Resolves once a stop was requested or nobody can request one any more.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn pause(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> Step<()> {
    tokio::select! {
        biased;
        () = stopped(shutdown) => Step::Stopped,
        () = tokio::time::sleep(duration) => Step::Done(()),
    }
}
