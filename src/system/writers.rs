//! Single-writer inventories: which node appends to each inventory stream.
//!
//! A hot section is one stream. When several processes sell it, each appending its own
//! reservations' holds, every append races the others' (expected-version conflicts, each a
//! catch-up round trip), and no process can batch the whole queue. So each inventory has one
//! writer: the node whose claim on it came last in the log. Every node reads the claims in log
//! order, so at every position all nodes agree on the writer, and the saga's follower hands the
//! inventory steps of an event (`ReserveSeats`, `ConfirmReservation`, `ReleaseReservation`) to the
//! writer of their inventory as of that event, whichever node's reservation they serve; the other
//! steps stay with the event's node ([`peers`](super::peers)). The writer appends on behalf of
//! the reservation's node (its events carry that node's id), so what follows them goes back to
//! it.
//!
//! A claim is an event ([`InventoryAction::WriterClaimed`]) in the inventory's claim stream
//! (`<inventory stream>-writer`,
//! [`writer_claims_stream`](crate::aggregates::writer_claims_stream)), appended at an expected
//! version, so of two nodes claiming at once one wins. An inventory nobody claimed is written by
//! the node of each event, as a lone node does: a node claims an inventory only once it has seen
//! another node's events appended since it started (not a crashed predecessor's), so a single
//! process writes no claims at all. When a writer is gone (its
//! record says so, or its beat stood still for the lease), the nodes taking over its steps claim
//! its inventories, and the first claim appended wins.
//!
//! Ownership is only routing: every append still checks the stream's version, so two nodes that
//! both write an inventory for a while (a writer slow rather than gone, a claim on its way) cost
//! lost races, never a seat.

use std::collections::HashMap;

use uuid::Uuid;

use crate::aggregates::{EVENT_SCHEMA_VERSION, InventoryAction, TicketingAction, writer_claims_stream};
use crate::domain::{EventId, SectionName};
use crate::event_store::{Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent};
use crate::framework::Message;

/// The inventory a claim event is about, and the node it names; `None` for any other event (a
/// claim whose stream is not its inventory's claim stream is ignored).
fn read_claim(envelope: &Envelope) -> Option<(Inventory, Uuid)> {
    if envelope.event_type.as_ref() != "WriterClaimed"
        || crate::aggregates::category(&envelope.stream_id) != "inventory"
    {
        return None;
    }
    match TicketingAction::decode(envelope) {
        Ok(TicketingAction::Inventory(InventoryAction::WriterClaimed { event_id, section, node }))
            if writer_claims_stream(event_id, &section).is_ok_and(|s| s == envelope.stream_id) =>
        {
            Some((Inventory { event_id, section }, node))
        }
        _ => {
            tracing::warn!(stream = %envelope.stream_id, position = envelope.global_position, "unreadable writer claim ignored");
            None
        }
    }
}

/// One claim on an inventory, as the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claimed {
    /// Its position in the log.
    position: u64,
    /// Its version in the claim stream.
    version: u64,
    /// The node it names.
    node: Uuid,
}

/// One inventory, named as a claim names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Inventory {
    /// The event.
    pub(crate) event_id: EventId,
    /// The section.
    pub(crate) section: SectionName,
}

impl Inventory {
    /// The inventory `step` writes to, if it is an inventory command.
    pub(crate) fn of(command: &TicketingAction) -> Option<Self> {
        match command {
            TicketingAction::Inventory(action) => {
                action.key().map(|(event_id, section)| Self { event_id, section: section.clone() })
            }
            _ => None,
        }
    }
}

/// The claims on the inventories this node has needed, in log order.
#[derive(Debug, Default)]
pub(crate) struct Writers {
    /// Per inventory, every claim on it, once its claim stream has been read whole.
    claims: HashMap<Inventory, Vec<Claimed>>,
}

impl Writers {
    /// If `envelope` is a claim, takes it in (when its inventory's claims are known here; else
    /// they are read whole when first needed) and returns `true`.
    pub(crate) fn observe(&mut self, envelope: &Envelope) -> bool {
        let Some((inventory, node)) = read_claim(envelope) else { return false };
        if let Some(claims) = self.claims.get_mut(&inventory) {
            let claimed = Claimed { position: envelope.global_position, version: envelope.stream_version, node };
            insert(claims, claimed);
        }
        true
    }

    /// The writer of `inventory` for the event at `position` (the node of the last claim on it
    /// before that position; `None`: nobody's, so each event's own node writes it) and the
    /// version of its claim stream (0: never claimed), or `None` when its claims are not known
    /// here yet ([`load`] them and [`Writers::learn`] them first).
    pub(crate) fn lookup(&self, inventory: &Inventory, position: u64) -> Option<(Option<Uuid>, u64)> {
        let claims = self.claims.get(inventory)?;
        let before = claims.partition_point(|c| c.position < position);
        Some((claims[..before].last().map(|c| c.node), version(claims)))
    }

    /// Takes in the whole claim stream of `inventory`, as [`load`] read it.
    pub(crate) fn learn(&mut self, inventory: &Inventory, stream: &[Envelope]) {
        let known = self.claims.entry(inventory.clone()).or_default();
        for envelope in stream {
            if let Some((_, node)) = read_claim(envelope) {
                insert(known, Claimed { position: envelope.global_position, version: envelope.stream_version, node });
            }
        }
    }

    /// The inventories `node` writes now (its claim is the last known), with their claim
    /// streams' versions.
    pub(crate) fn written_by(&self, node: Uuid) -> Vec<(Inventory, u64)> {
        self.claims
            .iter()
            .filter(|(_, claims)| claims.last().is_some_and(|c| c.node == node))
            .map(|(inventory, claims)| (inventory.clone(), version(claims)))
            .collect()
    }
}

/// The version of a claim stream whose claims, in log order, are `claims` (0: none yet): its
/// last claim's, as a stream's versions grow with its events' positions.
fn version(claims: &[Claimed]) -> u64 {
    claims.last().map_or(0, |c| c.version)
}

/// Adds `claimed` to `claims` in log order, once.
fn insert(claims: &mut Vec<Claimed>, claimed: Claimed) {
    if let Err(at) = claims.binary_search_by_key(&claimed.position, |c| c.position) {
        claims.insert(at, claimed);
    }
}

/// Reads the whole claim stream of `inventory`.
///
/// # Errors
/// The store's failure.
pub(crate) async fn load(store: &dyn EventStore, inventory: &Inventory) -> Result<Vec<Envelope>, EventStoreError> {
    store.load_stream(&writer_claims_stream(inventory.event_id, &inventory.section)?, 0).await
}

/// Claims `inventory` for `node`, if its claim stream is still at `version`: `true` when this
/// claim was appended, `false` when another came first.
///
/// # Errors
/// The store's failure, other than the lost race.
pub(crate) async fn claim(
    store: &dyn EventStore,
    inventory: &Inventory,
    node: Uuid,
    version: u64,
) -> Result<bool, EventStoreError> {
    let stream = writer_claims_stream(inventory.event_id, &inventory.section)?;
    let claim =
        InventoryAction::WriterClaimed { event_id: inventory.event_id, section: inventory.section.clone(), node };
    let payload =
        serde_json::to_value(&claim).map_err(|source| EventStoreError::Encode { stream: stream.clone(), source })?;
    // `Exact(0)` is an empty stream: the first claim.
    let expected = ExpectedVersion::Exact(version);
    let metadata = Metadata { node_id: Some(node), ..Metadata::default() };
    let event = NewEvent::new(claim.name(), EVENT_SCHEMA_VERSION, payload);
    match store.append(&stream, expected, vec![event], &metadata, None).await {
        Ok(_) => Ok(true),
        Err(EventStoreError::ConcurrencyConflict { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event_store::MemoryEventStore;

    fn inventory(n: u8) -> Inventory {
        Inventory { event_id: EventId::new_v4(), section: SectionName::new(format!("Section {n}")).unwrap() }
    }

    #[tokio::test]
    async fn the_writer_at_a_position_is_the_last_claim_before_it() {
        let store = MemoryEventStore::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let stalls = inventory(1);
        assert!(claim(&store, &stalls, a, 0).await.unwrap());
        assert!(!claim(&store, &stalls, b, 0).await.unwrap(), "the second claim at the same version loses");
        assert!(claim(&store, &stalls, b, 1).await.unwrap());
        let mut writers = Writers::default();
        assert_eq!(writers.lookup(&stalls, 1), None, "unknown until learnt");
        writers.learn(&stalls, &load(&store, &stalls).await.unwrap());
        let positions: Vec<u64> = load(&store, &stalls).await.unwrap().iter().map(|e| e.global_position).collect();
        let writer_at = |position| writers.lookup(&stalls, position).map(|(writer, _)| writer);
        assert_eq!(writer_at(positions[0]), Some(None), "an event before every claim: nobody's");
        assert_eq!(writer_at(positions[0] + 1), Some(Some(a)));
        assert_eq!(writer_at(positions[1]), Some(Some(a)), "a claim governs only what follows it");
        assert_eq!(writer_at(positions[1] + 1), Some(Some(b)));
        assert_eq!(writers.lookup(&stalls, 0), Some((None, 2)), "the claim stream is at version 2");
        assert_eq!(writers.written_by(b), vec![(stalls.clone(), 2)]);
        let log = store.read_all(0, 10).await.unwrap();
        assert!(log.iter().all(|e| TicketingAction::decode(e).is_ok()), "a claim reads as an inventory event");
        assert!(writers.written_by(a).is_empty());
        let never = inventory(2);
        writers.learn(&never, &load(&store, &never).await.unwrap());
        assert_eq!(writers.lookup(&never, 10), Some((None, 0)), "an inventory never claimed");
    }

    #[tokio::test]
    async fn claims_read_from_the_log_extend_a_known_inventory_only() {
        let store = MemoryEventStore::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (stalls, circle) = (inventory(1), inventory(2));
        assert!(claim(&store, &stalls, a, 0).await.unwrap());
        let mut writers = Writers::default();
        writers.learn(&stalls, &load(&store, &stalls).await.unwrap());
        assert!(claim(&store, &stalls, b, 1).await.unwrap());
        assert!(claim(&store, &circle, b, 0).await.unwrap());
        let log = store.read_all(0, 100).await.unwrap();
        for envelope in &log {
            assert!(writers.observe(envelope), "every event here is a claim");
            assert!(writers.observe(envelope), "seen twice, taken once");
        }
        assert_eq!(writers.lookup(&stalls, u64::MAX), Some((Some(b), 2)));
        assert_eq!(
            writers.lookup(&circle, u64::MAX),
            None,
            "an inventory whose earlier claims are unknown is read whole when needed"
        );
    }
}
