//! Typed identifiers: one UUID newtype per kind of thing, so an inventory id can never be passed
//! where a reservation id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DomainError;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id. Callers generate ids and pass them in commands; reducers
            /// never call this, so they stay deterministic.
            #[must_use]
            pub fn new_v4() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| DomainError::InvalidId { kind: $kind.into(), value: s.to_owned() })
            }
        }
    };
}

uuid_id!(
    /// Identifies a ticketed event (a concert, a match), not an event-sourcing event.
    EventId,
    "event"
);
uuid_id!(
    /// Identifies one seat in one section of one event.
    SeatId,
    "seat"
);
uuid_id!(
    /// Identifies a reservation (one purchase attempt, the saga instance).
    ReservationId,
    "reservation"
);
uuid_id!(
    /// Identifies a payment.
    PaymentId,
    "payment"
);
uuid_id!(
    /// Identifies one refund of a payment: the payment provider's idempotency key for it, so a
    /// refund sent twice (a retry, a second process) gives the money back once.
    RefundId,
    "refund"
);
uuid_id!(
    /// Identifies a customer.
    CustomerId,
    "customer"
);
uuid_id!(
    /// Identifies a venue.
    VenueId,
    "venue"
);
uuid_id!(
    /// Identifies one ticket: one seat of one completed reservation.
    TicketId,
    "ticket"
);
uuid_id!(
    /// Identifies one scan of a ticket code at a gate, chosen by the scanner: a scan retried with
    /// the same id (a lost answer, a scanner that resends) gets the first scan's answer.
    ScanId,
    "scan"
);

/// Namespace for seat ids derived with UUID v5, so replaying an inventory always yields the same
/// seat ids without storing a seat map.
const SEAT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b0e_8d2a_4c55_9a57_3e0b_1d7c_5a01);
/// Namespace for payment ids derived from reservation ids.
const PAYMENT_NAMESPACE: Uuid = Uuid::from_u128(0x2a9d_41c3_77e0_4b8e_b3f2_90c6_0e5d_7b12);

impl SeatId {
    /// The id of seat number `index` (0-based) in `section` of `event`: a UUID v5 of those three
    /// values, so it is the same on every machine and every replay.
    #[must_use]
    pub fn derive(event: EventId, section: &str, index: u32) -> Self {
        let mut name = Vec::with_capacity(16 + section.len() + 5);
        name.extend_from_slice(event.0.as_bytes());
        name.extend_from_slice(section.as_bytes());
        name.push(0);
        name.extend_from_slice(&index.to_be_bytes());
        Self(Uuid::new_v5(&SEAT_NAMESPACE, &name))
    }
}

/// Namespace for reservation ids derived from a customer's idempotency key.
const IDEMPOTENT_RESERVATION_NAMESPACE: Uuid = Uuid::from_u128(0x51d0_7e2a_c9b4_4f3e_8a6d_24f1_b0c3_9e75);

impl ReservationId {
    /// The reservation a customer's request with idempotency `key` addresses: a UUID v5 of the
    /// customer and the key, so retrying the request (from any process, after any crash) lands on
    /// the same reservation instead of holding seats twice.
    #[must_use]
    pub fn for_idempotency_key(customer: CustomerId, key: &str) -> Self {
        let mut name = Vec::with_capacity(16 + key.len());
        name.extend_from_slice(customer.0.as_bytes());
        name.extend_from_slice(key.as_bytes());
        Self(Uuid::new_v5(&IDEMPOTENT_RESERVATION_NAMESPACE, &name))
    }
}

impl PaymentId {
    /// The payment id the reservation saga uses for `reservation`: derived (UUID v5) so that a
    /// redelivered payment request addresses the same payment and is deduplicated.
    #[must_use]
    pub fn for_reservation(reservation: ReservationId) -> Self {
        Self(Uuid::new_v5(&PAYMENT_NAMESPACE, reservation.0.as_bytes()))
    }
}

/// Namespace for refund ids derived from a payment and a purpose.
const REFUND_NAMESPACE: Uuid = Uuid::from_u128(0x8c3e_0f51_2d7a_4b69_a1e4_5f90_c2b8_3d46);

impl RefundId {
    /// The refund of `payment` named by `key` (a caller's idempotency key, or the reason the
    /// system refunds on its own, such as an event's cancellation): a UUID v5 of both, so the same
    /// refund asked for again, from any process, is the same refund.
    #[must_use]
    pub fn for_payment(payment: PaymentId, key: &str) -> Self {
        let mut name = Vec::with_capacity(16 + key.len());
        name.extend_from_slice(payment.0.as_bytes());
        name.extend_from_slice(key.as_bytes());
        Self(Uuid::new_v5(&REFUND_NAMESPACE, &name))
    }
}

/// Namespace for ticket ids derived from a reservation and a seat.
const TICKET_NAMESPACE: Uuid = Uuid::from_u128(0x3d7a_9e21_5b0c_4f86_9c1e_a4b7_60d2_8f35);

impl TicketId {
    /// The ticket for `seat` of `reservation`: a UUID v5 of both, so issuing the tickets of a
    /// purchase again (a redelivered step, another process) names the same tickets.
    #[must_use]
    pub fn for_seat(reservation: ReservationId, seat: SeatId) -> Self {
        let mut name = [0_u8; 32];
        name[..16].copy_from_slice(reservation.0.as_bytes());
        name[16..].copy_from_slice(seat.0.as_bytes());
        Self(Uuid::new_v5(&TICKET_NAMESPACE, &name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn id_round_trips_through_display_from_str_and_serde() {
        let id = ReservationId::new_v4();
        assert_eq!(id.to_string().parse::<ReservationId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ReservationId>(&json).unwrap(), id);
    }

    #[test]
    fn parsing_garbage_is_a_typed_error() {
        assert_eq!(
            "nope".parse::<EventId>(),
            Err(DomainError::InvalidId { kind: "event".into(), value: "nope".into() })
        );
    }

    #[test]
    fn derived_seat_ids_are_stable_and_distinct() {
        let event = EventId::from_uuid(Uuid::from_u128(1));
        assert_eq!(SeatId::derive(event, "A", 0), SeatId::derive(event, "A", 0));
        assert_ne!(SeatId::derive(event, "A", 0), SeatId::derive(event, "A", 1));
        assert_ne!(SeatId::derive(event, "A", 0), SeatId::derive(event, "B", 0));
        let reservation = ReservationId::from_uuid(Uuid::from_u128(2));
        assert_eq!(PaymentId::for_reservation(reservation), PaymentId::for_reservation(reservation));
    }
}
