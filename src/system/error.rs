//! The errors of the assembled system.

use crate::aggregates::{
    EventAction, EventError, InventoryAction, InventoryError, PaymentAction, PaymentError, ReservationAction,
    ReservationError, TicketingAction,
};
use crate::domain::{DomainError, ReservationId, SectionName};
use std::sync::Arc;

use crate::event_store::{EventStoreError, StreamId};

use super::commands::CommandError;
use crate::framework::Message;

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
    /// The Tickets of a purchase refused (an unknown ticket, a transfer after the cut-off or of
    /// a revoked ticket).
    #[error(transparent)]
    Tickets(#[from] crate::aggregates::TicketsError),
    /// Ticket codes, scanner kits and check-in need the master secret the codes are signed
    /// from, and none was configured. Handling: set the variable (32 random bytes, base64), or
    /// pass [`TicketKeys`](crate::domain::TicketKeys) to the builder.
    #[error("no ticket signing key configured: set {variable}")]
    NoTicketKeys {
        /// The variable to set.
        variable: &'static str,
    },
    /// The customer holds or is buying as many tickets of the event as it allows
    /// ([`SalesPolicy::max_tickets_per_customer`](crate::aggregates::SalesPolicy::max_tickets_per_customer)).
    #[error(transparent)]
    Allowance(#[from] crate::aggregates::AllowanceError),
    /// The configured ticket master secret is unusable.
    #[error(transparent)]
    TicketKey(#[from] crate::domain::TicketKeyError),
    /// The Payment refused.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// Not enough seats were free when the hold was attempted, or the request asks for more
    /// seats than the section has (then refused up front: nothing was recorded).
    #[error("reservation {reservation_id}: requested {requested} seats, {available} available{}", section.as_ref().map(|s| format!(" in section {s}")).unwrap_or_default())]
    InsufficientInventory {
        /// The reservation that could not be filled: it ended Compensated, or, for more seats
        /// than the section has, it was never recorded.
        reservation_id: ReservationId,
        /// Seats asked for.
        requested: u32,
        /// Seats free at the time, or the section's capacity when `requested` exceeds it.
        available: u32,
        /// The section that lacked them (for an order of several sections, the first line found
        /// short; `None` for a reservation compensated in a log written before orders had
        /// several sections).
        section: Option<SectionName>,
    },
    /// The payment was declined; the seats were released.
    #[error("reservation {reservation_id}: payment declined ({reason}); seats released")]
    PaymentDeclined {
        /// The reservation.
        reservation_id: ReservationId,
        /// The gateway's reason.
        reason: String,
    },
    /// The payment gateway's answer to the charge is not known yet (it timed out, or the
    /// provider failed). Nothing is lost: reconciliation asks the provider and the purchase
    /// completes or its seats are released. Handling: tell the customer the payment is being
    /// confirmed and look at [`TicketingSystem::reservation`](super::TicketingSystem::reservation) later.
    #[error("payment for reservation {reservation_id} is not confirmed yet; it is being reconciled")]
    PaymentPending {
        /// The reservation.
        reservation_id: ReservationId,
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
    #[error(
        "reservation {reservation_id}: no outcome within {waited_ms} ms; {consumer} is at position {handled}{}",
        because(.cause.as_ref())
    )]
    Timeout {
        /// The reservation.
        reservation_id: ReservationId,
        /// How long the call waited.
        waited_ms: u128,
        /// The consumer that carries the reservation on (the saga's follower).
        consumer: String,
        /// The position up to which it had handled the log.
        handled: u64,
        /// What it is failing with (or last failed with), if anything.
        #[source]
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
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
    #[error("storage failed")]
    Storage(#[source] Arc<EventStoreError>),
    /// A stream holds an event this release cannot read back. Handling: an operator's matter
    /// (the log was written by a newer release, or damaged); nothing was changed.
    #[error("stream {stream} holds an event that does not decode")]
    Undecodable {
        /// The stream.
        stream: StreamId,
        /// The decoding error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The saga has not caught up with `position` in time (the store is failing, or overloaded).
    /// Handling: retry later; everything committed is carried out once the store recovers.
    #[error("{consumer} handled up to position {handled}, not {position}, within {waited_ms} ms{}", because(.cause.as_ref()))]
    Lagging {
        /// The consumer waited for (the saga's follower).
        consumer: String,
        /// The position waited for.
        position: u64,
        /// How far it got.
        handled: u64,
        /// How long it waited.
        waited_ms: u128,
        /// What it is failing with (or last failed with), if anything.
        #[source]
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The system is shutting down.
    #[error("the system is shutting down")]
    ShuttingDown,
    /// A read model failed or did not catch up in time.
    #[error(transparent)]
    Projection(#[from] crate::projections::ProjectionError),
    /// Configuration from the environment was invalid. Handling: fix the configuration.
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A configured backend could not be reached or prepared. Handling: check the service and
    /// its address, then start again.
    #[error("cannot reach {what}")]
    Unreachable {
        /// What was being reached (`DATABASE_URL`, `KAFKA_BROKERS`, the schema migration).
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The event store's schema was never migrated (for `PostgreSQL`,
    /// [`PostgresEventStore::migrate`](crate::event_store::PostgresEventStore::migrate) was
    /// never run on it): reported by `build()` instead of failing the first command. Handling:
    /// run the migration (or build with
    /// [`TicketingSystem::builder_from_config`](super::TicketingSystem::builder_from_config),
    /// which migrates), then build again.
    #[error("the event store is not migrated: run its migration before building the system")]
    NotMigrated {
        /// [`EventStoreError::NotMigrated`], naming the schema and the missing tables.
        #[source]
        source: Arc<EventStoreError>,
    },
    /// An action that is not a command reached the engine: a bug in the caller.
    #[error("{name} is not a command for an aggregate instance")]
    NotACommand {
        /// The action's name.
        name: &'static str,
    },
}

impl From<EventStoreError> for SystemError {
    fn from(error: EventStoreError) -> Self {
        SystemError::Storage(Arc::new(error))
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
                TicketingAction::Tickets(crate::aggregates::TicketsAction::Rejected(e)) => e.into(),
                TicketingAction::Allowance(crate::aggregates::AllowanceAction::Rejected(e)) => e.into(),
                other => SystemError::NotACommand { name: other.name() },
            },
            CommandError::RetriesExhausted { stream, attempts } => SystemError::Contention { stream, attempts },
            CommandError::Storage { source, .. } => SystemError::Storage(source),
            CommandError::Decode { stream, source } => SystemError::Undecodable { stream, source },
            CommandError::WorkerStopped { .. } => SystemError::ShuttingDown,
            CommandError::NotACommand(action) => SystemError::NotACommand { name: action.name() },
        }
    }
}

/// `": <cause>"` for a wait's error message, or nothing.
pub(crate) fn because(cause: Option<&Arc<dyn std::error::Error + Send + Sync>>) -> String {
    cause.map(|cause| format!(": {cause}")).unwrap_or_default()
}
