//! The one saga feed: follows the event store's global log from its checkpoint. It is the only
//! place this process learns what was committed, by itself or by any other process, and the only
//! path on which the saga reacts: the store's subscription wakes it at once for this process's own
//! appends, and the same log is the source after a crash.
//!
//! For every event it arms or disarms hold deadlines and wakes API calls waiting on a
//! reservation; events after the checkpoint get their saga reactions, which run concurrently
//! (a slow gateway holds up only its own purchase). The checkpoint (and the published frontier
//! that `settled()` waits on) only moves past an event once its reactions are recorded, so a
//! step cut short by a crash or a shutdown is carried out by the next process. The open holds are
//! saved beside the checkpoint, so a restart re-arms them without reading the log from its start.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use super::context::CommandContext;
use super::expiry::{ExpiryIndex, OpenHold};
use super::reservation_watch::ReservationWatch;
use super::saga::{Saga, Stopped};
use crate::aggregates::TicketingAction;
use crate::event_store::{CheckpointStore, Envelope, EventStore, EventStoreError, Snapshot, StreamId};

/// Most events read per batch.
const BATCH: usize = 512;
/// Most reactions in flight at once; reading waits while this many run.
const IN_FLIGHT: usize = 4_096;
/// How often, at most, the checkpoint is saved while events keep coming.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// How often, at most, the open holds are saved while events keep coming.
const HOLDS_EVERY: Duration = Duration::from_secs(1);
/// Shape version of the saved open holds.
const HOLDS_SCHEMA_VERSION: u32 = 1;

/// The open holds as saved: every hold open after the event at `position` was read.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedHolds {
    holds: Vec<OpenHold>,
}

/// Everything the follower feeds.
pub(crate) struct Follower {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) checkpoints: Arc<dyn CheckpointStore>,
    pub(crate) name: String,
    pub(crate) saga: Saga,
    pub(crate) watch: ReservationWatch,
    pub(crate) expiry: ExpiryIndex,
    /// Every event at or before this position has been read and its reactions recorded.
    pub(crate) frontier: watch::Sender<u64>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Follower {
    fn holds_stream(&self) -> Result<StreamId, EventStoreError> {
        StreamId::new(format!("saga-holds-{}", self.name))
    }

    /// Where to start: the checkpoint, and the saved holds (read from their position, which is at
    /// or before the checkpoint, so every later initiation is seen again).
    async fn start(&self) -> Result<(u64, u64), EventStoreError> {
        let checkpoint = self.checkpoints.load_checkpoint(&self.name).await?;
        if checkpoint == 0 {
            return Ok((0, 0));
        }
        let saved = self.store.load_snapshot(&self.holds_stream()?).await?;
        let holds = saved
            .filter(|s| s.schema_version == HOLDS_SCHEMA_VERSION && s.stream_version <= checkpoint)
            .and_then(|s| serde_json::from_str::<SavedHolds>(&s.state).ok().map(|h| (s.stream_version, h.holds)));
        let Some((position, holds)) = holds else {
            // Nothing saved (a log written by an older release): the holds come from the log.
            return Ok((checkpoint, 0));
        };
        for hold in holds {
            self.expiry.arm(hold);
        }
        Ok((checkpoint, position))
    }

    /// Runs until the stop signal.
    pub(crate) async fn run(self) {
        let mut stop = self.stop.clone();
        let mut backoffs = crate::event_store::RetryPolicy::default().backoff();
        let (checkpoint, mut after) = loop {
            match self.start().await {
                Ok(start) => break start,
                Err(error) => {
                    tracing::error!(%error, name = %self.name, "cannot load the saga checkpoint; retrying");
                    let delay = backoffs.next().unwrap_or(Duration::from_secs(1));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            }
        };
        let mut progress = Progress::new(checkpoint, after);
        self.frontier.send_replace(after);
        let mut running: FuturesUnordered<BoxFuture<'static, (u64, Result<(), Stopped>)>> = FuturesUnordered::new();
        loop {
            let mut batches = self.store.subscribe(after).ready_chunks(BATCH);
            let failed = loop {
                tokio::select! {
                    biased;
                    () = stopped(&mut stop) => {
                        self.finish(&mut progress).await;
                        return;
                    }
                    Some((position, outcome)) = running.next() => {
                        progress.done(position, outcome.is_ok());
                    }
                    batch = batches.next(), if running.len() < IN_FLIGHT => {
                        let Some(batch) = batch else { break None };
                        let mut failed = None;
                        for item in batch {
                            match item {
                                Ok(envelope) => {
                                    after = envelope.global_position;
                                    if let Some(reaction) = self.read(&envelope, checkpoint) {
                                        progress.started(after);
                                        running.push(reaction);
                                    }
                                    progress.read(after);
                                }
                                Err(error) => failed = Some(error),
                            }
                        }
                        if failed.is_some() {
                            break failed;
                        }
                    }
                }
                self.publish(&mut progress, false).await;
            };
            if let Some(error) = failed {
                tracing::warn!(%error, after, "log subscription failed; resubscribing");
            }
            let delay = backoffs.next().unwrap_or(Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopped(&mut stop) => {
                    self.finish(&mut progress).await;
                    return;
                }
            }
        }
    }

    /// Feeds one event to the deadlines and the waiters, and returns its reactions to run.
    fn read(&self, envelope: &Envelope, checkpoint: u64) -> Option<BoxFuture<'static, (u64, Result<(), Stopped>)>> {
        let action = match TicketingAction::decode(envelope) {
            Ok(action) => action,
            Err(error) => {
                tracing::warn!(%error, position = envelope.global_position, "skipping an event that is not a ticketing event");
                return None;
            }
        };
        let context = CommandContext::caused_by(envelope.event_id, &envelope.metadata);
        if let TicketingAction::Reservation(event) = &action {
            self.expiry.observe(event, envelope.event_id, context.correlation_id);
            self.watch.observe(event);
        }
        if envelope.global_position <= checkpoint || !Saga::reacts_to(&action) {
            return None;
        }
        let (saga, position) = (self.saga.clone(), envelope.global_position);
        Some(Box::pin(async move { (position, saga.react(&action, context).await) }))
    }

    /// Publishes the frontier and saves the checkpoint (and, less often, the open holds).
    async fn publish(&self, progress: &mut Progress, force: bool) {
        let frontier = progress.frontier();
        if frontier > *self.frontier.borrow() {
            self.frontier.send_replace(frontier);
        }
        if frontier > progress.saved && (force || progress.saved_at.elapsed() >= CHECKPOINT_EVERY) {
            if force || progress.holds_saved_at.elapsed() >= HOLDS_EVERY {
                self.save_holds(frontier).await;
                progress.holds_saved_at = Instant::now();
            }
            match self.checkpoints.save_checkpoint(&self.name, frontier).await {
                Ok(()) => progress.saved = frontier,
                Err(error) => tracing::warn!(%error, frontier, "cannot save the saga checkpoint; will retry"),
            }
            progress.saved_at = Instant::now();
        }
    }

    async fn save_holds(&self, position: u64) {
        let saved = SavedHolds { holds: self.expiry.open_holds() };
        let snapshot = match (self.holds_stream(), serde_json::to_string(&saved)) {
            (Ok(stream_id), Ok(state)) => {
                Snapshot { stream_id, stream_version: position, state, schema_version: HOLDS_SCHEMA_VERSION }
            }
            (Err(error), _) => return tracing::warn!(%error, "cannot name the open holds' snapshot"),
            (_, Err(error)) => return tracing::warn!(%error, "cannot serialise the open holds"),
        };
        if let Err(error) = self.store.save_snapshot(snapshot).await {
            tracing::warn!(%error, position, "cannot save the open holds; a restart reads further back");
        }
    }

    async fn finish(&self, progress: &mut Progress) {
        self.publish(progress, true).await;
    }
}

/// Which events have been read and which of them still have reactions running.
struct Progress {
    /// The last event read.
    read: u64,
    /// Events whose reactions are running, or were cut short by a stop.
    unfinished: BTreeSet<u64>,
    saved: u64,
    saved_at: Instant,
    holds_saved_at: Instant,
}

impl Progress {
    fn new(checkpoint: u64, after: u64) -> Self {
        let now = Instant::now();
        Self { read: after, unfinished: BTreeSet::new(), saved: checkpoint, saved_at: now, holds_saved_at: now }
    }

    fn read(&mut self, position: u64) {
        self.read = position;
    }

    fn started(&mut self, position: u64) {
        self.unfinished.insert(position);
    }

    fn done(&mut self, position: u64, recorded: bool) {
        if recorded {
            self.unfinished.remove(&position);
        }
    }

    /// Every event at or before it is read and its reactions recorded.
    fn frontier(&self) -> u64 {
        self.unfinished.first().map_or(self.read, |first| first - 1)
    }
}

/// Resolves once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
