//! Saga ownership across processes: which node carries out the reactions to an event.
//!
//! Every event a system appends names its node ([`Metadata::node_id`](crate::event_store::Metadata::node_id)):
//! the node whose saga it belongs to. Each node's follower reads the whole log (its deadlines,
//! waiters and open payments need every event) but carries out only its own share of the
//! reactions: those to its own node's events, except their inventory steps, which go to each
//! inventory's writer ([`writers`](super::writers)), and the inventory steps of the inventories it
//! writes. So N processes on one database run each saga step once, not N times. Another node's
//! share is parked until that node's record says it is recorded.
//!
//! A node's record is a snapshot in the event store (`saga-node-<id>`), rewritten as its own
//! frontier moves and at least every [`BEAT`]: the snapshot's version counts the beats, its state
//! holds the node's own frontier (every event of that node at or before it has its reactions
//! recorded) and whether the node has gone. A node that said it has gone, or whose beat has not
//! moved for [`LEASE`] by the reader's own clock (so the machines' clocks need not agree), is
//! taken over: every node that parked its events reacts to them, and to its later events as it
//! reads them. Each reaction is idempotent, so two takers, or a taker and a node that was only
//! slow, change nothing twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::context::CommandContext;
use super::saga::Share;
use crate::aggregates::TicketingAction;
use crate::event_store::{EventStore, EventStoreError, Snapshot, StreamId};

/// How often, at least, a node rewrites its record while it runs.
pub(crate) const BEAT: Duration = Duration::from_secs(1);
/// How long a node's beat may stand still before other nodes take its events over.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// Shape version of a node's record.
const RECORD_SCHEMA_VERSION: u32 = 1;

/// What a node's record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeRecord {
    /// Every event of the node at or before this position has its reactions recorded.
    pub(crate) frontier: u64,
    /// The node stopped: whatever of its events lies after `frontier` is for others to do.
    pub(crate) gone: bool,
}

fn record_stream(node: Uuid) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("saga-node-{node}"))
}

/// Writes one node's record, a beat at a time.
pub(crate) struct Beat {
    node: Uuid,
    beats: u64,
    last: Option<(NodeRecord, Instant)>,
}

impl Beat {
    /// The record writer of `node`, which has not beaten yet.
    pub(crate) fn new(node: Uuid) -> Self {
        Self { node, beats: 0, last: None }
    }

    /// Whether `record` must be written now: it says something new, or the last beat is
    /// [`BEAT`] old.
    pub(crate) fn due(&self, record: NodeRecord, now: Instant) -> bool {
        self.last.is_none_or(|(last, at)| last != record || now.duration_since(at) >= BEAT)
    }

    /// Writes `record` as the next beat.
    ///
    /// # Errors
    /// The store's failure; the beat is tried again at the next call.
    pub(crate) async fn write(&mut self, store: &dyn EventStore, record: NodeRecord) -> Result<(), EventStoreError> {
        let stream_id = record_stream(self.node)?;
        let state = serde_json::to_string(&record)
            .map_err(|source| EventStoreError::Encode { stream: stream_id.clone(), source })?;
        let beat = self.beats + 1;
        store
            .save_snapshot(Snapshot { stream_id, stream_version: beat, state, schema_version: RECORD_SCHEMA_VERSION })
            .await?;
        self.beats = beat;
        self.last = Some((record, Instant::now()));
        Ok(())
    }
}

/// Reads `node`'s record: its beat and what it says (`None` when it never wrote one; a record
/// of another shape counts as a beat that says nothing).
///
/// # Errors
/// The store's failure.
pub(crate) async fn read_record(
    store: &dyn EventStore,
    node: Uuid,
) -> Result<Option<(u64, Option<NodeRecord>)>, EventStoreError> {
    let snapshot = store.load_snapshot(&record_stream(node)?).await?;
    Ok(snapshot.map(|s| {
        let record = (s.schema_version == RECORD_SCHEMA_VERSION).then(|| serde_json::from_str(&s.state).ok()).flatten();
        (s.stream_version, record)
    }))
}

/// Another node's share of the reactions to an event, waiting for that node to record it.
pub(crate) struct Parked {
    pub(crate) position: u64,
    pub(crate) action: TicketingAction,
    pub(crate) share: Share,
    pub(crate) context: CommandContext,
}

/// What this node knows of another.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Its last beat seen (0: no record seen).
    beat: u64,
    /// When that beat was first seen here, or when watching it began again.
    since: Instant,
    /// When its record was last read here.
    read_at: Instant,
    /// What its last record said.
    record: Option<NodeRecord>,
}

impl Peer {
    fn taken_over(&self, now: Instant) -> bool {
        self.record.is_some_and(|r| r.gone) || now.duration_since(self.since) >= LEASE
    }
}

/// The other nodes' events this node parked, and what it knows of those nodes.
#[derive(Default)]
pub(crate) struct Foreign {
    parked: HashMap<Uuid, Vec<Parked>>,
    peers: HashMap<Uuid, Peer>,
}

/// What a node's record changed for the events parked here.
#[derive(Default)]
pub(crate) struct Settled {
    /// Positions whose reactions the owner recorded.
    pub(crate) released: Vec<u64>,
    /// Events whose owner is gone: this node reacts to them.
    pub(crate) taken: Vec<Parked>,
}

impl Foreign {
    /// Parks `event` of `owner` until its record says the reactions are recorded, or that it
    /// is gone. Every event of another node is parked, even one whose node looked gone: only a
    /// fresh read of its record decides ([`Foreign::observe`]).
    pub(crate) fn park(&mut self, owner: Uuid, event: Parked) {
        self.parked.entry(owner).or_default().push(event);
    }

    /// The nodes whose events are parked here.
    pub(crate) fn owners(&self) -> Vec<Uuid> {
        self.parked.iter().filter(|(_, events)| !events.is_empty()).map(|(owner, _)| *owner).collect()
    }

    /// Takes in `owner`'s record as read at `now` (its beat and what it says, `None` when it has
    /// none): the parked events it recorded are released; all of them are taken when it is gone.
    pub(crate) fn observe(&mut self, owner: Uuid, read: Option<(u64, Option<NodeRecord>)>, now: Instant) -> Settled {
        let peer = self.peers.entry(owner).or_insert(Peer { beat: 0, since: now, read_at: now, record: None });
        if now.duration_since(peer.read_at) >= LEASE / 2 {
            // Not watched lately (nothing of it was parked): what was seen then says nothing of
            // whether it beats now, so its lease starts again.
            peer.since = now;
        }
        peer.read_at = now;
        if let Some((beat, record)) = read
            && beat != peer.beat
        {
            (peer.beat, peer.since, peer.record) = (beat, now, record);
        }
        let peer = *peer;
        let Some(events) = self.parked.get_mut(&owner) else { return Settled::default() };
        // What its last record says it recorded is released either way; the rest is taken
        // when it is gone, and waits while it lives.
        let frontier = peer.record.map_or(0, |r| r.frontier);
        let (released, kept): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(events).into_iter().partition(|e| e.position <= frontier);
        let released = released.into_iter().map(|e| e.position).collect();
        if peer.taken_over(now) {
            return Settled { released, taken: kept };
        }
        *events = kept;
        Settled { released, taken: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::{EventAction, TicketingAction};
    use crate::domain::EventId;
    use crate::event_store::MemoryEventStore;

    fn parked(position: u64) -> Parked {
        Parked {
            position,
            action: TicketingAction::Event(EventAction::PublishEvent { event_id: EventId::new_v4() }),
            share: Share::default(),
            context: CommandContext::request(Uuid::new_v4()),
        }
    }

    #[allow(clippy::unnecessary_wraps)] // what a read of the record gives
    fn record(frontier: u64, gone: bool) -> Option<NodeRecord> {
        Some(NodeRecord { frontier, gone })
    }

    #[test]
    fn a_live_owners_record_releases_what_it_recorded_and_keeps_the_rest() {
        let (owner, now) = (Uuid::new_v4(), Instant::now());
        let mut foreign = Foreign::default();
        for position in [3, 5, 8] {
            foreign.park(owner, parked(position));
        }
        let settled = foreign.observe(owner, Some((1, record(5, false))), now);
        assert_eq!(settled.released, vec![3, 5]);
        assert!(settled.taken.is_empty());
        assert_eq!(foreign.owners(), vec![owner], "8 still waits");
        let settled = foreign.observe(owner, Some((2, record(9, false))), now + LEASE / 4);
        assert_eq!(settled.released, vec![8]);
        assert!(foreign.owners().is_empty());
    }

    #[test]
    fn a_gone_owners_parked_events_are_taken_at_once() {
        let (owner, now) = (Uuid::new_v4(), Instant::now());
        let mut foreign = Foreign::default();
        foreign.park(owner, parked(2));
        foreign.park(owner, parked(4));
        foreign.park(owner, parked(7));
        let settled = foreign.observe(owner, Some((3, record(2, true))), now);
        assert_eq!(settled.released, vec![2], "what it recorded before going is not done again");
        assert_eq!(settled.taken.iter().map(|e| e.position).collect::<Vec<_>>(), vec![4, 7]);
        foreign.park(owner, parked(9));
        let later = foreign.observe(owner, Some((3, record(2, true))), now + LEASE);
        assert_eq!(later.taken.len(), 1, "its later events are taken as they are read");
    }

    #[test]
    fn an_owner_whose_beat_stands_still_for_the_lease_is_taken_over() {
        let (owner, now) = (Uuid::new_v4(), Instant::now());
        let mut foreign = Foreign::default();
        foreign.park(owner, parked(6));
        // Watched every tenth of the lease, its beat standing still.
        let step = LEASE / 10;
        let mut at = now;
        for _ in 0..9 {
            assert!(foreign.observe(owner, Some((9, record(5, false))), at).taken.is_empty(), "still within its lease");
            at += step;
        }
        let moved = foreign.observe(owner, Some((10, record(5, false))), at);
        assert!(moved.taken.is_empty(), "a new beat renews the lease");
        for _ in 0..9 {
            at += step;
            assert!(foreign.observe(owner, Some((10, record(5, false))), at).taken.is_empty());
        }
        let stood_still = foreign.observe(owner, Some((10, record(5, false))), at + step);
        assert_eq!(stood_still.taken.len(), 1);
    }

    #[test]
    fn an_owner_that_never_wrote_a_record_is_taken_over_after_the_lease() {
        let (owner, now) = (Uuid::new_v4(), Instant::now());
        let mut foreign = Foreign::default();
        foreign.park(owner, parked(2));
        assert!(foreign.observe(owner, None, now).taken.is_empty());
        assert!(foreign.observe(owner, None, now + LEASE / 4).taken.is_empty());
        assert!(foreign.observe(owner, None, now + LEASE / 2).taken.is_empty());
        assert!(foreign.observe(owner, None, now + LEASE * 3 / 4).taken.is_empty());
        assert_eq!(foreign.observe(owner, None, now + LEASE).taken.len(), 1);
    }

    /// The bug this guards against: a node last seen long ago (nothing of it was parked since)
    /// was judged by that old sighting and taken over at once, while it was beating all along.
    #[test]
    fn a_node_not_watched_lately_gets_a_fresh_lease() {
        let (owner, now) = (Uuid::new_v4(), Instant::now());
        let mut foreign = Foreign::default();
        foreign.park(owner, parked(1));
        assert_eq!(foreign.observe(owner, Some((4, record(1, false))), now).released, vec![1]);
        foreign.park(owner, parked(30));
        let much_later = now + LEASE * 3;
        assert!(
            foreign.observe(owner, Some((4, record(1, false))), much_later).taken.is_empty(),
            "its beat is judged from now on, not from the sighting three leases ago"
        );
    }

    #[tokio::test]
    async fn a_record_is_read_back_with_its_beat() {
        let store = MemoryEventStore::new();
        let node = Uuid::new_v4();
        assert_eq!(read_record(&store, node).await.unwrap(), None);
        let mut beat = Beat::new(node);
        let now = Instant::now();
        assert!(beat.due(NodeRecord { frontier: 0, gone: false }, now));
        beat.write(&store, NodeRecord { frontier: 0, gone: false }).await.unwrap();
        assert!(!beat.due(NodeRecord { frontier: 0, gone: false }, Instant::now()), "nothing new within a beat");
        assert!(beat.due(NodeRecord { frontier: 4, gone: false }, Instant::now()), "a moved frontier is news");
        assert!(beat.due(NodeRecord { frontier: 0, gone: false }, Instant::now() + BEAT), "a beat is due");
        beat.write(&store, NodeRecord { frontier: 4, gone: true }).await.unwrap();
        assert_eq!(read_record(&store, node).await.unwrap(), Some((2, record(4, true))));
    }
}
