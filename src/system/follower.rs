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
//!
//! It reacts only to the events its own node appended (and to those of nodes that are gone,
//! [`peers`](super::peers)); another live node's events are parked, and count as unfinished, until
//! that node's record says their reactions are recorded. So the frontier, and the checkpoint
//! every node saves under the same name, still means "every event at or before it has its
//! reactions recorded", whoever carried them out, and any node may restart from it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::{BoxFuture, join_all};
use smallvec::SmallVec;
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::commands::Committed;
use super::context::CommandContext;
use super::expiry::{ExpiryIndex, OpenHold};
use super::open_payments::{OpenPayments, OpenSet};
use super::peers::{BEAT, Beat, Foreign, NodeRecord, Parked, read_record};
use super::reservation_watch::ReservationWatch;
use super::saga::{Appended, ChargeToken, Saga, Share, Stopped};
use super::writers::{self, Inventory, Writers};
use crate::aggregates::{PaymentAction, Reaction, StreamDecodeError, TicketingAction, reactions};
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
/// How often the records of the nodes whose events are parked here are read.
const PEER_POLL: Duration = Duration::from_millis(50);

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
    pub(crate) expiry: ExpiryIndex,
    pub(crate) open: OpenPayments,
    /// What the reader shares with the reactions: this node (the one stamped on what this
    /// system appends), the frontier, the calls waiting on reservations ([`Shared::new`]).
    pub(crate) shared: Shared,
    /// How its reading of the log is doing.
    pub(crate) status: watch::Sender<FollowStatus>,
    pub(crate) stop: watch::Receiver<bool>,
    /// What to do with a ticketing event it cannot read.
    pub(crate) bad_events: BadEventPolicy,
}

impl Follower {
    /// What this node's API calls use to start the follow-ups of what they append at once.
    pub(crate) fn at_once(&self) -> AtOnce {
        AtOnce { saga: self.saga.clone(), shared: self.shared.clone() }
    }

    /// Runs until the stop signal, on the crate's one [`follow`] runner.
    pub(crate) async fn run(self) {
        let stop = self.stop.clone();
        let status = self.status.clone();
        let shared = self.shared.clone();
        let reactor = Reactor {
            saga: self.saga.clone(),
            store: Arc::clone(&self.store),
            shared: shared.clone(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        };
        let foreign = Arc::new(Mutex::new(Foreign::default()));
        let checkpointer = tokio::spawn(Checkpointer { follower: self.clone(), shared: shared.clone() }.run());
        let peers = tokio::spawn(
            PeerWatch { follower: self.clone(), reactor: reactor.clone(), foreign: Arc::clone(&foreign) }.run(),
        );
        let bad_events = self.bad_events;
        let mut consumer =
            SagaConsumer { follower: self, reactor, foreign, checkpoint: 0, started_at: 0, claimed: HashSet::new() };
        let config = FollowConfig { max_batch: BATCH, retry: RetryPolicy::default(), bad_events };
        let store = Arc::clone(&consumer.follower.store);
        if let Err(error) = follow(store.as_ref(), &mut consumer, &config, stop, &status).await {
            tracing::error!(%error, "the saga's log follower stopped");
        }
        if let Err(error) = peers.await {
            tracing::error!(%error, "the saga's watch of other nodes failed");
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
            self.shared.watch.observe_payment_unknown(*reservation_id);
        }
        if let TicketingAction::Reservation(event) = &action {
            if event.is_ending()
                && let Some(reservation_id) = event.reservation_id()
            {
                // No charge follows an ending: a token still kept for it is dropped.
                drop(self.saga.vault.take(reservation_id));
            }
            self.expiry.observe(event, envelope.event_id, context.correlation_id);
            self.shared.watch.observe(event);
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

/// The progress shared by the reader, the reactions, the watch of other nodes and the
/// checkpointer, with the two frontiers it publishes, and what the reactions started at once
/// need of the reader's knowledge.
#[derive(Clone)]
pub(crate) struct Shared {
    progress: Arc<Mutex<Progress>>,
    /// Every event at or before it is read and its reactions recorded, by whichever node.
    frontier: watch::Sender<u64>,
    /// Every event of this node at or before it is read and its reactions recorded: what this
    /// node's record tells the others.
    own: watch::Sender<u64>,
    /// The calls waiting on reservations: told of what this node's steps append for its own
    /// saga as those steps commit (and again, to no effect, when the reader reads it).
    watch: ReservationWatch,
    /// The inventories' writers, as claimed in the log read so far.
    writers: Arc<Mutex<Writers>>,
    /// Whether the reader has seen another node's event appended since it started: only then
    /// does this node claim inventories.
    others_seen: Arc<AtomicBool>,
    /// This node.
    node: Uuid,
}

impl Shared {
    /// The shared state of a follower that publishes `frontier`, wakes `watch`'s waiters and
    /// runs as `node`.
    pub(crate) fn new(frontier: watch::Sender<u64>, watch: ReservationWatch, node: Uuid) -> Self {
        Self {
            progress: Arc::new(Mutex::new(Progress::new())),
            frontier,
            own: watch::Sender::new(0),
            watch,
            writers: Arc::new(Mutex::new(Writers::default())),
            others_seen: Arc::new(AtomicBool::new(false)),
            node,
        }
    }

    /// Whether this node writes `inventory` for its own event at `position`, as far as the claims
    /// read so far tell: its claim is the last before `position`, or nobody claimed it and no
    /// other node is at work (then the event's node writes it, and nobody would claim it first).
    /// A claim not read yet can only make the step run twice, which the inventory takes as done.
    fn writes(&self, inventory: &Inventory, position: u64) -> bool {
        match lock(&self.writers).lookup(inventory, position) {
            Some((Some(writer), _)) => writer == self.node,
            Some((None, _)) => !self.others_seen.load(Ordering::SeqCst),
            None => false,
        }
    }

    /// Changes the progress and publishes both frontiers.
    fn update<T>(&self, change: impl FnOnce(&mut Progress) -> T) -> T {
        let mut progress = lock(&self.progress);
        let result = change(&mut progress);
        publish(&self.frontier, progress.frontier());
        publish(&self.own, progress.own_frontier());
        result
    }
}

/// Starts the saga's reactions to an event, each on its own task, at most [`IN_FLIGHT`] at once.
#[derive(Clone)]
struct Reactor {
    saga: Saga,
    /// The store, for the claims on inventories.
    store: Arc<dyn EventStore>,
    shared: Shared,
    /// Bounds the reactions in flight: reading waits while all permits are taken.
    in_flight: Arc<Semaphore>,
}

impl Reactor {
    /// Starts this node's `share` of the reactions to the event at `position` (marked
    /// unfinished until recorded), after claiming the inventories in `claims` for this node (so
    /// the claims come before everything the share appends).
    async fn start(
        &self,
        position: u64,
        action: TicketingAction,
        share: Share,
        context: CommandContext,
        (token, claims): (Option<ChargeToken>, Vec<Inventory>),
    ) -> Result<(), EventStoreError> {
        let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
            return Err(EventStoreError::Closed);
        };
        self.shared.update(|p| p.started(position));
        let (saga, shared) = (self.saga.clone(), self.shared.clone());
        let (store, node) = (Arc::clone(&self.store), self.shared.node);
        tokio::spawn(async move {
            for inventory in claims {
                let (event_id, section) = (inventory.event_id, &inventory.section);
                match writers::claim(store.as_ref(), &inventory, node, 0).await {
                    Ok(true) => tracing::debug!(%event_id, %section, "claimed an inventory"),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, %event_id, %section, "cannot claim an inventory; its events' nodes keep writing it");
                    }
                }
            }
            carry_out(&saga, &shared, Started { position, action, share, context }, token).await;
            drop(permit);
        });
        Ok(())
    }
}

/// Carries out at once this node's own steps of the events its reactions just `appended`,
/// rather than a read of the log later, and in turn those of what these append. Each such
/// event counts as unfinished until its steps are recorded, so the frontier stays before it;
/// an event the reader took up first is left to the reader.
fn react_at_once<'a>(saga: &'a Saga, shared: &'a Shared, appended: Vec<Appended>) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let started: Vec<_> = appended
            .into_iter()
            .filter_map(|Appended { position, action, context }| {
                let share = Share::at_once(&reactions(&action), |inventory| shared.writes(inventory, position));
                let started = !share.is_empty() && shared.update(|p| p.chain(position, &share));
                // Taken once the event is this path's: the reader now leaves the charge alone.
                let token = if started { saga.token_for(&action) } else { None };
                started.then_some((Started { position, action, share, context }, token))
            })
            .collect();
        join_all(started.into_iter().map(|(started, token)| carry_out(saga, shared, started, token))).await;
    })
}

/// Starts the follow-ups of what this node's API calls append at once, as those appends commit
/// ([`react_at_once`]), on a task of their own: a call given up halfway stops none of them.
#[derive(Clone)]
pub(crate) struct AtOnce {
    saga: Saga,
    shared: Shared,
}

impl AtOnce {
    /// Starts at once this node's own steps of the events of `committed`, appended in `context`.
    pub(crate) fn follow_up(&self, committed: &Committed<TicketingAction>, context: CommandContext) {
        let appended = Appended::of(committed.clone(), context);
        if appended.is_empty() {
            return;
        }
        let (saga, shared) = (self.saga.clone(), self.shared.clone());
        tokio::spawn(async move { react_at_once(&saga, &shared, appended).await });
    }
}

/// A share of the reactions to one event, started here.
struct Started {
    position: u64,
    action: TicketingAction,
    share: Share,
    context: CommandContext,
}

/// Carries out a `started` share (and at once this node's own steps of what it appends), then
/// records its event's reaction as ended: recorded, or cut short by a stop.
async fn carry_out(saga: &Saga, shared: &Shared, started: Started, token: Option<ChargeToken>) {
    let Started { position, action, share, context } = started;
    let recorded = match saga.react(&action, share, context, token).await {
        Ok(appended) => {
            for Appended { action, .. } in &appended {
                if let TicketingAction::Reservation(event) = action {
                    shared.watch.observe(event);
                }
            }
            react_at_once(saga, shared, appended).await;
            true
        }
        Err(Stopped) => false,
    };
    shared.update(|p| p.done(position, recorded));
}

/// The follower as a consumer of the log: reads each batch, starts this node's share of its
/// reactions (and parks the other nodes' shares) and returns; the reactions report to
/// [`Progress`] when recorded.
struct SagaConsumer {
    follower: Follower,
    reactor: Reactor,
    foreign: Arc<Mutex<Foreign>>,
    checkpoint: u64,
    /// The last event committed when this follower started: another node's events up to it
    /// may be a dead predecessor's (a crash, then this restart), and are no sign of a live one.
    started_at: u64,
    /// The inventories this node has tried to claim.
    claimed: HashSet<Inventory>,
}

impl SagaConsumer {
    /// Splits the reactions to the event at `position`, of node `stamp`, into each node's share:
    /// starts this node's and parks the others'. `at_once`: this node's own steps of it that
    /// were started as it was appended ([`react_at_once`]); they are nobody's to do again.
    async fn route(
        &mut self,
        position: u64,
        stamp: Option<Uuid>,
        action: TicketingAction,
        context: CommandContext,
        at_once: Option<Share>,
    ) -> Result<(), FeedError> {
        let me = self.follower.shared.node;
        // An event no node stamped is every node's own, as it was before nodes had names.
        let origin = stamp.unwrap_or(me);
        if origin != me && position > self.started_at {
            self.reactor.shared.others_seen.store(true, Ordering::SeqCst);
        }
        // The origin holds every step but those of inventories another node writes.
        let steps = reactions(&action);
        let mut shares: SmallVec<[(Uuid, Share); 2]> = smallvec::smallvec![(origin, Share::all(&action, steps.len()))];
        let at_once = at_once.unwrap_or_default();
        shares[0].1.remove_all(&at_once);
        let mut claims = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let Reaction::Command(command) = step else { continue };
            if at_once.holds(index) {
                continue;
            }
            let Ok(index) = u32::try_from(index) else { continue };
            let Some(inventory) = Inventory::of(command) else { continue };
            let writer = self.writer(inventory, position, origin, &mut claims).await?;
            if writer == origin {
                continue;
            }
            shares[0].1.remove(index);
            match shares.iter_mut().find(|(node, _)| *node == writer) {
                Some((_, share)) => share.add(index),
                None => shares.push((writer, Share::step(index))),
            }
        }
        let mut shares = shares.into_iter().filter(|(_, share)| !share.is_empty()).peekable();
        let mut action = Some(action);
        while let Some((node, share)) = shares.next() {
            // The last share takes the event; the others a copy.
            let Some(action) = (if shares.peek().is_some() { action.clone() } else { action.take() }) else { break };
            if node == me {
                // The token for a charge is taken as its request is read, before any later
                // ending of the reservation can drop it.
                let token = (origin == me).then(|| self.reactor.saga.token_for(&action)).flatten();
                let context = if origin == me { context } else { context.on_behalf_of(origin) };
                let claims = std::mem::take(&mut claims);
                self.reactor.start(position, action, share, context, (token, claims)).await?;
            } else {
                let mut foreign = lock(&self.foreign);
                // Counted unfinished before the lock is let go, so the watch of other nodes
                // cannot release it first.
                self.reactor.shared.update(|p| p.park(position));
                foreign.park(node, Parked { position, action, share, context });
            }
        }
        Ok(())
    }

    /// The node that writes `inventory` for the event at `position` of node `origin`: its
    /// writer as claimed before that position, or `origin` when nobody claimed it. A node that
    /// has seen another node at work claims an inventory nobody writes when it first writes it:
    /// the inventory is added to `claims`, claimed as that share starts.
    async fn writer(
        &mut self,
        inventory: Inventory,
        position: u64,
        origin: Uuid,
        claims: &mut Vec<Inventory>,
    ) -> Result<Uuid, FeedError> {
        let known = lock(&self.reactor.shared.writers).lookup(&inventory, position);
        let (writer, version) = if let Some(known) = known {
            known
        } else {
            let stream = writers::load(self.follower.store.as_ref(), &inventory).await?;
            let mut writers = lock(&self.reactor.shared.writers);
            writers.learn(&inventory, &stream);
            writers.lookup(&inventory, position).unwrap_or((None, 0))
        };
        if let Some(writer) = writer {
            return Ok(writer);
        }
        let others_seen = self.reactor.shared.others_seen.load(Ordering::SeqCst);
        if origin == self.follower.shared.node && others_seen && version == 0 && self.claimed.insert(inventory.clone())
        {
            claims.push(inventory);
        }
        Ok(origin)
    }
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
        self.started_at = self.follower.store.last_committed_position().await?;
        self.checkpoint = checkpoint;
        self.reactor.shared.update(|p| p.restart(checkpoint, after));
        Ok(after)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), FeedError> {
        for envelope in batch {
            let position = envelope.global_position;
            // A batch handed over again (after a bad event) is not reacted to twice.
            if position <= lock(&self.reactor.shared.progress).read {
                continue;
            }
            let at_once = self.reactor.shared.update(|p| p.take(position));
            let claim = lock(&self.reactor.shared.writers).observe(envelope);
            if !claim && let Some((action, context)) = self.follower.read(envelope, self.checkpoint)? {
                self.route(position, envelope.metadata.node_id, action, context, at_once).await?;
            }
            self.reactor.shared.update(|p| p.read(position));
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
        self.reactor.shared.update(|p| p.read(position));
        Ok(())
    }
}

/// Reads the records of the nodes whose shares are parked here: releases what they recorded,
/// and carries out the shares of the nodes that are gone, claiming the inventories they wrote.
struct PeerWatch {
    follower: Follower,
    reactor: Reactor,
    foreign: Arc<Mutex<Foreign>>,
}

impl PeerWatch {
    async fn run(self) {
        let mut stop = self.follower.stop.clone();
        let mut tick = tokio::time::interval(PEER_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => return,
            }
            let owners = lock(&self.foreign).owners();
            for owner in owners {
                let read = match read_record(self.follower.store.as_ref(), owner).await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::warn!(%error, %owner, "cannot read another node's record; will retry");
                        continue;
                    }
                };
                let settled = lock(&self.foreign).observe(owner, read, Instant::now());
                self.reactor.shared.update(|p| {
                    for position in &settled.released {
                        p.unpark(*position);
                    }
                });
                if !settled.taken.is_empty() {
                    tracing::info!(%owner, events = settled.taken.len(), "taking over the saga of a node that is gone");
                    self.claim_inventories_of(owner).await;
                }
                for Parked { position, action, share, context } in settled.taken {
                    // Started before it is unparked, so the frontier never passes it.
                    if self.reactor.start(position, action, share, context, (None, Vec::new())).await.is_err() {
                        return;
                    }
                    self.reactor.shared.update(|p| p.unpark(position));
                }
            }
        }
    }
}

impl PeerWatch {
    /// Claims every inventory that `gone` writes; where another node's claim comes first, that
    /// node writes it.
    async fn claim_inventories_of(&self, gone: Uuid) {
        let written = lock(&self.reactor.shared.writers).written_by(gone);
        for (inventory, version) in written {
            let (event_id, section) = (inventory.event_id, &inventory.section);
            let claimed =
                writers::claim(self.follower.store.as_ref(), &inventory, self.follower.shared.node, version).await;
            if let Err(error) = &claimed {
                tracing::warn!(%error, %event_id, %section, "cannot claim a gone node's inventory; will retry");
            } else if claimed.is_ok_and(|won| won) {
                tracing::info!(%event_id, %section, %gone, "took over writing an inventory");
            }
        }
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

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Saves the checkpoint (every [`CHECKPOINT_EVERY`] at most while the frontier moves), the open
/// holds (every [`HOLDS_EVERY`] at most) and this node's record (as its own frontier moves, and
/// at least every [`BEAT`]), and all three once more when the system stops, the record then
/// saying the node is gone.
struct Checkpointer {
    follower: Follower,
    shared: Shared,
}

impl Checkpointer {
    async fn run(self) {
        let mut frontier = self.shared.frontier.subscribe();
        let mut own = self.shared.own.subscribe();
        let mut stop = self.follower.stop.clone();
        let mut holds_saved_at = Instant::now();
        let mut holds_at = 0;
        let mut beat = Beat::new(self.follower.shared.node);
        self.beat(&mut beat, false).await;
        loop {
            let stopping = tokio::select! {
                changed = frontier.changed() => changed.is_err(),
                changed = own.changed() => changed.is_err(),
                () = tokio::time::sleep(BEAT) => false,
                () = stopped(&mut stop) => true,
            };
            if !stopping {
                tokio::select! {
                    () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                    () = stopped(&mut stop) => {}
                }
            }
            let (reached, mut saved) = {
                let progress = lock(&self.shared.progress);
                (progress.frontier(), progress.saved)
            };
            let stopping = stopping || *stop.borrow();
            // Every node saves the checkpoint under the same name, each its own frontier: it
            // only moves forward, so a node that is behind never takes it back below the open
            // holds another node saved (a restart would then find no usable holds and read the
            // whole log again before reacting to anything new).
            if reached > saved {
                match self.follower.checkpoints.advance_checkpoint(&self.follower.name, reached).await {
                    Ok(()) => (lock(&self.shared.progress).saved, saved) = (reached, reached),
                    Err(error) => tracing::warn!(%error, reached, "cannot save the saga checkpoint; will retry"),
                }
            }
            // The open holds are saved at a checkpoint already stored (a restart reads from their
            // position, which must not lie past the checkpoint), and at least at the last one
            // before stopping, even when that checkpoint was written earlier without them.
            if saved > holds_at && (stopping || holds_saved_at.elapsed() >= HOLDS_EVERY) {
                self.follower.save_holds(saved).await;
                (holds_at, holds_saved_at) = (saved, Instant::now());
            }
            self.beat(&mut beat, stopping).await;
            if stopping {
                return;
            }
        }
    }

    /// Rewrites this node's record when it is due (or the node is going).
    async fn beat(&self, beat: &mut Beat, gone: bool) {
        let record = NodeRecord { frontier: lock(&self.shared.progress).own_frontier(), gone };
        if !gone && !beat.due(record, Instant::now()) {
            return;
        }
        if let Err(error) = beat.write(self.follower.store.as_ref(), record).await {
            tracing::warn!(%error, "cannot write this node's record; other nodes wait longer for its events");
        }
    }
}

/// Which events have been read and which of them still have reactions running.
struct Progress {
    /// The last event read.
    read: u64,
    /// The last event the reader has taken up: the events after it that this node's own steps
    /// appended may still be reacted to at once ([`Progress::chain`]).
    seen: u64,
    /// Events whose reactions are running here, or were cut short by a stop, with how many
    /// (the reader's and those started at once).
    unfinished: BTreeMap<u64, usize>,
    /// Events whose own steps were started at once, not read yet, with those steps.
    chained: BTreeMap<u64, Share>,
    /// Events with shares of other nodes waiting for those nodes to record them, with how many.
    parked: BTreeMap<u64, usize>,
    /// The last checkpoint saved.
    saved: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            read: 0,
            seen: 0,
            unfinished: BTreeMap::new(),
            chained: BTreeMap::new(),
            parked: BTreeMap::new(),
            saved: 0,
        }
    }

    /// The reader starts after `after`. Reactions an API call started at once before (the
    /// system was just built) stay counted.
    fn restart(&mut self, checkpoint: u64, after: u64) {
        let (unfinished, chained) = (std::mem::take(&mut self.unfinished), std::mem::take(&mut self.chained));
        *self = Self { read: after, seen: after, saved: checkpoint, unfinished, chained, ..Self::new() };
    }

    /// Records that `position` was read; returns the frontier.
    fn read(&mut self, position: u64) -> u64 {
        self.read = self.read.max(position);
        self.frontier()
    }

    /// The reader takes up the event at `position`: from now on its own steps are not started
    /// at once. Returns those that already were.
    fn take(&mut self, position: u64) -> Option<Share> {
        self.seen = self.seen.max(position);
        self.chained.remove(&position)
    }

    /// Starts `steps`, own steps of the event at `position`, at once, unless the reader has
    /// taken it up already (then it starts them). Returns whether they are started here.
    fn chain(&mut self, position: u64, steps: &Share) -> bool {
        if position <= self.seen {
            return false;
        }
        self.chained.insert(position, steps.clone());
        self.started(position);
        true
    }

    fn started(&mut self, position: u64) {
        *self.unfinished.entry(position).or_default() += 1;
    }

    /// Records that one reaction to `position` ended (recorded, or cut short by a stop: then
    /// the frontier stays before it); returns the frontier.
    fn done(&mut self, position: u64, recorded: bool) -> u64 {
        if recorded {
            release(&mut self.unfinished, position);
        }
        self.frontier()
    }

    /// Records that a share of the reactions to `position` is another node's, and waits for it.
    fn park(&mut self, position: u64) {
        *self.parked.entry(position).or_default() += 1;
    }

    /// Records that one share of the event at `position` no longer waits for another node.
    fn unpark(&mut self, position: u64) {
        release(&mut self.parked, position);
    }

    /// Every event at or before it is read and its reactions recorded, here or by their node.
    fn frontier(&self) -> u64 {
        let first = self.unfinished.keys().next().into_iter().chain(self.parked.keys().next()).min();
        first.map_or(self.read, |first| self.read.min(first - 1))
    }

    /// Every event at or before it is read, and those of this node have their reactions
    /// recorded.
    fn own_frontier(&self) -> u64 {
        self.unfinished.keys().next().map_or(self.read, |first| self.read.min(first - 1))
    }
}

/// Counts one of `position` out of `counts`.
fn release(counts: &mut BTreeMap<u64, usize>, position: u64) {
    if let Some(count) = counts.get_mut(&position) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&position);
        }
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

    #[test]
    fn an_event_started_at_once_holds_the_frontier_until_both_its_reactions_are_recorded() {
        let mut progress = Progress::new();
        progress.restart(10, 10);
        progress.started(11);
        let steps = Share::step(1);
        assert!(progress.chain(13, &steps), "13 is not read yet: its own steps start at once");
        assert_eq!(progress.done(11, true), 10, "the frontier never passes what was read");
        assert_eq!(progress.read(12), 12);
        assert_eq!(progress.take(13), Some(steps), "the reader finds 13 started, and which of its steps");
        progress.started(13);
        assert_eq!(progress.read(13), 12, "13 runs twice over: at once, and the reader's share");
        assert_eq!(progress.done(13, true), 12, "one of its two reactions is recorded");
        assert_eq!(progress.done(13, true), 13);
        assert_eq!(progress.take(14), None, "14 was not started at once");
        assert!(!progress.chain(14, &Share::step(0)), "the reader took 14 up first: it starts its steps");
        assert_eq!(progress.own_frontier(), 13);
    }

    #[test]
    fn steps_started_at_once_before_the_reader_starts_stay_counted() {
        let mut progress = Progress::new();
        assert!(progress.chain(21, &Share::step(0)), "an API call of a system just built starts its steps");
        progress.restart(20, 20);
        assert_eq!(progress.read(22), 20, "the frontier waits for the steps started before the reader");
        assert_eq!(progress.take(21), Some(Share::step(0)), "the reader leaves them to the call");
        assert_eq!(progress.done(21, true), 22);
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
        let router = CommandRouter::new(&store, &env, EngineConfig::default(), Uuid::new_v4());
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
            expiry: expiry.clone(),
            open: OpenPayments::default(),
            shared: Shared::new(frontier, ReservationWatch::default(), Uuid::new_v4()),
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
