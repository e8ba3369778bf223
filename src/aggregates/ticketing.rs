//! [`TicketingAction`], the action of any of the six aggregates, and [`TicketingEnv`], their
//! environments: what the saga and the system route between aggregates.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::allowance::AllowanceAction;
use super::event::{EventAction, EventEnv};
use super::inventory::{InventoryAction, InventoryEnv};
use super::payment::{PaymentAction, PaymentEnv};
use super::reservation::{ReservationAction, ReservationEnv};
use super::tickets::{TicketsAction, TicketsEnv};
use crate::framework::{Clock, Message, MessageKind};

/// An action for one of the six aggregates.
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
    /// For the Tickets of a purchase.
    Tickets(TicketsAction),
    /// For a customer's Allowance of an event's tickets.
    Allowance(AllowanceAction),
}

impl Message for TicketingAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::Event(a) => a.kind(),
            Self::Inventory(a) => a.kind(),
            Self::Reservation(a) => a.kind(),
            Self::Payment(a) => a.kind(),
            Self::Tickets(a) => a.kind(),
            Self::Allowance(a) => a.kind(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Event(a) => a.name(),
            Self::Inventory(a) => a.name(),
            Self::Reservation(a) => a.name(),
            Self::Payment(a) => a.name(),
            Self::Tickets(a) => a.name(),
            Self::Allowance(a) => a.name(),
        }
    }
}

impl From<EventAction> for TicketingAction {
    fn from(action: EventAction) -> Self {
        Self::Event(action)
    }
}

impl From<InventoryAction> for TicketingAction {
    fn from(action: InventoryAction) -> Self {
        Self::Inventory(action)
    }
}

impl From<ReservationAction> for TicketingAction {
    fn from(action: ReservationAction) -> Self {
        Self::Reservation(action)
    }
}

impl From<AllowanceAction> for TicketingAction {
    fn from(action: AllowanceAction) -> Self {
        Self::Allowance(action)
    }
}

impl From<TicketsAction> for TicketingAction {
    fn from(action: TicketsAction) -> Self {
        Self::Tickets(action)
    }
}

impl From<PaymentAction> for TicketingAction {
    fn from(action: PaymentAction) -> Self {
        Self::Payment(action)
    }
}

/// The environments of the five reducers.
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
    /// Tickets.
    pub tickets: TicketsEnv,
}

impl TicketingEnv {
    /// All five reading `clock`, with the default hold duration.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            event: EventEnv::new(Arc::clone(&clock)),
            inventory: InventoryEnv::new(Arc::clone(&clock)),
            reservation: ReservationEnv::new(Arc::clone(&clock)),
            payment: PaymentEnv::new(Arc::clone(&clock)),
            tickets: TicketsEnv::new(clock),
        }
    }
}
