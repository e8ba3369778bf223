//! The `AvailableSeats` read model: capacity, held, sold and free seats per (event, section).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::aggregates::{InventoryAction, TicketingAction};
use crate::domain::{EventId, SeatId, SectionName};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, decode_ticketing, projection_bookkeeping};

/// The Inventory events this read model follows.
pub const AVAILABLE_SEATS_EVENTS: &[&str] =
    &["InventoryInitialized", "SeatsReserved", "SeatsConfirmed", "SeatsReleased", "LateSeatsSold", "SoldSeatsReturned"];

/// What one section of one event looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionAvailability {
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// Seats in the section.
    pub total_capacity: u32,
    /// Seats held for unpaid reservations.
    pub reserved: u32,
    /// Seats sold.
    pub sold: u32,
    /// `total_capacity - reserved - sold`.
    pub available: u32,
    /// The held seats, in id order.
    pub reserved_seats: Vec<SeatId>,
    /// The sold seats, in id order.
    pub sold_seats: Vec<SeatId>,
}

/// One change the log makes to the seat map: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatChange {
    /// A section's inventory was opened with `capacity` seats.
    SectionOpened {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Its seats.
        capacity: u32,
    },
    /// Seats moved to `state` (held, sold, or free again).
    SeatsMoved {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Where they are now.
        state: SeatState,
        /// The seats.
        seats: Vec<SeatId>,
    },
}

/// Where a seat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatState {
    /// Free.
    Available,
    /// Held for an unpaid reservation.
    Reserved,
    /// Sold.
    Sold,
}

impl SeatChange {
    /// The seat-map changes an Inventory event makes (none for other actions).
    ///
    /// Moves name the target state of each seat rather than a count to add, so applying one twice
    /// leaves the map as applying it once.
    #[must_use]
    pub fn from_action(action: &TicketingAction) -> Option<Self> {
        let TicketingAction::Inventory(action) = action else { return None };
        let moved = |event_id: &EventId, section: &SectionName, state, seats: Vec<SeatId>| Self::SeatsMoved {
            event_id: *event_id,
            section: section.clone(),
            state,
            seats,
        };
        let ids = |seats: &[crate::aggregates::AllocatedSeat]| seats.iter().map(|s| s.seat_id).collect();
        match action {
            InventoryAction::InventoryInitialized { event_id, section, capacity } => {
                Some(Self::SectionOpened { event_id: *event_id, section: section.clone(), capacity: capacity.get() })
            }
            InventoryAction::SeatsReserved { event_id, section, seats, .. } => {
                Some(moved(event_id, section, SeatState::Reserved, ids(seats)))
            }
            InventoryAction::SeatsConfirmed { event_id, section, seats, .. }
            | InventoryAction::LateSeatsSold { event_id, section, seats, .. } => {
                Some(moved(event_id, section, SeatState::Sold, ids(seats)))
            }
            InventoryAction::SeatsReleased { event_id, section, seats, .. }
            | InventoryAction::SoldSeatsReturned { event_id, section, seats, .. } => {
                Some(moved(event_id, section, SeatState::Available, ids(seats)))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SectionSeats {
    capacity: u32,
    reserved: HashSet<SeatId>,
    sold: HashSet<SeatId>,
}

impl SectionSeats {
    fn count(set: &HashSet<SeatId>) -> u32 {
        u32::try_from(set.len()).unwrap_or(u32::MAX)
    }

    fn available(&self) -> u32 {
        self.capacity.saturating_sub(Self::count(&self.reserved)).saturating_sub(Self::count(&self.sold))
    }
}

/// Seat availability per (event, section), kept in memory.
///
/// Follows `InventoryInitialized`, `SeatsReserved`, `SeatsConfirmed` and `SeatsReleased`. Counts
/// are the sizes of the seat sets, so they can never disagree with the seat ids.
///
/// ```
/// use boxoffice::projections::AvailableSeatsProjection;
/// use boxoffice::domain::EventId;
///
/// let seats = AvailableSeatsProjection::new();
/// let event = EventId::new_v4();
/// assert!(seats.get_availability(event, "VIP").is_none());
/// assert!(!seats.has_availability(event, "VIP", 1));
/// assert_eq!(seats.get_total_available(event), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvailableSeatsProjection {
    events: HashMap<EventId, BTreeMap<SectionName, SectionSeats>>,
    position: u64,
}

impl AvailableSeatsProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "available-seats";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one seat-map change.
    pub(crate) fn apply_change(&mut self, change: SeatChange) {
        match change {
            SeatChange::SectionOpened { event_id, section, capacity } => {
                self.events.entry(event_id).or_default().entry(section).or_default().capacity = capacity;
            }
            SeatChange::SeatsMoved { event_id, section, state, seats } => {
                let s = self.events.entry(event_id).or_default().entry(section).or_default();
                for seat in seats {
                    match state {
                        SeatState::Available => {
                            s.reserved.remove(&seat);
                            s.sold.remove(&seat);
                        }
                        SeatState::Reserved => {
                            s.sold.remove(&seat);
                            s.reserved.insert(seat);
                        }
                        SeatState::Sold => {
                            s.reserved.remove(&seat);
                            s.sold.insert(seat);
                        }
                    }
                }
            }
        }
    }

    /// The availability of `section` of `event`, or `None` when its inventory is unknown.
    #[must_use]
    pub fn get_availability(&self, event: EventId, section: &str) -> Option<SectionAvailability> {
        let (name, s) = self.events.get(&event)?.get_key_value(section)?;
        let sorted = |set: &HashSet<SeatId>| {
            let mut v: Vec<SeatId> = set.iter().copied().collect();
            v.sort_unstable();
            v
        };
        Some(SectionAvailability {
            event_id: event,
            section: name.clone(),
            total_capacity: s.capacity,
            reserved: SectionSeats::count(&s.reserved),
            sold: SectionSeats::count(&s.sold),
            available: s.available(),
            reserved_seats: sorted(&s.reserved),
            sold_seats: sorted(&s.sold),
        })
    }

    /// Whether `section` of `event` has at least `quantity` free seats (false when unknown).
    #[must_use]
    pub fn has_availability(&self, event: EventId, section: &str, quantity: u32) -> bool {
        self.events.get(&event).and_then(|m| m.get(section)).is_some_and(|s| s.available() >= quantity)
    }

    /// Free seats over every section of `event` (0 when unknown).
    #[must_use]
    pub fn get_total_available(&self, event: EventId) -> u64 {
        self.events.get(&event).map_or(0, |m| m.values().map(|s| u64::from(s.available())).sum())
    }

    /// Up to `limit` free seats of `section` of `event`, lowest seat position first. Seat ids are
    /// derived from positions ([`SeatId::derive`]), so this walks positions from 0 and costs
    /// O(limit + held and sold seats) rather than O(capacity).
    #[must_use]
    pub fn available_seat_ids(&self, event: EventId, section: &str, limit: usize) -> Vec<SeatId> {
        let Some(s) = self.events.get(&event).and_then(|m| m.get(section)) else { return Vec::new() };
        (0..s.capacity)
            .map(|index| SeatId::derive(event, section, index))
            .filter(|id| !s.reserved.contains(id) && !s.sold.contains(id))
            .take(limit)
            .collect()
    }

    /// Every (event, section) the model knows, for comparisons and exports.
    #[must_use]
    pub fn sections(&self) -> Vec<(EventId, SectionName)> {
        let mut keys: Vec<_> = self.events.iter().flat_map(|(e, m)| m.keys().map(move |s| (*e, s.clone()))).collect();
        keys.sort();
        keys
    }
}

impl Projection for AvailableSeatsProjection {
    projection_bookkeeping!(AVAILABLE_SEATS_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        let action = decode_ticketing(Self::NAME, envelope)?;
        if let Some(change) = SeatChange::from_action(&action) {
            self.apply_change(change);
        }
        Ok(())
    }
}
