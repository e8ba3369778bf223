//! The Inventory aggregate: the seats of one section of one event, held for reservations and then
//! sold or released.
//!
//! A hot section takes many commands per second, so every operation here costs O(quantity) (plus
//! a logarithmic factor for ordered indexes) and never O(capacity): free seats below the
//! high-water mark are kept in an ordered set, untouched seats above it are implicit, and the
//! counters of reserved and sold seats are maintained incrementally.
//!
//! `InsufficientInventory` is the rejection, not a persisted event: a failed attempt must not write
//! to the stream of a section everybody is fighting over. The name is still part of the API as
//! [`InventoryError::InsufficientInventory`] and [`InventoryAction::name`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Capacity, EventId, ReservationId, SeatId, SectionName};
use crate::framework::{Clock, Effects, Message, MessageKind, Reducer, event_sourced};

/// One seat given to a hold: its position in the section (0-based) and its derived id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AllocatedSeat {
    /// Position of the seat in the section, 0-based; lowest positions are allocated first.
    pub index: u32,
    /// The seat's id, [`SeatId::derive`] of event, section and index.
    pub seat_id: SeatId,
}

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldStatus {
    /// Seats held, awaiting payment.
    Reserved,
    /// Seats sold.
    Confirmed,
    /// Seats handed back.
    Released,
}

/// Seats set aside for one reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The seats (kept after release for audit; they are free again).
    pub seats: Vec<AllocatedSeat>,
    /// When the reservation's hold runs out.
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
    /// Reserved, confirmed or released.
    pub status: HoldStatus,
    /// Seats of a confirmed hold given back since (refunded): free again, and no longer in
    /// `seats`.
    #[serde(default)]
    pub returned: Vec<AllocatedSeat>,
}

/// Why seats were released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The hold ran out before payment.
    Expired,
    /// The customer cancelled.
    Cancelled,
    /// The payment failed.
    PaymentFailed,
    /// The reservation had already ended when its seats arrived.
    ReservationEnded,
}

/// State of one Inventory stream (one event, one section).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InventoryState {
    /// Event and section, set by `InventoryInitialized`.
    pub key: Option<(EventId, SectionName)>,
    capacity: u32,
    reserved: u32,
    sold: u32,
    /// Seat positions below `next_untouched` that are free again, lowest first.
    free: BTreeSet<u32>,
    /// Every position at or above this one has never been allocated.
    next_untouched: u32,
    holds: HashMap<ReservationId, Hold>,
    /// Live (reserved) holds by deadline, for sweepers.
    deadlines: BTreeSet<(DateTime<Utc>, ReservationId)>,
}

impl InventoryState {
    /// Seats in the section (0 before initialisation).
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Seats held for unpaid reservations.
    #[must_use]
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// Seats sold.
    #[must_use]
    pub fn sold(&self) -> u32 {
        self.sold
    }

    /// Seats that can be reserved now: capacity − reserved − sold, computed on every call.
    #[must_use]
    pub fn available(&self) -> u32 {
        self.capacity.saturating_sub(self.reserved).saturating_sub(self.sold)
    }

    /// The hold of `reservation`, whatever its status.
    #[must_use]
    pub fn hold(&self, reservation: ReservationId) -> Option<&Hold> {
        self.holds.get(&reservation)
    }

    /// Every hold ever taken, by reservation.
    pub fn holds(&self) -> impl Iterator<Item = (ReservationId, &Hold)> {
        self.holds.iter().map(|(id, hold)| (*id, hold))
    }

    /// Reserved holds whose deadline is before `t`, earliest first: what a sweeper must expire.
    pub fn holds_expiring_before(&self, t: DateTime<Utc>) -> impl Iterator<Item = (ReservationId, DateTime<Utc>)> {
        self.deadlines.iter().take_while(move |(at, _)| *at < t).map(|(at, id)| (*id, *at))
    }

    fn allocate(&self, event: EventId, section: &SectionName, quantity: u32) -> Vec<AllocatedSeat> {
        let from_free = self.free.iter().copied().take(quantity as usize);
        let fresh_needed = quantity.saturating_sub(u32::try_from(self.free.len()).unwrap_or(u32::MAX));
        let fresh = self.next_untouched..self.next_untouched.saturating_add(fresh_needed);
        from_free
            .chain(fresh)
            .map(|index| AllocatedSeat { index, seat_id: SeatId::derive(event, section.as_str(), index) })
            .collect()
    }
}

/// Why an Inventory command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InventoryError {
    /// `InitializeInventory` on an initialised stream.
    #[error("inventory for event {event_id} section {section} already initialised")]
    AlreadyInitialized {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
    },
    /// A command for an inventory that was never initialised (or for another stream).
    #[error("no inventory for event {event_id} section {section}")]
    NotInitialized {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
    },
    /// Zero seats requested.
    #[error("reservation {reservation_id} asked for zero seats")]
    ZeroQuantity {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Not enough seats left. Also the wire name of the failure, see the module docs.
    #[error("insufficient inventory: requested {requested}, available {available}")]
    InsufficientInventory {
        /// The reservation that asked.
        reservation_id: ReservationId,
        /// The section that lacks them.
        section: SectionName,
        /// Seats asked for.
        requested: u32,
        /// Seats that were available.
        available: u32,
    },
    /// Confirm or release of a reservation that holds nothing here.
    #[error("no hold for reservation {reservation_id}")]
    HoldNotFound {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Confirm of a released hold, or release of a sold one.
    #[error("hold of reservation {reservation_id} is {status:?}")]
    HoldNotActive {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its hold's status.
        status: HoldStatus,
    },
    /// A return names a seat the reservation did not buy here.
    #[error("reservation {reservation_id} did not buy seat {seat_id} here")]
    SeatNotSold {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seat.
        seat_id: SeatId,
    },
    /// A late payment cannot be honoured: too few seats are free now.
    #[error("late sale for reservation {reservation_id} refused: requested {requested}, available {available}")]
    LateSaleRefused {
        /// The reservation.
        reservation_id: ReservationId,
        /// Seats it had held.
        requested: u32,
        /// Seats free now.
        available: u32,
    },
}

/// Commands, events and the rejection of the Inventory aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryAction {
    /// Create the seat pool of a section.
    InitializeInventory {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Its seats.
        capacity: Capacity,
    },
    /// Hold `quantity` seats for a reservation until `expires_at`. Redelivery is a no-op.
    ReserveSeats {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// Seats wanted.
        quantity: u32,
        /// The reservation's deadline.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
    },
    /// Turn a hold into a sale. Redelivery is a no-op.
    ConfirmReservation {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Hand a hold's seats back. Redelivery is a no-op.
    ReleaseReservation {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// Why.
        reason: ReleaseReason,
    },
    /// Sell `quantity` seats to a reservation whose hold ended but whose payment arrived late
    /// and is accepted ([`LatePaymentPolicy::AcceptIfSeatsFree`](super::LatePaymentPolicy)): its
    /// own seats if still held, else as many free ones. Redelivery is a no-op.
    SellLate {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// Seats it had held.
        quantity: u32,
    },
    /// Put sold seats of a reservation back on sale (they were refunded). Seats already
    /// returned are skipped.
    ReturnSeats {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats.
        seats: Vec<SeatId>,
    },
    /// The seat pool exists.
    #[serde(rename = "InventoryInitialized")]
    InventoryInitialized {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Its seats.
        capacity: Capacity,
    },
    /// Seats are held.
    #[serde(rename = "SeatsReserved")]
    SeatsReserved {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats, lowest free positions first.
        seats: Vec<AllocatedSeat>,
        /// The reservation's deadline.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
    },
    /// Held seats are sold.
    #[serde(rename = "SeatsConfirmed")]
    SeatsConfirmed {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats sold.
        seats: Vec<AllocatedSeat>,
    },
    /// Held seats are free again.
    #[serde(rename = "SeatsReleased")]
    SeatsReleased {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats freed.
        seats: Vec<AllocatedSeat>,
        /// Why.
        reason: ReleaseReason,
    },
    /// Seats are sold to a reservation whose late payment was accepted.
    #[serde(rename = "LateSeatsSold")]
    LateSeatsSold {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats sold.
        seats: Vec<AllocatedSeat>,
    },
    /// Sold seats are free again (refunded).
    #[serde(rename = "SoldSeatsReturned")]
    SoldSeatsReturned {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats freed.
        seats: Vec<AllocatedSeat>,
    },
    /// From this event on, `node` appends the inventory's events, for every node's reservations
    /// (single-writer inventories: the saga hands each inventory step to its writer). Stored in
    /// the inventory's claim stream (`<inventory stream>-writer`), not in the inventory itself,
    /// and appended at an expected version of that stream, so of two claims at once one wins. It
    /// changes no seat.
    #[serde(rename = "WriterClaimed")]
    WriterClaimed {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The node (a [`TicketingSystem`](crate::system::TicketingSystem)) that writes it.
        node: uuid::Uuid,
    },
    /// A command was refused.
    Rejected(InventoryError),
}

impl InventoryAction {
    /// The (event, section) stream this action addresses (`None` for a rejection).
    #[must_use]
    pub fn key(&self) -> Option<(EventId, &SectionName)> {
        match self {
            Self::InitializeInventory { event_id, section, .. }
            | Self::ReserveSeats { event_id, section, .. }
            | Self::ConfirmReservation { event_id, section, .. }
            | Self::ReleaseReservation { event_id, section, .. }
            | Self::SellLate { event_id, section, .. }
            | Self::ReturnSeats { event_id, section, .. }
            | Self::SoldSeatsReturned { event_id, section, .. }
            | Self::LateSeatsSold { event_id, section, .. }
            | Self::InventoryInitialized { event_id, section, .. }
            | Self::SeatsReserved { event_id, section, .. }
            | Self::SeatsConfirmed { event_id, section, .. }
            | Self::SeatsReleased { event_id, section, .. }
            | Self::WriterClaimed { event_id, section, .. } => Some((*event_id, section)),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for InventoryAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::InitializeInventory { .. }
            | Self::ReserveSeats { .. }
            | Self::ConfirmReservation { .. }
            | Self::ReleaseReservation { .. }
            | Self::SellLate { .. }
            | Self::ReturnSeats { .. } => MessageKind::Command,
            Self::InventoryInitialized { .. }
            | Self::SeatsReserved { .. }
            | Self::SeatsConfirmed { .. }
            | Self::SeatsReleased { .. }
            | Self::LateSeatsSold { .. }
            | Self::SoldSeatsReturned { .. }
            | Self::WriterClaimed { .. } => MessageKind::Event,
            Self::Rejected(_) => MessageKind::Rejection,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::InitializeInventory { .. } => "InitializeInventory",
            Self::ReserveSeats { .. } => "ReserveSeats",
            Self::ConfirmReservation { .. } => "ConfirmReservation",
            Self::ReleaseReservation { .. } => "ReleaseReservation",
            Self::InventoryInitialized { .. } => "InventoryInitialized",
            Self::SeatsReserved { .. } => "SeatsReserved",
            Self::SeatsConfirmed { .. } => "SeatsConfirmed",
            Self::SeatsReleased { .. } => "SeatsReleased",
            Self::SellLate { .. } => "SellLate",
            Self::LateSeatsSold { .. } => "LateSeatsSold",
            Self::ReturnSeats { .. } => "ReturnSeats",
            Self::SoldSeatsReturned { .. } => "SoldSeatsReturned",
            Self::WriterClaimed { .. } => "WriterClaimed",
            Self::Rejected(InventoryError::InsufficientInventory { .. }) => "InsufficientInventory",
            Self::Rejected(_) => "InventoryRejected",
        }
    }
}

/// Dependencies of the Inventory reducer.
#[derive(Debug, Clone)]
pub struct InventoryEnv {
    /// The clock (inventory decisions do not depend on time today; kept for symmetry and
    /// future sweeping).
    pub clock: Arc<dyn Clock>,
}

impl InventoryEnv {
    /// An environment reading `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// The Inventory reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryReducer;

impl Reducer for InventoryReducer {
    type State = InventoryState;
    type Action = InventoryAction;
    type Env = InventoryEnv;

    fn reduce(
        &self,
        state: &mut InventoryState,
        action: InventoryAction,
        _env: &InventoryEnv,
    ) -> Effects<InventoryAction> {
        event_sourced(state, action, decide, apply, InventoryAction::Rejected)
    }
}

/// The event a command produces, `None` for a redelivered command, or why it is refused.
fn decide(state: &InventoryState, command: InventoryAction) -> Result<Option<InventoryAction>, InventoryError> {
    if let InventoryAction::InitializeInventory { event_id, section, capacity } = command {
        return match state.key {
            Some(_) => Err(InventoryError::AlreadyInitialized { event_id, section }),
            None => Ok(Some(InventoryAction::InventoryInitialized { event_id, section, capacity })),
        };
    }
    if let Some((event_id, section)) = command.key()
        && state.key.as_ref().is_none_or(|(e, s)| *e != event_id || s != section)
    {
        return Err(InventoryError::NotInitialized { event_id, section: section.clone() });
    }
    match command {
        InventoryAction::ReserveSeats { event_id, section, reservation_id, quantity, expires_at } => {
            if state.holds.contains_key(&reservation_id) {
                return Ok(None);
            }
            if quantity == 0 {
                return Err(InventoryError::ZeroQuantity { reservation_id });
            }
            let available = state.available();
            if quantity > available {
                return Err(InventoryError::InsufficientInventory {
                    reservation_id,
                    section,
                    requested: quantity,
                    available,
                });
            }
            let seats = state.allocate(event_id, &section, quantity);
            Ok(Some(InventoryAction::SeatsReserved { event_id, section, reservation_id, seats, expires_at }))
        }
        InventoryAction::ConfirmReservation { event_id, section, reservation_id } => {
            let hold = state.holds.get(&reservation_id).ok_or(InventoryError::HoldNotFound { reservation_id })?;
            match hold.status {
                HoldStatus::Reserved => Ok(Some(InventoryAction::SeatsConfirmed {
                    event_id,
                    section,
                    reservation_id,
                    seats: hold.seats.clone(),
                })),
                HoldStatus::Confirmed => Ok(None),
                status @ HoldStatus::Released => Err(InventoryError::HoldNotActive { reservation_id, status }),
            }
        }
        InventoryAction::ReleaseReservation { event_id, section, reservation_id, reason } => {
            let hold = state.holds.get(&reservation_id).ok_or(InventoryError::HoldNotFound { reservation_id })?;
            match hold.status {
                HoldStatus::Reserved => Ok(Some(InventoryAction::SeatsReleased {
                    event_id,
                    section,
                    reservation_id,
                    seats: hold.seats.clone(),
                    reason,
                })),
                HoldStatus::Released => Ok(None),
                status @ HoldStatus::Confirmed => Err(InventoryError::HoldNotActive { reservation_id, status }),
            }
        }
        InventoryAction::SellLate { event_id, section, reservation_id, quantity } => {
            let hold = state.holds.get(&reservation_id).ok_or(InventoryError::HoldNotFound { reservation_id })?;
            let seats = match hold.status {
                HoldStatus::Confirmed => return Ok(None),
                // Not released yet: its own seats are sold (the pending release is then refused).
                HoldStatus::Reserved => hold.seats.clone(),
                HoldStatus::Released => {
                    let available = state.available();
                    if quantity > available {
                        return Err(InventoryError::LateSaleRefused { reservation_id, requested: quantity, available });
                    }
                    state.allocate(event_id, &section, quantity)
                }
            };
            Ok(Some(InventoryAction::LateSeatsSold { event_id, section, reservation_id, seats }))
        }
        InventoryAction::ReturnSeats { event_id, section, reservation_id, seats } => {
            let hold = state.holds.get(&reservation_id).ok_or(InventoryError::HoldNotFound { reservation_id })?;
            if hold.status != HoldStatus::Confirmed {
                return Err(InventoryError::HoldNotActive { reservation_id, status: hold.status });
            }
            let mut returning = Vec::with_capacity(seats.len());
            for seat_id in seats {
                if hold.returned.iter().any(|s| s.seat_id == seat_id)
                    || returning.iter().any(|s: &AllocatedSeat| s.seat_id == seat_id)
                {
                    continue;
                }
                let seat = hold.seats.iter().find(|s| s.seat_id == seat_id);
                returning.push(*seat.ok_or(InventoryError::SeatNotSold { reservation_id, seat_id })?);
            }
            Ok((!returning.is_empty()).then_some(InventoryAction::SoldSeatsReturned {
                event_id,
                section,
                reservation_id,
                seats: returning,
            }))
        }
        _ => Ok(None),
    }
}

fn seat_count(seats: &[AllocatedSeat]) -> u32 {
    u32::try_from(seats.len()).unwrap_or(u32::MAX)
}

fn apply(state: &mut InventoryState, event: &InventoryAction) {
    match event {
        InventoryAction::InventoryInitialized { event_id, section, capacity } => {
            state.key = Some((*event_id, section.clone()));
            state.capacity = capacity.get();
        }
        InventoryAction::SeatsReserved { reservation_id, seats, expires_at, .. } => {
            for seat in seats {
                if !state.free.remove(&seat.index) {
                    state.next_untouched = state.next_untouched.max(seat.index.saturating_add(1));
                }
            }
            state.reserved = state.reserved.saturating_add(seat_count(seats));
            state.deadlines.insert((*expires_at, *reservation_id));
            let hold = Hold {
                seats: seats.clone(),
                expires_at: *expires_at,
                status: HoldStatus::Reserved,
                returned: Vec::new(),
            };
            state.holds.insert(*reservation_id, hold);
        }
        InventoryAction::SeatsConfirmed { reservation_id, .. } => {
            if let Some(hold) = state.holds.get_mut(reservation_id) {
                let count = seat_count(&hold.seats);
                state.reserved = state.reserved.saturating_sub(count);
                state.sold = state.sold.saturating_add(count);
                state.deadlines.remove(&(hold.expires_at, *reservation_id));
                hold.status = HoldStatus::Confirmed;
            }
        }
        InventoryAction::LateSeatsSold { reservation_id, seats, .. } => {
            let count = seat_count(seats);
            match state.holds.get(reservation_id).map(|h| (h.status, h.expires_at)) {
                Some((HoldStatus::Reserved, expires_at)) => {
                    state.reserved = state.reserved.saturating_sub(count);
                    state.deadlines.remove(&(expires_at, *reservation_id));
                }
                _ => {
                    for seat in seats {
                        if !state.free.remove(&seat.index) {
                            state.next_untouched = state.next_untouched.max(seat.index.saturating_add(1));
                        }
                    }
                }
            }
            state.sold = state.sold.saturating_add(count);
            let expires_at = state.holds.get(reservation_id).map_or(DateTime::<Utc>::MIN_UTC, |h| h.expires_at);
            state.holds.insert(
                *reservation_id,
                Hold { seats: seats.clone(), expires_at, status: HoldStatus::Confirmed, returned: Vec::new() },
            );
        }
        InventoryAction::SoldSeatsReturned { reservation_id, seats, .. } => {
            if let Some(hold) = state.holds.get_mut(reservation_id) {
                let returned: Vec<AllocatedSeat> = seats.iter().filter(|s| hold.seats.contains(s)).copied().collect();
                state.sold = state.sold.saturating_sub(seat_count(&returned));
                state.free.extend(returned.iter().map(|s| s.index));
                hold.seats.retain(|s| !returned.contains(s));
                hold.returned.extend(returned);
            }
        }
        InventoryAction::SeatsReleased { reservation_id, .. } => {
            if let Some(hold) = state.holds.get_mut(reservation_id) {
                state.reserved = state.reserved.saturating_sub(seat_count(&hold.seats));
                state.free.extend(hold.seats.iter().map(|s| s.index));
                state.deadlines.remove(&(hold.expires_at, *reservation_id));
                hold.status = HoldStatus::Released;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::Effect;
    use crate::framework::{FixedClock, ReducerTest, ReducerTestError};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }
    fn event() -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(1))
    }
    fn section() -> SectionName {
        SectionName::new("Stalls").unwrap()
    }
    fn rid(n: u128) -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }
    fn seats(indexes: impl IntoIterator<Item = u32>) -> Vec<AllocatedSeat> {
        indexes
            .into_iter()
            .map(|index| AllocatedSeat { index, seat_id: SeatId::derive(event(), "Stalls", index) })
            .collect()
    }
    fn test() -> ReducerTest<InventoryReducer> {
        ReducerTest::new(InventoryReducer, InventoryEnv::new(Arc::new(FixedClock::new(now()))))
    }
    fn initialized(capacity: u32) -> InventoryAction {
        InventoryAction::InventoryInitialized {
            event_id: event(),
            section: section(),
            capacity: Capacity::new(capacity).unwrap(),
        }
    }
    fn reserve(r: u128, quantity: u32) -> InventoryAction {
        InventoryAction::ReserveSeats {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            quantity,
            expires_at: now() + chrono::Duration::minutes(5),
        }
    }
    fn reserved(r: u128, indexes: impl IntoIterator<Item = u32>) -> InventoryAction {
        InventoryAction::SeatsReserved {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            seats: seats(indexes),
            expires_at: now() + chrono::Duration::minutes(5),
        }
    }
    fn confirm(r: u128) -> InventoryAction {
        InventoryAction::ConfirmReservation { event_id: event(), section: section(), reservation_id: rid(r) }
    }
    fn confirmed(r: u128, indexes: impl IntoIterator<Item = u32>) -> InventoryAction {
        InventoryAction::SeatsConfirmed {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            seats: seats(indexes),
        }
    }
    fn release(r: u128) -> InventoryAction {
        InventoryAction::ReleaseReservation {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            reason: ReleaseReason::Cancelled,
        }
    }
    fn released(r: u128, indexes: impl IntoIterator<Item = u32>) -> InventoryAction {
        InventoryAction::SeatsReleased {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            seats: seats(indexes),
            reason: ReleaseReason::Cancelled,
        }
    }

    #[test]
    fn initialize_then_reject_reinitialize() -> Result<(), ReducerTestError> {
        let init = InventoryAction::InitializeInventory {
            event_id: event(),
            section: section(),
            capacity: Capacity::new(10).unwrap(),
        };
        test().when(init.clone()).then_persisted(&[initialized(10)])?.then_state("10 free", |s| s.available() == 10)?;
        test().given([initialized(10)])?.when(init).then_rejected("twice", |a| {
            matches!(a, InventoryAction::Rejected(InventoryError::AlreadyInitialized { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn reserve_allocates_lowest_seats_and_counts_them() -> Result<(), ReducerTestError> {
        test()
            .given([initialized(10), reserved(1, [0, 1])])?
            .when(reserve(2, 3))
            .then_persisted(&[reserved(2, [2, 3, 4])])?
            .then_state("5 reserved", |s| s.reserved() == 5 && s.available() == 5 && s.sold() == 0)?;
        Ok(())
    }

    #[test]
    fn released_seats_are_reused_lowest_first() -> Result<(), ReducerTestError> {
        test()
            .given([initialized(10), reserved(1, [0, 1]), reserved(2, [2, 3]), released(1, [0, 1])])?
            .when(reserve(3, 3))
            .then_persisted(&[reserved(3, [0, 1, 4])])?;
        Ok(())
    }

    #[test]
    fn reserve_rejections() -> Result<(), ReducerTestError> {
        test().when(reserve(1, 1)).then_rejected("uninitialised", |a| {
            matches!(a, InventoryAction::Rejected(InventoryError::NotInitialized { .. }))
        })?;
        test()
            .given([initialized(3)])?
            .when(reserve(1, 0))
            .then_rejected("zero", |a| matches!(a, InventoryAction::Rejected(InventoryError::ZeroQuantity { .. })))?;
        let other_section = InventoryAction::ReserveSeats {
            event_id: event(),
            section: SectionName::new("Box").unwrap(),
            reservation_id: rid(1),
            quantity: 1,
            expires_at: now(),
        };
        test().given([initialized(3)])?.when(other_section).then_rejected("wrong stream", |a| {
            matches!(a, InventoryAction::Rejected(InventoryError::NotInitialized { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn last_seat_race_exactly_one_wins() -> Result<(), ReducerTestError> {
        let winner = test().given([initialized(1)])?.when(reserve(1, 1)).then_persisted(&[reserved(1, [0])])?;
        assert_eq!(winner.state().available(), 0);
        test().given([initialized(1), reserved(1, [0])])?.when(reserve(2, 1)).then_rejected("second loses", |a| {
            a.name() == "InsufficientInventory"
                && matches!(
                    a,
                    InventoryAction::Rejected(InventoryError::InsufficientInventory { requested: 1, available: 0, .. })
                )
        })?;
        Ok(())
    }

    #[test]
    fn confirm_sells_held_seats_once() -> Result<(), ReducerTestError> {
        test()
            .given([initialized(5), reserved(1, [0, 1])])?
            .when(confirm(1))
            .then_persisted(&[confirmed(1, [0, 1])])?
            .then_state("sold", |s| s.sold() == 2 && s.reserved() == 0 && s.available() == 3)?;
        test()
            .given([initialized(5), reserved(1, [0, 1]), confirmed(1, [0, 1])])?
            .when(confirm(1))
            .then_persisted(&[])?
            .then_unchanged()?;
        Ok(())
    }

    #[test]
    fn confirm_rejections() -> Result<(), ReducerTestError> {
        test().given([initialized(5)])?.when(confirm(1)).then_rejected("no hold", |a| {
            matches!(a, InventoryAction::Rejected(InventoryError::HoldNotFound { .. }))
        })?;
        test().given([initialized(5), reserved(1, [0]), released(1, [0])])?.when(confirm(1)).then_rejected(
            "released",
            |a| {
                matches!(
                    a,
                    InventoryAction::Rejected(InventoryError::HoldNotActive { status: HoldStatus::Released, .. })
                )
            },
        )?;
        Ok(())
    }

    #[test]
    fn release_frees_seats_once() -> Result<(), ReducerTestError> {
        test()
            .given([initialized(5), reserved(1, [0, 1])])?
            .when(release(1))
            .then_persisted(&[released(1, [0, 1])])?
            .then_state("free", |s| s.available() == 5 && s.reserved() == 0)?;
        test()
            .given([initialized(5), reserved(1, [0, 1]), released(1, [0, 1])])?
            .when(release(1))
            .then_persisted(&[])?
            .then_unchanged()?;
        Ok(())
    }

    #[test]
    fn release_rejections() -> Result<(), ReducerTestError> {
        test().given([initialized(5)])?.when(release(1)).then_rejected("no hold", |a| {
            matches!(a, InventoryAction::Rejected(InventoryError::HoldNotFound { .. }))
        })?;
        test().given([initialized(5), reserved(1, [0]), confirmed(1, [0])])?.when(release(1)).then_rejected(
            "sold",
            |a| {
                matches!(
                    a,
                    InventoryAction::Rejected(InventoryError::HoldNotActive { status: HoldStatus::Confirmed, .. })
                )
            },
        )?;
        Ok(())
    }

    #[test]
    fn a_late_sale_sells_free_seats_or_is_refused() -> Result<(), ReducerTestError> {
        let sell = |r| InventoryAction::SellLate {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            quantity: 2,
        };
        let sold = |r, indexes| InventoryAction::LateSeatsSold {
            event_id: event(),
            section: section(),
            reservation_id: rid(r),
            seats: seats(indexes),
        };
        test()
            .given([initialized(3), reserved(1, [0, 1]), released(1, [0, 1])])?
            .when(sell(1))
            .then_persisted(&[sold(1, [0, 1])])?
            .then_state("sold", |s| s.sold() == 2 && s.available() == 1 && s.reserved() == 0)?;
        test()
            .given([initialized(3), reserved(1, [0, 1])])?
            .when(sell(1))
            .then_persisted(&[sold(1, [0, 1])])?
            .then_state("its own held seats", |s| s.sold() == 2 && s.reserved() == 0 && s.available() == 1)?;
        test()
            .given([initialized(3), reserved(1, [0, 1]), released(1, [0, 1]), sold(1, [0, 1])])?
            .when(sell(1))
            .then_persisted(&[])?;
        test()
            .given([initialized(3), reserved(1, [0, 1]), released(1, [0, 1]), reserved(2, [0, 1])])?
            .when(sell(1))
            .then_rejected("gone", |a| {
                matches!(a, InventoryAction::Rejected(InventoryError::LateSaleRefused { available: 1, .. }))
            })?;
        Ok(())
    }

    #[test]
    fn redelivered_reserve_is_a_no_op_even_after_release() -> Result<(), ReducerTestError> {
        test().given([initialized(5), reserved(1, [0])])?.when(reserve(1, 1)).then_persisted(&[])?.then_unchanged()?;
        test()
            .given([initialized(5), reserved(1, [0]), released(1, [0])])?
            .when(reserve(1, 1))
            .then_persisted(&[])?
            .then_unchanged()?;
        Ok(())
    }

    #[test]
    fn sweeper_sees_only_live_holds_due_before_t() -> Result<(), ReducerTestError> {
        let t = test().given([initialized(5), reserved(1, [0]), reserved(2, [1]), confirmed(2, [1])])?;
        let due: Vec<_> = t.state().holds_expiring_before(now() + chrono::Duration::minutes(6)).collect();
        assert_eq!(due, vec![(rid(1), now() + chrono::Duration::minutes(5))]);
        assert_eq!(t.state().holds_expiring_before(now()).count(), 0);
        Ok(())
    }

    #[test]
    fn hot_section_operations_do_not_scan_capacity() {
        let env = InventoryEnv::new(Arc::new(FixedClock::new(now())));
        let mut state = InventoryState::default();
        InventoryReducer.reduce(&mut state, initialized(Capacity::MAX), &env);
        let started = std::time::Instant::now();
        for r in 0..20_000u128 {
            let effects = InventoryReducer.reduce(&mut state, reserve(r, 2), &env);
            assert!(matches!(effects.as_slice(), [Effect::Persist(_)]));
            let action = if r % 2 == 0 { confirm(r) } else { release(r) };
            InventoryReducer.reduce(&mut state, action, &env);
        }
        assert_eq!(state.sold(), 20_000);
        assert_eq!(state.available(), Capacity::MAX - 20_000);
        // Generous bound so debug builds on shared machines pass; an O(capacity) step would take
        // minutes here.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn event_names_equal_serde_tags() {
        for event in [initialized(3), reserved(1, [0]), confirmed(1, [0]), released(1, [0])] {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json.as_object().unwrap().keys().next().unwrap(), event.name());
            assert_eq!(serde_json::from_value::<InventoryAction>(json).unwrap(), event);
        }
    }
}
