//! The one saga feed: follows the event store's global log from its checkpoint, on the crate's
//! one [`follow`] runner. It is the only
//! place this process learns what was committed, by itself or by any other process, and the only
//! path on which the saga reacts: the store's subscription wakes it at once for this process's own
//! appends, and the same log is the source after a crash.
//!
//! For every event it arms or disarms hold deadlines and wakes API calls waiting on a
//! reservation; events after the checkpoint get their saga reactions, which run concurrently
//! (a slow gateway holds up only its own purchase). The checkpoint (and the published frontier
//! that `settled()` waits on) only moves past an event once its reactions are recorded, so a
//! step cut short by a crash or a shutdown is carried out by the next process. The open holds are
//! saved beside the checkpoint with the open charges and refunds, so a restart re-arms them and
//! reconciles the payments without reading the log from its start.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};

use super::context::CommandContext;
use super::expiry::{ExpiryIndex, OpenHold};
use super::open_payments::{OpenPayments, OpenSet};
use super::reservation_watch::ReservationWatch;
use super::saga::Saga;
use crate::aggregates::{PaymentAction, StreamDecodeError, TicketingAction};
use crate::event_store::{
    BadEventPolicy, CheckpointStore, Envelope, EventStore, EventStoreError, FollowConfig, FollowStatus, LogConsumer,
    RetryPolicy, Snapshot, StreamId, follow,
};

/// Most events read per batch.
const BATCH: usize = 512;
/// Most reactions in flight at once; reading waits while this many run.
const IN_FLIGHT: usize = 4_096;
/// How often, at most, the checkpoint is saved while events keep coming.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// How often, at most, the open holds are saved while events keep coming.
const HOLDS_EVERY: Duration = Duration::from_secs(1);
/// Shape version of the saved open holds and payments (1 had no payments: read the log again).
const HOLDS_SCHEMA_VERSION: u32 = 2;

/// The open holds and payments as saved: every one open after the event at `position` was read.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedHolds {
    holds: Vec<OpenHold>,
    payments: OpenSet,
}

/// Everything the follower feeds.
#[derive(Clone)]
pub(crate) struct Follower {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) checkpoints: Arc<dyn CheckpointStore>,
    pub(crate) name: String,
    pub(crate) saga: Saga,
    pub(crate) watch: ReservationWatch,
    pub(crate) expiry: ExpiryIndex,
    pub(crate) open: OpenPayments,
    /// Every event at or before this position has been read and its reactions recorded.
    pub(crate) frontier: watch::Sender<u64>,
    /// How its reading of the log is doing.
    pub(crate) status: watch::Sender<FollowStatus>,
    pub(crate) stop: watch::Receiver<bool>,
    /// What to do with a ticketing event it cannot read.
    pub(crate) bad_events: BadEventPolicy,
}

impl Follower {
    /// Runs until the stop signal, on the crate's one [`follow`] runner.
    pub(crate) async fn run(self) {
        let stop = self.stop.clone();
        let status = self.status.clone();
        let progress = Arc::new(Mutex::new(Progress::new()));
        let checkpointer = tokio::spawn(Checkpointer { follower: self.clone(), progress: Arc::clone(&progress) }.run());
        let bad_events = self.bad_events;
        let mut consumer =
            SagaConsumer { follower: self, progress, in_flight: Arc::new(Semaphore::new(IN_FLIGHT)), checkpoint: 0 };
        let config = FollowConfig { max_batch: BATCH, retry: RetryPolicy::default(), bad_events };
        let store = Arc::clone(&consumer.follower.store);
        if let Err(error) = follow(store.as_ref(), &mut consumer, &config, stop, &status).await {
            tracing::error!(%error, "the saga's log follower stopped");
        }
        if let Err(error) = checkpointer.await {
            tracing::error!(%error, "the saga's checkpointer failed");
        }
    }

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
            .and_then(|s| serde_json::from_str::<SavedHolds>(&s.state).ok().map(|h| (s.stream_version, h)));
        let Some((position, saved)) = holds else {
            // Nothing saved (a log written by an older release): the holds come from the log.
            return Ok((checkpoint, 0));
        };
        for hold in saved.holds {
            self.expiry.arm(hold);
        }
        self.open.restore(saved.payments);
        Ok((checkpoint, position))
    }

    /// Feeds one event to the deadlines and the waiters, and returns what the saga must do.
    /// Reads `envelope` into the follower's indexes; returns what the saga reacts to. Events of
    /// streams that are not ticketing aggregates (the follower's own snapshots, an app's streams
    /// in the same store) are passed over.
    ///
    /// # Errors
    /// A ticketing event that cannot be read (a payload of the wrong shape, a newer schema
    /// version): a bad event, quarantined by [`follow`].
    fn read(
        &self,
        envelope: &Envelope,
        checkpoint: u64,
    ) -> Result<Option<(TicketingAction, CommandContext)>, StreamDecodeError> {
        let action = match TicketingAction::decode(envelope) {
            Ok(action) => action,
            Err(StreamDecodeError::UnknownCategory { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let context = CommandContext::caused_by(envelope.event_id, &envelope.metadata);
        self.open.observe(&action, envelope.event_id, context.correlation_id);
        if let TicketingAction::Payment(PaymentAction::PaymentOutcomeUnknown { reservation_id, .. }) = &action {
            self.watch.observe_payment_unknown(*reservation_id);
        }
        if let TicketingAction::Reservation(event) = &action {
            if event.is_ending()
                && let Some(reservation_id) = event.reservation_id()
            {
                // No charge follows an ending: a token still kept for it is dropped.
                drop(self.saga.vault.take(reservation_id));
            }
            self.expiry.observe(event, envelope.event_id, context.correlation_id);
            self.watch.observe(event);
        }
        Ok((envelope.global_position > checkpoint && Saga::reacts_to(&action)).then_some((action, context)))
    }

    async fn save_holds(&self, position: u64) {
        let saved = SavedHolds { holds: self.expiry.open_holds(), payments: self.open.snapshot() };
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
}

/// The follower as a consumer of the log: reads each batch, starts its reactions and returns;
/// the reactions report to [`Progress`] when recorded.
struct SagaConsumer {
    follower: Follower,
    progress: Arc<Mutex<Progress>>,
    /// Bounds the reactions in flight: reading waits while all permits are taken.
    in_flight: Arc<Semaphore>,
    checkpoint: u64,
}

/// Why the follower could not take a batch.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    /// The store failed (or closed).
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// A ticketing event that cannot be read.
    #[error(transparent)]
    Bad(#[from] StreamDecodeError),
}

#[async_trait]
impl LogConsumer for SagaConsumer {
    type Error = FeedError;

    fn name(&self) -> &str {
        &self.follower.name
    }

    async fn start_position(&mut self) -> Result<u64, FeedError> {
        let (checkpoint, after) = self.follower.start().await?;
        self.checkpoint = checkpoint;
        lock(&self.progress).restart(checkpoint, after);
        self.follower.frontier.send_replace(after);
        Ok(after)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), FeedError> {
        for envelope in batch {
            let position = envelope.global_position;
            // A batch handed over again (after a bad event) is not reacted to twice.
            if position <= lock(&self.progress).read {
                continue;
            }
            if let Some((action, context)) = self.follower.read(envelope, self.checkpoint)? {
                let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                    return Err(EventStoreError::Closed.into());
                };
                lock(&self.progress).started(position);
                let (saga, progress, frontier) =
                    (self.follower.saga.clone(), Arc::clone(&self.progress), self.follower.frontier.clone());
                // The token for a charge is taken as its request is read, before any later
                // ending of the reservation can drop it.
                let token = saga.token_for(&action);
                tokio::spawn(async move {
                    let recorded = saga.react(&action, context, token).await.is_ok();
                    let reached = lock(&progress).done(position, recorded);
                    publish(&frontier, reached);
                    drop(permit);
                });
            }
            let reached = lock(&self.progress).read(position);
            publish(&self.follower.frontier, reached);
        }
        Ok(())
    }

    fn bad_event(&self, error: &FeedError) -> Option<u64> {
        match error {
            FeedError::Store(error) => error.bad_event_position(),
            FeedError::Bad(error) => Some(error.global_position()),
        }
    }

    async fn skip(&mut self, position: u64) -> Result<(), FeedError> {
        let reached = lock(&self.progress).read(position);
        publish(&self.follower.frontier, reached);
        Ok(())
    }
}

fn publish(frontier: &watch::Sender<u64>, reached: u64) {
    frontier.send_if_modified(|current| {
        let moved = reached > *current;
        if moved {
            *current = reached;
        }
        moved
    });
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Saves the checkpoint (every [`CHECKPOINT_EVERY`] at most while the frontier moves) and the open
/// holds (every [`HOLDS_EVERY`] at most), and both once more when the system stops.
struct Checkpointer {
    follower: Follower,
    progress: Arc<Mutex<Progress>>,
}

impl Checkpointer {
    async fn run(self) {
        let mut frontier = self.follower.frontier.subscribe();
        let mut stop = self.follower.stop.clone();
        let mut holds_saved_at = Instant::now();
        let mut holds_at = 0;
        loop {
            let stopping = tokio::select! {
                changed = frontier.changed() => changed.is_err(),
                () = stopped(&mut stop) => true,
            };
            if !stopping {
                tokio::select! {
                    () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                    () = stopped(&mut stop) => {}
                }
            }
            let (reached, saved) = {
                let progress = lock(&self.progress);
                (progress.frontier(), progress.saved)
            };
            let stopping = stopping || *stop.borrow();
            // The open holds are saved at least at the last checkpoint before stopping, even when
            // that checkpoint was written earlier without them: a restart then reads nothing
            // before its checkpoint again.
            if reached > holds_at && (stopping || holds_saved_at.elapsed() >= HOLDS_EVERY) {
                self.follower.save_holds(reached).await;
                (holds_at, holds_saved_at) = (reached, Instant::now());
            }
            if reached > saved {
                match self.follower.checkpoints.save_checkpoint(&self.follower.name, reached).await {
                    Ok(()) => lock(&self.progress).saved = reached,
                    Err(error) => tracing::warn!(%error, reached, "cannot save the saga checkpoint; will retry"),
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// Which events have been read and which of them still have reactions running.
struct Progress {
    /// The last event read.
    read: u64,
    /// Events whose reactions are running, or were cut short by a stop.
    unfinished: BTreeSet<u64>,
    /// The last checkpoint saved.
    saved: u64,
}

impl Progress {
    fn new() -> Self {
        Self { read: 0, unfinished: BTreeSet::new(), saved: 0 }
    }

    fn restart(&mut self, checkpoint: u64, after: u64) {
        *self = Self { read: after, unfinished: BTreeSet::new(), saved: checkpoint };
    }

    /// Records that `position` was read; returns the frontier.
    fn read(&mut self, position: u64) -> u64 {
        self.read = self.read.max(position);
        self.frontier()
    }

    fn started(&mut self, position: u64) {
        self.unfinished.insert(position);
    }

    /// Records that the reactions to `position` ended (recorded, or cut short by a stop: then
    /// the frontier stays before it); returns the frontier.
    fn done(&mut self, position: u64, recorded: bool) -> u64 {
        if recorded {
            self.unfinished.remove(&position);
        }
        self.frontier()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::{Section, TicketingEnv};
    use crate::domain::{Capacity, Currency, CustomerId, Money, PricingTier, SectionName, TierKind, Venue, VenueId};
    use crate::event_store::{MemoryCheckpointStore, MemoryEventStore};
    use crate::framework::{Clock, FixedClock};
    use crate::system::commands::{CommandRouter, EngineConfig};
    use crate::system::saga::SagaParts;
    use crate::system::vault::TokenVault;
    use crate::system::{EventSpec, PaymentDetails, ReserveRequest, SimulatedGateway, TicketingSystem};
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_frontier_stops_before_a_step_cut_short_and_passes_recorded_ones() {
        let mut progress = Progress::new();
        progress.restart(10, 10);
        for position in [11, 12, 13] {
            progress.started(position);
            progress.read(position);
        }
        assert_eq!(progress.read(14), 10, "nothing recorded yet");
        assert_eq!(progress.done(12, true), 10, "12 is recorded, 11 still runs");
        assert_eq!(progress.done(11, false), 10, "11 was cut short by a stop: the next process redoes it");
        assert_eq!(progress.done(13, true), 10);
        let mut fresh = Progress::new();
        fresh.restart(10, 10);
        fresh.started(11);
        fresh.read(12);
        assert_eq!(fresh.done(11, true), 12, "everything read and recorded");
    }

    #[tokio::test]
    async fn a_restart_resumes_at_the_checkpoint_with_the_open_holds_re_armed() {
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
        let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
        let checkpoints: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
        let system = TicketingSystem::builder()
            .event_store(Arc::clone(&store))
            .checkpoints(Arc::clone(&checkpoints))
            .clock(Arc::new(clock.clone()))
            .build()
            .await
            .unwrap();
        let stalls = SectionName::new("Stalls").unwrap();
        let price = Money::new(1_000, Currency::EUR);
        let event = system
            .create_event(EventSpec {
                name: "Restart".into(),
                venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
                date: clock.now() + chrono::Duration::days(3),
                sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(50).unwrap() }],
                pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls.clone(), price, None).unwrap()],
                policy: crate::aggregates::SalesPolicy::default(),
            })
            .await
            .unwrap();
        system.publish_event(event).await.unwrap();
        system.open_sales(event).await.unwrap();
        let request = |quantity| ReserveRequest {
            event_id: event,
            section: stalls.clone(),
            quantity,
            customer_id: CustomerId::new_v4(),
            idempotency_key: None,
        };
        for _ in 0..5 {
            let hold = system.reserve(request(2)).await.unwrap();
            system.pay(hold.reservation_id, PaymentDetails { token: "tok".into() }).await.unwrap();
        }
        let open = system.reserve(request(3)).await.unwrap();
        system.settled().await.unwrap();
        system.shutdown().await;

        let checkpoint = checkpoints.load_checkpoint("boxoffice-saga").await.unwrap();
        assert_eq!(checkpoint, store.head_position().await.unwrap(), "the checkpoint is the whole log");

        let (frontier, _) = watch::channel(0);
        let (_stop_tx, stop) = watch::channel(false);
        let expiry = ExpiryIndex::new(Arc::new(clock.clone()));
        let env = TicketingEnv::new(Arc::new(clock.clone()));
        let router = CommandRouter::new(&store, &env, EngineConfig::default());
        let follower = Follower {
            store: Arc::clone(&store),
            checkpoints,
            name: "boxoffice-saga".into(),
            saga: Saga::new(
                router,
                SagaParts {
                    gateway: Arc::new(SimulatedGateway::always_succeed()),
                    vault: TokenVault::default(),
                    open: OpenPayments::default(),
                    retry: RetryPolicy::default(),
                    stop: stop.clone(),
                },
            ),
            watch: ReservationWatch::default(),
            expiry: expiry.clone(),
            open: OpenPayments::default(),
            frontier,
            status: watch::Sender::new(FollowStatus::default()),
            stop,
            bad_events: BadEventPolicy::default(),
        };
        let (resumed_at, read_from) = follower.start().await.unwrap();
        assert_eq!(resumed_at, checkpoint);
        assert_eq!(read_from, checkpoint, "nothing before the checkpoint is read again");
        let armed: Vec<_> = expiry.open_holds().into_iter().map(|h| h.reservation_id).collect();
        assert_eq!(armed, vec![open.reservation_id], "the open hold is re-armed, the completed ones are not");
    }
}
