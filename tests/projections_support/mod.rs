//! Shared by the projection tests and benchmark: hand-built events, a deterministic workload on the
//! crate's `SagaDriver`, and helpers that turn actions into stored envelopes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::default_trait_access,
    clippy::cast_possible_truncation,
    clippy::wildcard_imports,
    dead_code
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{
    AllocatedSeat, EventAction, GatewayOutcome, InventoryAction, PaymentAction, ReleaseReason, ReservationAction,
    ReservationStatus, SagaDriver, Section, TicketingAction, TicketingEnv, TicketingState,
};
use boxoffice::domain::{
    Capacity, Currency, CustomerId, EventId, Money, PaymentId, PricingTier, RefundId, ReservationId, SeatId,
    SectionName, TierKind, Venue, VenueId,
};
use boxoffice::event_store::{Envelope, EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId};
use boxoffice::framework::{FixedClock, Message};
use chrono::{DateTime, TimeZone, Utc};

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}
pub fn event(n: u128) -> EventId {
    EventId::from_uuid(uuid::Uuid::from_u128(1_000 + n))
}
pub fn customer(n: u128) -> CustomerId {
    CustomerId::from_uuid(uuid::Uuid::from_u128(2_000 + n))
}
pub fn rid(n: u128) -> ReservationId {
    ReservationId::from_uuid(uuid::Uuid::from_u128(3_000 + n))
}
pub fn section(name: &str) -> SectionName {
    SectionName::new(name).unwrap()
}
pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}
pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}
pub fn seats(e: EventId, s: &str, indexes: impl IntoIterator<Item = u32>) -> Vec<AllocatedSeat> {
    indexes.into_iter().map(|index| AllocatedSeat { index, seat_id: SeatId::derive(e, s, index) }).collect()
}
pub fn seat_ids(e: EventId, s: &str, indexes: impl IntoIterator<Item = u32>) -> Vec<SeatId> {
    seats(e, s, indexes).into_iter().map(|s| s.seat_id).collect()
}

/// Hand-built ticketing events.
pub mod ev {
    use super::*;

    pub fn inventory(e: EventId, s: &str, capacity: u32) -> TicketingAction {
        TicketingAction::Inventory(InventoryAction::InventoryInitialized {
            event_id: e,
            section: section(s),
            capacity: Capacity::new(capacity).unwrap(),
        })
    }
    pub fn reserved(e: EventId, s: &str, r: ReservationId, idx: impl IntoIterator<Item = u32>) -> TicketingAction {
        TicketingAction::Inventory(InventoryAction::SeatsReserved {
            event_id: e,
            section: section(s),
            reservation_id: r,
            seats: seats(e, s, idx),
            expires_at: start() + chrono::Duration::minutes(5),
        })
    }
    pub fn confirmed(e: EventId, s: &str, r: ReservationId, idx: impl IntoIterator<Item = u32>) -> TicketingAction {
        TicketingAction::Inventory(InventoryAction::SeatsConfirmed {
            event_id: e,
            section: section(s),
            reservation_id: r,
            seats: seats(e, s, idx),
        })
    }
    pub fn released(e: EventId, s: &str, r: ReservationId, idx: impl IntoIterator<Item = u32>) -> TicketingAction {
        TicketingAction::Inventory(InventoryAction::SeatsReleased {
            event_id: e,
            section: section(s),
            reservation_id: r,
            seats: seats(e, s, idx),
            reason: ReleaseReason::Cancelled,
        })
    }
    pub fn initiated(
        r: ReservationId,
        e: EventId,
        s: &str,
        quantity: u32,
        c: CustomerId,
        unit: Money,
    ) -> TicketingAction {
        TicketingAction::Reservation(ReservationAction::ReservationInitiated {
            lines: Vec::new(),
            reservation_id: r,
            event_id: e,
            section: section(s),
            quantity,
            customer_id: c,
            unit_price: unit,
            total: unit.checked_mul(quantity).unwrap(),
            expires_at: start() + chrono::Duration::minutes(5),
            initiated_at: start(),
            late_payment: boxoffice::aggregates::LatePaymentPolicy::default(),
            ticket_limit: None,
        })
    }
    pub fn completed(r: ReservationId, e: EventId, s: &str) -> TicketingAction {
        TicketingAction::Reservation(ReservationAction::ReservationCompleted {
            lines: Vec::new(),
            reservation_id: r,
            event_id: e,
            section: section(s),
            seats: Vec::new(),
            completed_at: start(),
            customer_id: None,
            unit_price: None,
        })
    }
    pub fn cancelled(r: ReservationId, e: EventId, s: &str) -> TicketingAction {
        TicketingAction::Reservation(ReservationAction::ReservationCancelled {
            lines: Vec::new(),
            reservation_id: r,
            event_id: e,
            section: section(s),
            seats: Vec::new(),
            cancelled_at: start(),
            claim: None,
        })
    }
    pub fn expired(r: ReservationId, e: EventId, s: &str) -> TicketingAction {
        TicketingAction::Reservation(ReservationAction::ReservationExpired {
            lines: Vec::new(),
            reservation_id: r,
            event_id: e,
            section: section(s),
            seats: Vec::new(),
            expired_at: start(),
            claim: None,
        })
    }
    pub fn paid(r: ReservationId, amount: Money) -> TicketingAction {
        TicketingAction::Payment(PaymentAction::PaymentSucceeded {
            payment_id: PaymentId::for_reservation(r),
            reservation_id: r,
            amount,
            succeeded_at: start(),
        })
    }
    /// The Reservation stream's record of the same payment: must not count twice.
    pub fn paid_reservation_side(r: ReservationId, amount: Money, refund_owed: bool) -> TicketingAction {
        TicketingAction::Reservation(ReservationAction::PaymentSucceeded {
            reservation_id: r,
            payment_id: PaymentId::for_reservation(r),
            amount,
            refund_owed,
        })
    }
    pub fn refunded(r: ReservationId, amount: Money) -> TicketingAction {
        TicketingAction::Payment(PaymentAction::PaymentRefunded {
            payment_id: PaymentId::for_reservation(r),
            reservation_id: r,
            refund_id: RefundId::for_payment(PaymentId::for_reservation(r), "test"),
            amount,
            reason: "test".into(),
            refunded_at: start(),
        })
    }
}

/// Turns persisted actions into envelopes as a store would number them (positions 1, 2, ...).
pub fn envelopes(actions: &[TicketingAction]) -> Vec<Envelope> {
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let stream_id = action.stream().unwrap().unwrap();
            let version = versions.entry(stream_id.clone()).or_default();
            *version += 1;
            Envelope {
                event_id: uuid::Uuid::new_v4(),
                stream_id,
                stream_version: *version,
                global_position: i as u64 + 1,
                event_type: action.name().into(),
                schema_version: 1,
                payload: action.payload().unwrap().into(),
                metadata: Default::default(),
                recorded_at: start(),
            }
        })
        .collect()
}

/// Appends `actions` to `store`, each to its aggregate's stream, in order, `chunk` per transaction.
pub async fn append_all(store: &dyn EventStore, actions: &[TicketingAction], chunk: usize) {
    for part in actions.chunks(chunk.max(1)) {
        let appends = part
            .iter()
            .map(|action| {
                let stream = action.stream().unwrap().unwrap();
                let event = NewEvent::new(action.name(), 1, action.payload().unwrap());
                StreamAppend::new(stream, ExpectedVersion::Any, vec![event])
            })
            .collect();
        store.append_batch(appends).await.unwrap();
    }
}

/// The crate's [`SagaDriver`] with a workload vocabulary: saga follow-ups run at once, expiry is
/// sent explicitly after moving the clock, and payments stay pending until the driver answers them.
pub struct Driver {
    saga: SagaDriver,
    pub clock: FixedClock,
    pub reservations: Vec<ReservationId>,
    next_reservation: u128,
}

pub const SECTIONS: [&str; 2] = ["Stalls", "Box"];

impl Driver {
    /// Two events on sale (EUR and USD), each with a 6-seat and a 3-seat section.
    pub fn new() -> Self {
        Self::with_capacities(6, 3)
    }

    /// Two events on sale (EUR and USD), each with sections of `stalls` and `boxes` seats.
    pub fn with_capacities(stalls: u32, boxes: u32) -> Self {
        let clock = FixedClock::new(start());
        let saga = SagaDriver::new(TicketingEnv::new(Arc::new(clock.clone())));
        let mut d = Self { saga, clock, reservations: Vec::new(), next_reservation: 0 };
        for (n, currency) in [(0, Currency::EUR), (1, Currency::USD)] {
            let tier = |s: &str, price| {
                PricingTier::new(TierKind::Regular, section(s), Money::new(price, currency), None).unwrap()
            };
            d.send(TicketingAction::Event(EventAction::CreateEvent {
                event_id: event(n),
                name: format!("Show {n}"),
                venue: Venue::new(VenueId::from_uuid(uuid::Uuid::from_u128(9)), "Hall").unwrap(),
                date: start() + chrono::Duration::days(30),
                sections: vec![
                    Section { name: section(SECTIONS[0]), capacity: Capacity::new(stalls).unwrap() },
                    Section { name: section(SECTIONS[1]), capacity: Capacity::new(boxes).unwrap() },
                ],
                pricing_tiers: vec![tier(SECTIONS[0], 2_500), tier(SECTIONS[1], 9_999)],
                policy: boxoffice::aggregates::SalesPolicy::default(),
            }));
            d.send(TicketingAction::Event(EventAction::PublishEvent { event_id: event(n) }));
            d.send(TicketingAction::Event(EventAction::OpenSales { event_id: event(n) }));
        }
        d
    }

    pub fn send(&mut self, action: TicketingAction) {
        let _ = self.saga.send(action);
    }

    pub fn state(&self) -> &TicketingState {
        self.saga.state()
    }

    pub fn log(&self) -> &[TicketingAction] {
        self.saga.log()
    }

    pub fn reserve(&mut self, event_n: u128, section_n: usize, quantity: u32, customer_n: u128) {
        let e = event(event_n);
        let s = section(SECTIONS[section_n % 2]);
        let unit_price = self.state().events[&e].price_at(&s, self.clock_now()).unwrap();
        let reservation_id = rid(self.next_reservation);
        self.next_reservation += 1;
        self.reservations.push(reservation_id);
        self.send(TicketingAction::Reservation(ReservationAction::InitiateReservation {
            reservation_id,
            event_id: e,
            lines: vec![boxoffice::aggregates::OrderLine { section: s, quantity, unit_price, tier: None }],
            customer_id: customer(customer_n),
            policy: boxoffice::aggregates::SalesPolicy::default(),
        }));
        // The customer pays as soon as the seats are held (a refused request changes nothing).
        self.send(TicketingAction::Reservation(ReservationAction::RequestPayment { reservation_id }));
    }

    fn clock_now(&self) -> DateTime<Utc> {
        boxoffice::framework::Clock::now(&self.clock)
    }

    fn pick(&self, k: usize) -> Option<ReservationId> {
        (!self.reservations.is_empty()).then(|| self.reservations[k % self.reservations.len()])
    }

    pub fn answer_payment(&mut self, k: usize, approve: bool) {
        if let Some(r) = self.pick(k) {
            let outcome =
                if approve { GatewayOutcome::Approved } else { GatewayOutcome::Declined { reason: "declined".into() } };
            let payment_id = PaymentId::for_reservation(r);
            if !self.saga.answer(payment_id, outcome.clone()) {
                // A late answer for a payment nobody is waiting on any more.
                self.send(TicketingAction::Payment(PaymentAction::RecordGatewayOutcome { payment_id, outcome }));
            }
        }
    }

    pub fn cancel(&mut self, k: usize) {
        if let Some(reservation_id) = self.pick(k) {
            self.send(TicketingAction::Reservation(ReservationAction::CancelReservation { reservation_id }));
        }
    }

    pub fn expire(&mut self, k: usize) {
        if let Some(reservation_id) = self.pick(k) {
            self.clock.advance(Duration::from_secs(301));
            self.send(TicketingAction::Reservation(ReservationAction::ExpireReservation { reservation_id }));
        }
    }

    /// Refunds `percent`% (at least one minor unit) of the k-th reservation's payment.
    pub fn refund(&mut self, k: usize, percent: i64) {
        let Some(r) = self.pick(k) else { return };
        let payment_id = PaymentId::for_reservation(r);
        let Some(amount) = self.state().payments.get(&payment_id).and_then(|p| p.payment.as_ref()).map(|p| p.amount)
        else {
            return;
        };
        let part = Money::new((amount.minor_units() * percent / 100).max(1), amount.currency());
        let refund_id = RefundId::for_payment(payment_id, &format!("{k}-{percent}-{}", self.log().len()));
        self.send(TicketingAction::Payment(PaymentAction::RefundPayment {
            at_most: false,
            payment_id,
            refund_id,
            amount: part,
            reason: "x".into(),
        }));
    }

    pub fn status(&self, r: ReservationId) -> Option<ReservationStatus> {
        self.state().reservation(r).map(|r| r.status)
    }
}

/// A deterministic workload of `purchases` reservations: most complete, some fail, expire, are
/// cancelled or refunded. Used by the benchmark to build a realistic log (about ten events per
/// purchase).
pub fn workload(purchases: usize) -> Vec<TicketingAction> {
    let mut d = Driver::with_capacities(Capacity::MAX, Capacity::MAX);
    for i in 0..purchases {
        let k = d.reservations.len();
        d.reserve((i % 2) as u128, (i / 2) % 2, 1 + (i % 3) as u32, (i % 997) as u128);
        match i % 10 {
            0 => d.answer_payment(k, false),
            1 => d.cancel(k),
            2 => {
                d.expire(k);
                d.answer_payment(k, true);
            }
            3 => {
                d.answer_payment(k, true);
                d.refund(k, 50);
            }
            _ => d.answer_payment(k, true),
        }
    }
    d.log().to_vec()
}
