//! The four aggregates composed into one reducer for the in-process
//! [`Store`](crate::framework::Store), with the reservation saga wired between them.
//!
//! The saga is one pure function, [`saga_reactions`]: given a persisted event it names the
//! commands that must follow. [`Ticketing`] applies it to the events its children persist; the
//! system layer applies the same function to events read from a bus, so both paths run one saga.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use super::event::{EventAction, EventEnv, EventReducer, EventState};
use super::inventory::{
    InventoryAction, InventoryEnv, InventoryError, InventoryReducer, InventoryState, ReleaseReason,
};
use super::payment::{PaymentAction, PaymentEnv, PaymentGateway, PaymentReducer, PaymentState};
use super::reservation::{ReservationAction, ReservationEnv, ReservationError, ReservationReducer, ReservationState};
use crate::domain::{EventId, ReservationId, SectionName};
use crate::framework::{Clock, Effect, Effects, Message, MessageKind, Reducer};

/// An action for one of the four aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketingAction {
    /// For the Event aggregate.
    Event(EventAction),
    /// For an Inventory (event, section).
    Inventory(InventoryAction),
    /// For a Reservation.
    Reservation(ReservationAction),
    /// For a Payment.
    Payment(PaymentAction),
}

impl Message for TicketingAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::Event(a) => a.kind(),
            Self::Inventory(a) => a.kind(),
            Self::Reservation(a) => a.kind(),
            Self::Payment(a) => a.kind(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Event(a) => a.name(),
            Self::Inventory(a) => a.name(),
            Self::Reservation(a) => a.name(),
            Self::Payment(a) => a.name(),
        }
    }
}

/// Every aggregate instance, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketingState {
    /// Events.
    pub events: HashMap<EventId, EventState>,
    /// Inventories, one per (event, section).
    pub inventories: HashMap<(EventId, SectionName), InventoryState>,
    /// Reservations.
    pub reservations: HashMap<ReservationId, ReservationState>,
    /// Payments.
    pub payments: HashMap<crate::domain::PaymentId, PaymentState>,
}

impl TicketingState {
    /// The inventory of `section` of `event`.
    #[must_use]
    pub fn inventory(&self, event: EventId, section: &SectionName) -> Option<&InventoryState> {
        self.inventories.get(&(event, section.clone()))
    }

    /// The reservation `id`.
    #[must_use]
    pub fn reservation(&self, id: ReservationId) -> Option<&super::reservation::Reservation> {
        self.reservations.get(&id)?.reservation.as_ref()
    }
}

/// The environments of the four reducers.
#[derive(Debug, Clone)]
pub struct TicketingEnv {
    /// Event.
    pub event: EventEnv,
    /// Inventory.
    pub inventory: InventoryEnv,
    /// Reservation.
    pub reservation: ReservationEnv,
    /// Payment.
    pub payment: PaymentEnv,
}

impl TicketingEnv {
    /// All four reading `clock`, payments through `gateway`, default hold duration.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self {
            event: EventEnv::new(Arc::clone(&clock)),
            inventory: InventoryEnv::new(Arc::clone(&clock)),
            reservation: ReservationEnv::new(Arc::clone(&clock)),
            payment: PaymentEnv::new(clock, gateway),
        }
    }
}

/// The composite reducer: routes each action to the instance it addresses and turns persisted
/// events into the saga's next commands.
///
/// Two additions to the child reducers' behaviour, both because only the composite sees more
/// than one aggregate:
/// - `InitiateReservation` is refused with [`ReservationError::NotOnSale`] unless the event exists,
///   is on sale and has the section;
/// - when Inventory refuses `ReserveSeats` with `InsufficientInventory`, the rejection is returned
///   as usual (nothing changes) together with a follow-up `RecordSeatShortage` for the
///   reservation, which then ends Compensated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticketing;

impl Reducer for Ticketing {
    type State = TicketingState;
    type Action = TicketingAction;
    type Env = TicketingEnv;

    fn reduce(
        &self,
        state: &mut TicketingState,
        action: TicketingAction,
        env: &TicketingEnv,
    ) -> Effects<TicketingAction> {
        let is_command = action.is_command();
        let shortage_of = match &action {
            TicketingAction::Inventory(InventoryAction::ReserveSeats { reservation_id, .. }) => Some(*reservation_id),
            _ => None,
        };
        let mut effects = route(state, action, env);
        if !is_command {
            return effects;
        }
        let mut follow_ups: SmallVec<[TicketingAction; 4]> = SmallVec::new();
        for effect in &effects {
            match effect {
                Effect::Persist(events) => follow_ups.extend(events.iter().flat_map(saga_reactions)),
                Effect::Reject(rejection) => {
                    if let (
                        Some(reservation_id),
                        TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::InsufficientInventory {
                            requested,
                            available,
                            ..
                        })),
                    ) = (shortage_of, rejection.as_ref())
                    {
                        follow_ups.push(TicketingAction::Reservation(ReservationAction::RecordSeatShortage {
                            reservation_id,
                            requested: *requested,
                            available: *available,
                        }));
                    }
                }
                _ => {}
            }
        }
        effects.extend(follow_ups.into_iter().map(Effect::send));
        effects
    }
}

fn route(state: &mut TicketingState, action: TicketingAction, env: &TicketingEnv) -> Effects<TicketingAction> {
    match action {
        TicketingAction::Event(a) => {
            let Some(id) = a.event_id() else { return smallvec![] };
            let child = state.events.entry(id).or_default();
            lift(EventReducer.reduce(child, a, &env.event), TicketingAction::Event)
        }
        TicketingAction::Inventory(a) => {
            let Some((event, section)) = a.key() else { return smallvec![] };
            let child = state.inventories.entry((event, section.clone())).or_default();
            let effects = InventoryReducer.reduce(child, a, &env.inventory);
            lift(effects, TicketingAction::Inventory)
        }
        TicketingAction::Reservation(a) => {
            let Some(id) = a.reservation_id() else { return smallvec![] };
            if let ReservationAction::InitiateReservation { event_id, section, .. } = &a
                && !state.reservations.contains_key(&id)
                && !state.events.get(event_id).is_some_and(|e| e.is_on_sale() && e.section(section).is_some())
            {
                let error = ReservationError::NotOnSale { event_id: *event_id, section: section.clone() };
                return smallvec![Effect::Reject(Box::new(TicketingAction::Reservation(ReservationAction::Rejected(
                    error
                ))))];
            }
            let child = state.reservations.entry(id).or_default();
            lift(ReservationReducer.reduce(child, a, &env.reservation), TicketingAction::Reservation)
        }
        TicketingAction::Payment(a) => {
            let Some(id) = a.payment_id() else { return smallvec![] };
            let child = state.payments.entry(id).or_default();
            lift(PaymentReducer.reduce(child, a, &env.payment), TicketingAction::Payment)
        }
    }
}

fn lift<A: Send + 'static>(effects: Effects<A>, wrap: fn(A) -> TicketingAction) -> Effects<TicketingAction> {
    effects.into_iter().map(|e| e.map(wrap)).collect()
}

/// The reservation saga as a pure function: the commands that must follow a persisted `event`.
/// Anything that is not a persisted event yields nothing.
///
/// | Persisted event | Follow-up command |
/// |---|---|
/// | `EventCreated` | `InitializeInventory` for each section |
/// | `ReservationInitiated` | `ReserveSeats` |
/// | `SeatsReserved` | `AllocateSeats` |
/// | `PaymentRequested` | `ProcessPayment` |
/// | Payment `PaymentSucceeded` | `CompletePayment` |
/// | Payment `PaymentFailed` | `FailPayment` |
/// | `ReservationCompleted` | `ConfirmReservation` |
/// | `ReservationExpired` / `Cancelled` / `Compensated` with seats, `SeatsReturned` | `ReleaseReservation` |
/// | Reservation `PaymentSucceeded` with `refund_owed` | `RefundPayment` of the whole amount |
///
/// Commands it produces are idempotent, so feeding it a redelivered event is harmless.
#[must_use]
pub fn saga_reactions(event: &TicketingAction) -> SmallVec<[TicketingAction; 2]> {
    use TicketingAction as T;
    let release = |event_id: &EventId, section: &SectionName, reservation_id: &ReservationId, reason| {
        T::Inventory(InventoryAction::ReleaseReservation {
            event_id: *event_id,
            section: section.clone(),
            reservation_id: *reservation_id,
            reason,
        })
    };
    match event {
        T::Event(EventAction::EventCreated { details, .. }) => details
            .sections
            .iter()
            .map(|s| {
                T::Inventory(InventoryAction::InitializeInventory {
                    event_id: details.event_id,
                    section: s.name.clone(),
                    capacity: s.capacity,
                })
            })
            .collect(),
        T::Reservation(ReservationAction::ReservationInitiated {
            reservation_id,
            event_id,
            section,
            quantity,
            expires_at,
            ..
        }) => smallvec![T::Inventory(InventoryAction::ReserveSeats {
            event_id: *event_id,
            section: section.clone(),
            reservation_id: *reservation_id,
            quantity: *quantity,
            expires_at: *expires_at,
        })],
        T::Inventory(InventoryAction::SeatsReserved { reservation_id, seats, .. }) => {
            smallvec![T::Reservation(ReservationAction::AllocateSeats {
                reservation_id: *reservation_id,
                seats: seats.iter().map(|s| s.seat_id).collect(),
            })]
        }
        T::Reservation(ReservationAction::PaymentRequested { reservation_id, payment_id, amount }) => {
            smallvec![T::Payment(PaymentAction::ProcessPayment {
                payment_id: *payment_id,
                reservation_id: *reservation_id,
                amount: *amount,
            })]
        }
        T::Payment(PaymentAction::PaymentSucceeded { payment_id, reservation_id, amount, .. }) => {
            smallvec![T::Reservation(ReservationAction::CompletePayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                amount: *amount,
            })]
        }
        T::Payment(PaymentAction::PaymentFailed { payment_id, reservation_id, reason, .. }) => {
            smallvec![T::Reservation(ReservationAction::FailPayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                reason: reason.clone(),
            })]
        }
        T::Reservation(ReservationAction::ReservationCompleted { reservation_id, event_id, section, .. }) => {
            smallvec![T::Inventory(InventoryAction::ConfirmReservation {
                event_id: *event_id,
                section: section.clone(),
                reservation_id: *reservation_id,
            })]
        }
        T::Reservation(ReservationAction::ReservationExpired { reservation_id, event_id, section, seats, .. })
            if !seats.is_empty() =>
        {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::Expired)]
        }
        T::Reservation(ReservationAction::ReservationCancelled {
            reservation_id, event_id, section, seats, ..
        }) if !seats.is_empty() => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::Cancelled)]
        }
        T::Reservation(ReservationAction::ReservationCompensated {
            reservation_id, event_id, section, seats, ..
        }) if !seats.is_empty() => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::PaymentFailed)]
        }
        T::Reservation(ReservationAction::SeatsReturned { reservation_id, event_id, section, .. }) => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::ReservationEnded)]
        }
        T::Reservation(ReservationAction::PaymentSucceeded { payment_id, amount, refund_owed: true, .. }) => {
            smallvec![T::Payment(PaymentAction::RefundPayment {
                payment_id: *payment_id,
                amount: *amount,
                reason: "payment arrived after the reservation ended".into(),
            })]
        }
        _ => smallvec![],
    }
}
