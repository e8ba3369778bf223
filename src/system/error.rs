//! The errors of the assembled system.

use crate::aggregates::{
    EventAction, EventError, InventoryAction, InventoryError, PaymentAction, PaymentError, ReservationAction,
    ReservationError, TicketingAction,
};
use crate::domain::{DomainError, ReservationId};
use crate::event_store::{EventStoreError, StreamId};
use crate::framework::JournalError;

use super::CommandError;

/// Why a [`TicketingSystem`](super::TicketingSystem) call failed. Every variant means nothing
/// was changed by the call, except [`SystemError::Timeout`], after which the saga may still
/// finish (or expire) what the call started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// A value failed validation.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// The Event aggregate refused.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The Inventory refused.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The Reservation refused.
    #[error(transparent)]
    Reservation(#[from] ReservationError),
    /// The Payment refused.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// Not enough seats were free when the hold was attempted.
    #[error("reservation {reservation_id}: requested {requested} seats, {available} available")]
    InsufficientInventory {
        /// The reservation that could not be filled (it ended Compensated).
        reservation_id: ReservationId,
        /// Seats asked for.
        requested: u32,
        /// Seats free at the time.
        available: u32,
    },
    /// The payment was declined; the seats were released.
    #[error("reservation {reservation_id}: payment declined ({reason}); seats released")]
    PaymentDeclined {
        /// The reservation.
        reservation_id: ReservationId,
        /// The gateway's reason.
        reason: String,
    },
    /// The reservation ended (expired or cancelled) before the call could complete it.
    #[error("reservation {reservation_id} has ended: {how}")]
    ReservationEnded {
        /// The reservation.
        reservation_id: ReservationId,
        /// `expired`, `cancelled` or `compensated`.
        how: &'static str,
    },
    /// No reservation with this id exists.
    #[error("reservation {reservation_id} not found")]
    UnknownReservation {
        /// The id.
        reservation_id: ReservationId,
    },
    /// The saga did not reach the awaited step in time.
    #[error("reservation {reservation_id}: no outcome within {waited_ms} ms")]
    Timeout {
        /// The reservation.
        reservation_id: ReservationId,
        /// How long the call waited.
        waited_ms: u128,
    },
    /// Other writers kept winning the race for a stream.
    #[error("stream {stream} stayed contended after {attempts} attempts")]
    Contention {
        /// The stream.
        stream: StreamId,
        /// Attempts made.
        attempts: u32,
    },
    /// The event store failed.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The system is shutting down.
    #[error("the system is shutting down")]
    ShuttingDown,
    /// A read model failed or did not catch up in time.
    #[error(transparent)]
    Projection(#[from] crate::projections::ProjectionError),
    /// Configuration from the environment was invalid or a backend could not be reached.
    #[error("configuration: {0}")]
    Config(String),
}

impl From<EventStoreError> for SystemError {
    fn from(error: EventStoreError) -> Self {
        SystemError::Storage(error.to_string())
    }
}

impl From<JournalError> for SystemError {
    fn from(error: JournalError) -> Self {
        SystemError::Storage(error.to_string())
    }
}

impl From<CommandError<TicketingAction>> for SystemError {
    fn from(error: CommandError<TicketingAction>) -> Self {
        match error {
            CommandError::Rejected(rejection) => match rejection {
                TicketingAction::Event(EventAction::Rejected(e)) => e.into(),
                TicketingAction::Inventory(InventoryAction::Rejected(e)) => e.into(),
                TicketingAction::Reservation(ReservationAction::Rejected(e)) => e.into(),
                TicketingAction::Payment(PaymentAction::Rejected(e)) => e.into(),
                other => SystemError::Storage(format!("unexpected rejection {other:?}")),
            },
            CommandError::RetriesExhausted { stream, attempts } => SystemError::Contention { stream, attempts },
            CommandError::Storage { source, .. } => source.into(),
            CommandError::WorkerStopped { .. } => SystemError::ShuttingDown,
            CommandError::NotACommand(action) => SystemError::Storage(format!("not a command: {action:?}")),
        }
    }
}
