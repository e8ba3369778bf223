//! The types most programs need: `use boxoffice::prelude::*;`.

pub use crate::aggregates::{
    EventAction, InventoryAction, PaymentAction, ReservationAction, ReservationStatus, Section, SimulatedGateway,
    Ticketing, TicketingAction, TicketingEnv, TicketingState, saga_reactions,
};
pub use crate::domain::{
    Capacity, Currency, CustomerId, DomainError, EventId, Money, PaymentId, PricingTier, ReservationId, SeatId,
    SectionName, TierKind, Venue, VenueId,
};
pub use crate::framework::{Clock, Effect, FixedClock, Message, Reducer, Store, SystemClock};
