//! Where each aggregate instance lives in the event store, and how a stored event is read back
//! as a [`TicketingAction`].
//!
//! | Aggregate | Stream id | Payload |
//! |---|---|---|
//! | Event | `event-<event id>` | [`EventAction`] |
//! | Inventory | `inventory-<uuid v5 of event id and section>` | [`InventoryAction`] |
//! | Its writer's claims | `inventory-<the same uuid>-writer` | [`InventoryAction::WriterClaimed`] |
//! | Reservation | `reservation-<reservation id>` | [`ReservationAction`] |
//! | Payment | `payment-<payment id>` | [`PaymentAction`] |
//! | Tickets | `tickets-<reservation id>` | [`TicketsAction`](super::TicketsAction) |
//! | Allowance | `allowance-<uuid v5 of event id and customer id>` | [`AllowanceAction`](super::AllowanceAction) |
//!
//! The part before the first `-` is the stream's category; the event bus names topics after it.

use serde::Deserialize;
use uuid::Uuid;

use super::{
    AllowanceAction, EventAction, InventoryAction, PaymentAction, ReservationAction, TicketingAction, TicketsAction,
};
use crate::domain::{CustomerId, EventId, PaymentId, ReservationId, SectionName};
use crate::event_store::{Envelope, EventStoreError, StreamId};

/// The stream categories of the six aggregates, which name their bus topics (see
/// `TopicRouter::topics_for_categories` in the event bus layer).
pub const TICKETING_CATEGORIES: [&str; 6] = ["event", "inventory", "reservation", "payment", "tickets", "allowance"];

/// Namespace of the UUID v5 that names an allowance stream.
const ALLOWANCE_NAMESPACE: Uuid = Uuid::from_u128(0x47c2_8e19_d3a0_4b57_8f6e_19a4_c0b2_5d83);

/// Namespace of the UUID v5 that names an inventory stream.
const INVENTORY_NAMESPACE: Uuid = Uuid::from_u128(0x9b3e_5f10_2c4d_4e8a_a1b2_7c6d_5e4f_3a21);

/// A stored event could not be read as a ticketing event.
#[derive(Debug, thiserror::Error)]
pub enum StreamDecodeError {
    /// The stream's category is not one of the six aggregates.
    #[error("stream {stream} (event at position {global_position}) does not belong to a ticketing aggregate")]
    UnknownCategory {
        /// The stream.
        stream: StreamId,
        /// The event's global position.
        global_position: u64,
    },
    /// The event was written with a newer shape than this release knows (by a newer release,
    /// say, during a rolling deploy): it is refused rather than read as the current shape.
    #[error(
        "event {event_id} at position {global_position} of stream {stream} is {event_type} version {version}; \
         this release reads up to version {known}"
    )]
    NewerSchema {
        /// The stream.
        stream: StreamId,
        /// The event's id.
        event_id: Uuid,
        /// Its global position.
        global_position: u64,
        /// Its stored type name.
        event_type: String,
        /// Its schema version.
        version: u32,
        /// The newest version this release reads.
        known: u32,
    },
    /// The payload does not match the aggregate's event shape.
    #[error("event {event_id} at position {global_position} of stream {stream} is not a valid {event_type}: {source}")]
    Payload {
        /// The stream.
        stream: StreamId,
        /// The event's id.
        event_id: Uuid,
        /// Its global position.
        global_position: u64,
        /// Its stored type name.
        event_type: String,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

impl StreamDecodeError {
    /// The global position of the event that could not be read.
    #[must_use]
    pub fn global_position(&self) -> u64 {
        match self {
            Self::UnknownCategory { global_position, .. }
            | Self::NewerSchema { global_position, .. }
            | Self::Payload { global_position, .. } => *global_position,
        }
    }
}

/// The schema version of every ticketing event this release writes, and the newest it reads
/// (older versions are lifted by the store's upcasters before they get here).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The stream of the Event aggregate `event`.
///
/// # Errors
/// Never in practice: the id is always a valid stream id; the `Result` comes from [`StreamId::new`].
pub fn event_stream(event: EventId) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("event-{}", event.as_uuid()))
}

/// The stream of the inventory of `section` of `event`.
///
/// # Errors
/// As [`event_stream`].
pub fn inventory_stream(event: EventId, section: &SectionName) -> Result<StreamId, EventStoreError> {
    let mut name = Vec::with_capacity(16 + section.as_str().len());
    name.extend_from_slice(event.as_uuid().as_bytes());
    name.extend_from_slice(section.as_str().as_bytes());
    StreamId::new(format!("inventory-{}", Uuid::new_v5(&INVENTORY_NAMESPACE, &name)))
}

/// The stream of the claims on writing the inventory of `section` of `event`
/// ([`InventoryAction::WriterClaimed`]): the inventory's stream id with `-writer` after it.
///
/// # Errors
/// As [`event_stream`].
pub fn writer_claims_stream(event: EventId, section: &SectionName) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("{}-writer", inventory_stream(event, section)?))
}

/// The stream of the reservation `reservation`.
///
/// # Errors
/// As [`event_stream`].
pub fn reservation_stream(reservation: ReservationId) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("reservation-{}", reservation.as_uuid()))
}

/// The stream of the payment `payment`.
///
/// # Errors
/// As [`event_stream`].
pub fn payment_stream(payment: PaymentId) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("payment-{}", payment.as_uuid()))
}

/// The stream of the tickets of the purchase `reservation`.
///
/// # Errors
/// As [`event_stream`].
pub fn tickets_stream(reservation: ReservationId) -> Result<StreamId, EventStoreError> {
    StreamId::new(format!("tickets-{}", reservation.as_uuid()))
}

/// The stream of what `customer` holds or is buying of `event`'s tickets.
///
/// # Errors
/// As [`event_stream`].
pub fn allowance_stream(event: EventId, customer: CustomerId) -> Result<StreamId, EventStoreError> {
    let mut name = [0_u8; 32];
    name[..16].copy_from_slice(event.as_uuid().as_bytes());
    name[16..].copy_from_slice(customer.as_uuid().as_bytes());
    StreamId::new(format!("allowance-{}", Uuid::new_v5(&ALLOWANCE_NAMESPACE, &name)))
}

/// The category of a stream id: the part before the first `-`.
#[must_use]
pub fn category(stream: &StreamId) -> &str {
    stream.as_str().split_once('-').map_or(stream.as_str(), |(category, _)| category)
}

impl TicketingAction {
    /// The stream this action addresses, or `None` for an action without an instance id.
    ///
    /// # Errors
    /// As [`event_stream`].
    pub fn stream(&self) -> Result<Option<StreamId>, EventStoreError> {
        match self {
            Self::Event(a) => a.event_id().map(event_stream).transpose(),
            Self::Inventory(InventoryAction::WriterClaimed { event_id, section, .. }) => {
                writer_claims_stream(*event_id, section).map(Some)
            }
            Self::Inventory(a) => a.key().map(|(event, section)| inventory_stream(event, section)).transpose(),
            Self::Reservation(a) => a.reservation_id().map(reservation_stream).transpose(),
            Self::Payment(a) => a.payment_id().map(payment_stream).transpose(),
            Self::Tickets(a) => a.reservation_id().map(tickets_stream).transpose(),
            Self::Allowance(a) => a.key().map(|(event, customer)| allowance_stream(event, customer)).transpose(),
        }
    }

    /// The payload this action is stored with: its aggregate's action as JSON (the inverse of
    /// [`TicketingAction::decode`]).
    ///
    /// # Errors
    /// When serde cannot encode it (not expected for these types).
    pub fn payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Self::Event(a) => serde_json::to_value(a),
            Self::Inventory(a) => serde_json::to_value(a),
            Self::Reservation(a) => serde_json::to_value(a),
            Self::Payment(a) => serde_json::to_value(a),
            Self::Tickets(a) => serde_json::to_value(a),
            Self::Allowance(a) => serde_json::to_value(a),
        }
    }

    /// Reads a stored event back, choosing the aggregate by the stream's category.
    ///
    /// # Errors
    /// [`StreamDecodeError`] when the stream is not a ticketing stream, the event's schema version
    /// is newer than [`EVENT_SCHEMA_VERSION`] (after the store's upcasters), or the payload does
    /// not parse.
    pub fn decode(envelope: &Envelope) -> Result<Self, StreamDecodeError> {
        if envelope.schema_version > EVENT_SCHEMA_VERSION {
            return Err(StreamDecodeError::NewerSchema {
                stream: envelope.stream_id.clone(),
                event_id: envelope.event_id,
                global_position: envelope.global_position,
                event_type: envelope.event_type.to_string(),
                version: envelope.schema_version,
                known: EVENT_SCHEMA_VERSION,
            });
        }
        let payload: &serde_json::Value = &envelope.payload;
        let parsed = match category(&envelope.stream_id) {
            "event" => EventAction::deserialize(payload).map(Self::Event),
            "inventory" => InventoryAction::deserialize(payload).map(Self::Inventory),
            "reservation" => ReservationAction::deserialize(payload).map(Self::Reservation),
            "payment" => PaymentAction::deserialize(payload).map(Self::Payment),
            "tickets" => TicketsAction::deserialize(payload).map(Self::Tickets),
            "allowance" => AllowanceAction::deserialize(payload).map(Self::Allowance),
            _ => {
                return Err(StreamDecodeError::UnknownCategory {
                    stream: envelope.stream_id.clone(),
                    global_position: envelope.global_position,
                });
            }
        };
        parsed.map_err(|source| StreamDecodeError::Payload {
            stream: envelope.stream_id.clone(),
            event_id: envelope.event_id,
            global_position: envelope.global_position,
            event_type: envelope.event_type.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event_store::{EventStore, ExpectedVersion, MemoryEventStore, Metadata, NewEvent};

    #[test]
    fn section_names_with_spaces_give_valid_distinct_streams() {
        let event = EventId::new_v4();
        let a = inventory_stream(event, &SectionName::new("Floor A").unwrap()).unwrap();
        let b = inventory_stream(event, &SectionName::new("Floor_A").unwrap()).unwrap();
        assert_ne!(a, b);
        assert_eq!(category(&a), "inventory");
    }

    #[tokio::test]
    async fn stored_event_decodes_to_the_same_action() {
        let reservation_id = ReservationId::new_v4();
        let action = ReservationAction::ReservationCancelled {
            lines: Vec::new(),
            reservation_id,
            event_id: EventId::new_v4(),
            section: SectionName::new("VIP").unwrap(),
            seats: vec![],
            cancelled_at: chrono::Utc::now(),
            claim: None,
        };
        let wrapped = TicketingAction::Reservation(action.clone());
        let stream = wrapped.stream().unwrap().unwrap();
        let store = MemoryEventStore::new();
        let event = NewEvent::new("ReservationCancelled", 1, serde_json::to_value(&action).unwrap());
        store.append(&stream, ExpectedVersion::NoStream, vec![event], &Metadata::default(), None).await.unwrap();
        let envelope = store.load_stream(&stream, 1).await.unwrap().remove(0);
        assert_eq!(TicketingAction::decode(&envelope).unwrap(), wrapped);

        let newer = NewEvent::new("ReservationCancelled", 2, serde_json::to_value(&action).unwrap());
        store.append(&stream, ExpectedVersion::Exact(1), vec![newer], &Metadata::default(), None).await.unwrap();
        let envelope = store.load_stream(&stream, 2).await.unwrap().remove(0);
        assert!(
            matches!(
                TicketingAction::decode(&envelope),
                Err(StreamDecodeError::NewerSchema { version: 2, known: 1, .. })
            ),
            "a newer shape is refused, not read as the current one"
        );
    }
}
