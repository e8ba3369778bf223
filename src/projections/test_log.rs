//! Envelopes for the read models' unit tests: actions numbered as a store would number them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::aggregates::TicketingAction;
use crate::domain::{Currency, Money};
use crate::event_store::{Envelope, StreamId};
use crate::framework::Message;

pub(crate) fn at(day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, day, hour, minute, second).unwrap()
}

pub(crate) fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

/// `actions` as envelopes at global positions 1, 2, ... on their aggregates' streams.
pub(crate) fn log(actions: &[TicketingAction]) -> Vec<Envelope> {
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let stream_id = action.stream().unwrap().unwrap();
            let version = versions.entry(stream_id.clone()).or_default();
            *version += 1;
            let payload = action.payload().unwrap();
            Envelope {
                event_id: uuid::Uuid::new_v4(),
                stream_id,
                stream_version: *version,
                global_position: i as u64 + 1,
                event_type: action.name().into(),
                schema_version: 1,
                payload: payload.into(),
                metadata: std::sync::Arc::default(),
                recorded_at: at(1, 0, 0, 0),
            }
        })
        .collect()
}

pub(crate) mod ev {
    use chrono::{DateTime, Utc};

    use super::{at, eur};
    use crate::aggregates::{
        Direction, LatePaymentPolicy, PaymentAction, ReservationAction, RevocationReason, ScanAnswer, TicketingAction,
        TicketsAction,
    };
    use crate::domain::{
        CustomerId, EventId, GateName, Money, PaymentId, RefundId, ReservationId, RevokedCode, ScanId, SeatId,
        SectionName, TicketId,
    };

    pub(crate) fn event() -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(1))
    }
    pub(crate) fn customer(n: u128) -> CustomerId {
        CustomerId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }
    pub(crate) fn rid(n: u128) -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(200 + n))
    }
    pub(crate) fn seat(i: u32) -> SeatId {
        SeatId::derive(event(), "Stalls", i)
    }
    pub(crate) fn ticket(r: ReservationId, i: u32) -> TicketId {
        TicketId::for_seat(r, seat(i))
    }
    fn stalls() -> SectionName {
        SectionName::new("Stalls").unwrap()
    }

    /// `customer` starts reservation `r` of `seats` seats at 2,500 EUR each.
    pub(crate) fn initiated(r: ReservationId, c: CustomerId, seats: u32) -> TicketingAction {
        ReservationAction::ReservationInitiated {
            lines: Vec::new(),
            reservation_id: r,
            event_id: event(),
            section: stalls(),
            quantity: seats,
            customer_id: c,
            unit_price: eur(2_500),
            total: eur(2_500 * i64::from(seats)),
            expires_at: at(1, 0, 5, 0),
            initiated_at: at(1, 0, 0, 0),
            late_payment: LatePaymentPolicy::default(),
            ticket_limit: None,
        }
        .into()
    }
    pub(crate) fn completed(r: ReservationId, c: CustomerId, seats: &[u32], when: DateTime<Utc>) -> TicketingAction {
        ReservationAction::ReservationCompleted {
            lines: Vec::new(),
            reservation_id: r,
            event_id: event(),
            section: stalls(),
            seats: seats.iter().map(|i| seat(*i)).collect(),
            completed_at: when,
            customer_id: Some(c),
            unit_price: Some(eur(2_500)),
        }
        .into()
    }
    pub(crate) fn paid(r: ReservationId, amount: Money, when: DateTime<Utc>) -> TicketingAction {
        PaymentAction::PaymentSucceeded {
            payment_id: PaymentId::for_reservation(r),
            reservation_id: r,
            amount,
            succeeded_at: when,
        }
        .into()
    }
    /// The Reservation stream's copy of a payment, which the money-following models skip.
    pub(crate) fn paid_reservation_side(r: ReservationId, amount: Money) -> TicketingAction {
        ReservationAction::PaymentSucceeded {
            reservation_id: r,
            payment_id: PaymentId::for_reservation(r),
            amount,
            refund_owed: false,
        }
        .into()
    }
    pub(crate) fn money_back(r: ReservationId, amount: Money, when: DateTime<Utc>) -> TicketingAction {
        PaymentAction::PaymentRefunded {
            payment_id: PaymentId::for_reservation(r),
            reservation_id: r,
            refund_id: RefundId::new_v4(),
            amount,
            reason: "cannot come".into(),
            refunded_at: when,
        }
        .into()
    }
    pub(crate) fn seats_refunded(
        r: ReservationId,
        c: CustomerId,
        seats: &[u32],
        when: DateTime<Utc>,
    ) -> TicketingAction {
        ReservationAction::SeatsRefunded {
            lines: Vec::new(),
            reservation_id: r,
            event_id: event(),
            section: stalls(),
            customer_id: c,
            seats: seats.iter().map(|i| seat(*i)).collect(),
            payment_id: PaymentId::for_reservation(r),
            refund_id: RefundId::new_v4(),
            amount: eur(2_500 * i64::try_from(seats.len()).unwrap()),
            reason: "cannot come".into(),
            all: false,
            refunded_at: when,
            claim: None,
        }
        .into()
    }
    pub(crate) fn issued(r: ReservationId, c: CustomerId, seats: &[u32]) -> TicketingAction {
        TicketsAction::TicketsIssued {
            reservation_id: r,
            event_id: event(),
            section: stalls(),
            holder: c,
            unit_price: eur(2_500),
            tickets: seats.iter().map(|i| (ticket(r, *i), seat(*i))).collect(),
            issued_at: at(1, 0, 0, 0),
        }
        .into()
    }
    pub(crate) fn transferred(
        r: ReservationId,
        i: u32,
        from: CustomerId,
        to: CustomerId,
        serial: u32,
    ) -> TicketingAction {
        TicketsAction::TicketTransferred {
            reservation_id: r,
            ticket_id: ticket(r, i),
            from,
            to,
            serial,
            transferred_at: at(1, 1, 0, 0),
        }
        .into()
    }
    pub(crate) fn revoked(r: ReservationId, i: u32, serial: u32) -> TicketingAction {
        TicketsAction::TicketsRevoked {
            reservation_id: r,
            codes: vec![RevokedCode { ticket_id: ticket(r, i), serial }],
            reason: RevocationReason::Refunded,
            revoked_at: at(1, 2, 0, 0),
        }
        .into()
    }
    pub(crate) fn scanned(
        r: ReservationId,
        i: u32,
        gate: &str,
        direction: Direction,
        offline: bool,
        answer: ScanAnswer,
    ) -> TicketingAction {
        TicketsAction::TicketScanned {
            reservation_id: r,
            ticket_id: ticket(r, i),
            scan_id: ScanId::new_v4(),
            gate: GateName::new(gate).unwrap(),
            direction,
            at: at(1, 19, 0, 0),
            offline,
            answer,
        }
        .into()
    }
}
