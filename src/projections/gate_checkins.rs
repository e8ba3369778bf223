//! The `GateCheckins` read model: what happened at each gate of an event, and how many are
//! inside now.

use std::collections::{BTreeMap, HashMap};

use crate::aggregates::{ScanAnswer, TicketingAction, TicketsAction};
use crate::domain::{EventId, GateName, ReservationId};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, decode_ticketing, projection_bookkeeping};

/// The events this read model follows: `TicketsIssued` tells which event a purchase's tickets
/// are for (a `TicketScanned` names only the purchase).
pub const GATE_CHECKINS_EVENTS: &[&str] = &["TicketsIssued", "TicketScanned"];

/// The scans recorded at one gate of an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// Entries let in.
    pub admitted: u64,
    /// Exits let out.
    pub exited: u64,
    /// Scans answered without letting the holder through (already admitted, not inside, revoked).
    pub turned_away: u64,
    /// Scans made offline and merged later, whatever their answer.
    pub offline: u64,
}

impl GateCounts {
    fn add(&mut self, other: Self) {
        self.admitted = self.admitted.saturating_add(other.admitted);
        self.exited = self.exited.saturating_add(other.exited);
        self.turned_away = self.turned_away.saturating_add(other.turned_away);
        self.offline = self.offline.saturating_add(other.offline);
    }
}

/// One change the log makes to the gate figures: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateChange {
    /// A purchase's tickets are for `event_id`.
    Issued {
        /// The purchase.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
    },
    /// A scan at `gate` of a ticket of `reservation_id`, counted once in `counts`.
    Scanned {
        /// The purchase.
        reservation_id: ReservationId,
        /// The gate.
        gate: GateName,
        /// What the scan adds (one of admitted, exited or turned away; offline too if it was).
        counts: GateCounts,
    },
}

impl GateChange {
    /// The change `action` makes.
    #[must_use]
    pub fn from_action(action: &TicketingAction) -> Option<Self> {
        match action {
            TicketingAction::Tickets(TicketsAction::TicketsIssued { reservation_id, event_id, .. }) => {
                Some(Self::Issued { reservation_id: *reservation_id, event_id: *event_id })
            }
            TicketingAction::Tickets(TicketsAction::TicketScanned {
                reservation_id, gate, offline, answer, ..
            }) => {
                let mut counts = GateCounts { offline: u64::from(*offline), ..GateCounts::default() };
                match answer {
                    ScanAnswer::Admitted => counts.admitted = 1,
                    ScanAnswer::Exited => counts.exited = 1,
                    ScanAnswer::AlreadyAdmitted { .. } | ScanAnswer::NotInside | ScanAnswer::Revoked { .. } => {
                        counts.turned_away = 1;
                    }
                }
                Some(Self::Scanned { reservation_id: *reservation_id, gate: gate.clone(), counts })
            }
            _ => None,
        }
    }
}

/// Holders inside: admissions minus exits, never below zero.
pub(crate) fn inside<'a>(gates: impl Iterator<Item = &'a GateCounts>) -> u64 {
    let (admitted, exited) =
        gates.fold((0_u64, 0_u64), |(a, e), g| (a.saturating_add(g.admitted), e.saturating_add(g.exited)));
    admitted.saturating_sub(exited)
}

/// Scans per event and gate, kept in memory.
///
/// ```
/// use boxoffice::projections::GateCheckinsProjection;
/// use boxoffice::domain::EventId;
///
/// let gates = GateCheckinsProjection::new();
/// assert!(gates.get_gates(EventId::new_v4()).is_empty());
/// assert_eq!(gates.get_currently_inside(EventId::new_v4()), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateCheckinsProjection {
    /// The event of each purchase whose tickets were issued.
    events_of: HashMap<ReservationId, EventId>,
    gates: HashMap<EventId, BTreeMap<GateName, GateCounts>>,
    position: u64,
}

impl GateCheckinsProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "gate-checkins";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change. A scan of a purchase whose tickets the log never issued is ignored.
    pub(crate) fn apply_change(&mut self, change: GateChange) {
        match change {
            GateChange::Issued { reservation_id, event_id } => {
                self.events_of.insert(reservation_id, event_id);
            }
            GateChange::Scanned { reservation_id, gate, counts } => {
                let Some(event) = self.events_of.get(&reservation_id) else { return };
                self.gates.entry(*event).or_default().entry(gate).or_default().add(counts);
            }
        }
    }

    /// The figures of every gate of `event` that recorded a scan, by gate name.
    #[must_use]
    pub fn get_gates(&self, event: EventId) -> BTreeMap<GateName, GateCounts> {
        self.gates.get(&event).cloned().unwrap_or_default()
    }

    /// The figures of one gate, or `None` when it recorded no scan for `event`.
    #[must_use]
    pub fn get_gate(&self, event: EventId, gate: &GateName) -> Option<GateCounts> {
        self.gates.get(&event)?.get(gate).copied()
    }

    /// Holders of `event`'s tickets inside now: admissions minus exits over all its gates (one
    /// may come in at one gate and leave by another).
    #[must_use]
    pub fn get_currently_inside(&self, event: EventId) -> u64 {
        self.gates.get(&event).map_or(0, |gates| inside(gates.values()))
    }
}

impl Projection for GateCheckinsProjection {
    projection_bookkeeping!(GATE_CHECKINS_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        let action = decode_ticketing(Self::NAME, envelope)?;
        if let Some(change) = GateChange::from_action(&action) {
            self.apply_change(change);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::{Direction, RevocationReason};
    use crate::projections::test_log::{at, ev, log};

    fn door() -> Vec<TicketingAction> {
        let (r, alice) = (ev::rid(1), ev::customer(1));
        let north = |i, d, answer| ev::scanned(r, i, "North", d, false, answer);
        let south = |i, d, offline, answer| ev::scanned(r, i, "South", d, offline, answer);
        let already = ScanAnswer::AlreadyAdmitted { gate: GateName::new("North").unwrap(), at: at(1, 19, 0, 0) };
        vec![
            // A scan before the tickets exist in the log (not possible on one stream) is ignored.
            ev::scanned(ev::rid(9), 0, "North", Direction::Entry, false, ScanAnswer::Admitted),
            ev::issued(r, alice, &[0, 1, 2]),
            north(0, Direction::Entry, ScanAnswer::Admitted),
            south(0, Direction::Entry, false, already),
            north(1, Direction::Entry, ScanAnswer::Admitted),
            north(0, Direction::Exit, ScanAnswer::Exited),
            south(2, Direction::Exit, false, ScanAnswer::NotInside),
            south(2, Direction::Entry, true, ScanAnswer::Admitted),
            north(2, Direction::Entry, ScanAnswer::Revoked { reason: RevocationReason::Refunded }),
        ]
    }

    fn folded(log: &[Envelope]) -> GateCheckinsProjection {
        let mut model = GateCheckinsProjection::new();
        for e in log {
            model.apply(e).unwrap();
        }
        model
    }

    #[test]
    fn scans_count_per_gate_and_inside_per_event() {
        let model = folded(&log(&door()));
        let north = GateName::new("North").unwrap();
        let south = GateName::new("South").unwrap();
        assert_eq!(
            model.get_gate(ev::event(), &north),
            Some(GateCounts { admitted: 2, exited: 1, turned_away: 1, offline: 0 })
        );
        assert_eq!(
            model.get_gate(ev::event(), &south),
            Some(GateCounts { admitted: 1, exited: 0, turned_away: 2, offline: 1 })
        );
        assert_eq!(model.get_gates(ev::event()).len(), 2);
        assert_eq!(model.get_currently_inside(ev::event()), 2, "three admitted, one left");
        assert_eq!(model.get_gate(ev::event(), &GateName::new("East").unwrap()), None);
    }

    #[test]
    fn redelivered_scans_count_once() {
        let log = log(&door());
        let once = folded(&log);
        let mut again = folded(&log);
        for e in &log {
            assert!(!again.apply(e).unwrap());
        }
        assert_eq!(again, once);
        again.reset();
        assert_eq!((again.position(), again.get_currently_inside(ev::event())), (0, 0));
    }
}
