//! The types most programs need: `use boxoffice::prelude::*;`.

pub use crate::aggregates::{
    EventAction, InventoryAction, LatePaymentPolicy, PaymentAction, ReservationAction, ReservationStatus, SalesPolicy,
    Section, TicketingAction,
};
pub use crate::domain::{
    Capacity, Currency, CustomerId, DomainError, EventId, Money, MoneyTotal, PaymentId, PricingTier, RefundId,
    ReservationId, SeatId, SectionName, TierKind, Venue, VenueId,
};
pub use crate::framework::{Clock, FixedClock, SystemClock};
pub use crate::system::{
    EventSpec, PaymentDetails, PaymentGateway, Receipt, RefundRequest, ReserveRequest, SimulatedGateway, SystemError,
    TicketingSystem,
};
