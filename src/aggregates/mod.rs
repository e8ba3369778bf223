//! The six aggregates as pure reducers, one file each; the reservation saga as pure functions
//! ([`reactions`]); and [`SagaDriver`], which runs both synchronously for tests and baselines.
//!
//! Every aggregate follows the same contract, written once in
//! [`event_sourced`](crate::framework::event_sourced), which the runtime relies on: a command is decided
//! against the state without touching it when refused (the answer is exactly one
//! [`Effect::Reject`](crate::framework::Effect::Reject) carrying the `Rejected` variant); an
//! accepted command applies its events and returns them in
//! [`Effect::Persist`](crate::framework::Effect::Persist); an event is applied and returns
//! nothing, so folding a stream's events rebuilds its state. A redelivered command that was
//! already carried out returns no effects at all.

mod allowance;
mod driver;
mod event;
mod inventory;
mod order_line;
mod payment;
mod reservation;
mod saga;
mod streams;
mod ticketing;
mod tickets;

pub use allowance::{AllowanceAction, AllowanceError, AllowanceReducer, AllowanceState, ClaimRelease};
pub use driver::{SagaDriver, TicketingState};
pub use saga::{Charge, Reaction, Refund, reactions};
pub(crate) use saga::{EVENT_CANCELLED_REFUND, rejection_reactions};

pub use event::{
    EventAction, EventDetails, EventEnv, EventError, EventReducer, EventState, EventStatus, LatePaymentPolicy,
    SalesPolicy, Section,
};
pub use inventory::{
    AllocatedSeat, Hold, HoldStatus, InventoryAction, InventoryEnv, InventoryError, InventoryReducer, InventoryState,
    ReleaseReason,
};
pub use order_line::{LineSeats, OrderLine, split_by_line};
pub use payment::{
    GatewayOutcome, PaymentAction, PaymentEnv, PaymentError, PaymentRecord, PaymentReducer, PaymentState,
    PaymentStatus, RefundRecord, RefundStatus,
};
pub use reservation::{
    CompensationReason, Reservation, ReservationAction, ReservationEnv, ReservationError, ReservationReducer,
    ReservationState, ReservationStatus,
};
pub use streams::{
    EVENT_SCHEMA_VERSION, StreamDecodeError, TICKETING_CATEGORIES, allowance_stream, category, event_stream,
    inventory_stream, payment_stream, reservation_stream, tickets_stream, writer_claims_stream,
};
pub use ticketing::{TicketingAction, TicketingEnv};
pub use tickets::{
    Admission, Direction, OrderTickets, RevocationReason, ScanAnswer, ScanRecord, Ticket, TicketStatus, TicketsAction,
    TicketsEnv, TicketsError, TicketsReducer, TicketsState,
};
