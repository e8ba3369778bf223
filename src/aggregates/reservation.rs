//! The Reservation aggregate: one purchase attempt, and the state of the saga that drives it
//! across Inventory and Payment.
//!
//! Life of a reservation: `InitiateReservation` records the deadline and the total price (the
//! system expires the hold from that deadline); the saga (see [`reactions`](super::reactions)) asks
//! Inventory for seats and reports them back with [`ReservationAction::AllocateSeats`], which
//! requests the payment; the payment's outcome arrives as `CompletePayment` or `FailPayment`.
//! Exactly one terminal state is reached: Completed, Expired, Cancelled or Compensated.
//!
//! Messages that arrive late or twice are expected (timers race payments; buses redeliver):
//! - a payment success after the reservation ended does not complete it; it is recorded with
//!   `refund_owed = true` and the saga refunds it;
//! - seats that arrive after the reservation ended are handed back (`SeatsReturned`);
//! - an expiry after completion, and any duplicate, changes nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use super::order_line::{LineSeats, OrderLine, split_by_line};
use super::{LatePaymentPolicy, SalesPolicy};
use crate::domain::{CustomerId, DomainError, EventId, Money, PaymentId, RefundId, ReservationId, SeatId, SectionName};
use crate::framework::{Clock, Effects, Message, MessageKind, Reducer, event_sourced};

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    /// Waiting for seats.
    Initiated,
    /// Seats held (momentary: payment is requested in the same step).
    SeatsAllocated,
    /// Waiting for the payment outcome.
    PaymentPending,
    /// Paid, seats sold. Terminal.
    Completed,
    /// The hold ran out. Terminal.
    Expired,
    /// The customer cancelled. Terminal.
    Cancelled,
    /// Undone after a failure (payment declined, no seats). Terminal.
    Compensated,
}

impl ReservationStatus {
    /// Whether no further transition is possible.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Expired | Self::Cancelled | Self::Compensated)
    }
}

/// Why a reservation was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompensationReason {
    /// The section did not have enough seats.
    InsufficientInventory {
        /// Seats asked for.
        requested: u32,
        /// Seats that were available.
        available: u32,
        /// The section that lacked them (absent in logs written before orders had several
        /// sections).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        section: Option<SectionName>,
    },
    /// The customer already holds or is buying as many tickets of the event as it allows.
    CustomerLimitReached {
        /// The event's limit.
        limit: u32,
        /// Tickets the customer held or was buying.
        held: u32,
    },
    /// The payment was declined.
    PaymentFailed {
        /// The provider's reason.
        reason: String,
    },
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section (of the first line, for an order of several).
    pub section: SectionName,
    /// Seats wanted (in all lines).
    pub quantity: u32,
    /// Who buys.
    pub customer_id: CustomerId,
    /// Price of one seat (of the first line, for an order of several).
    pub unit_price: Money,
    /// What the order costs: the sum of its lines' `unit_price × quantity`.
    pub total: Money,
    /// The hold deadline, one for the whole order.
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    pub expires_at: DateTime<Utc>,
    /// Seats held for it, in every line (empty until all lines are allocated).
    pub seats: Vec<SeatId>,
    /// The order's lines, when the flat fields do not say everything (several sections, or a
    /// tier chosen); empty for a one-section reservation, whose line is `section`, `quantity` and
    /// `unit_price`.
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    /// For an order of several sections, the seats each line holds, as the inventories answer.
    #[serde(default)]
    pub held: Vec<LineSeats>,
    /// The payment requested for it.
    pub payment_id: Option<PaymentId>,
    /// Status.
    pub status: ReservationStatus,
    /// Money taken after the reservation ended, to be refunded.
    pub refund_owed: Option<Money>,
    /// What happens to a payment that succeeds after the hold ended.
    #[serde(default)]
    pub late_payment: LatePaymentPolicy,
    /// Money taken after the reservation ended and accepted or held for review under
    /// [`Reservation::late_payment`].
    #[serde(default)]
    pub late_payment_kept: Option<Money>,
    /// Why it ended Compensated, once it has.
    pub compensation: Option<CompensationReason>,
    /// Seats of the completed purchase refunded since (their tickets revoked, the seats back on
    /// sale).
    #[serde(default)]
    pub refunded_seats: Vec<SeatId>,
    /// The refunds of seats made so far, by refund id.
    #[serde(default)]
    pub seat_refunds: Vec<RefundId>,
    /// The event's per-customer ticket limit when the reservation started: its seats are
    /// claimed on the customer's allowance first.
    #[serde(default)]
    pub ticket_limit: Option<u32>,
}

impl Reservation {
    /// The customer whose allowance may hold a claim for this reservation (under a ticket
    /// limit). Also when the allowance refused it: another process's saga may still claim for
    /// it, and the release that ends the reservation's claim makes sure no such claim is kept.
    fn claim(&self) -> Option<CustomerId> {
        self.ticket_limit.map(|_| self.customer_id)
    }

    /// Seats bought and not refunded.
    pub fn kept_seats(&self) -> impl Iterator<Item = SeatId> + '_ {
        self.seats.iter().copied().filter(|s| !self.refunded_seats.contains(s))
    }

    /// The order's lines: one for a one-section reservation.
    #[must_use]
    pub fn order_lines(&self) -> Vec<OrderLine> {
        if self.lines.is_empty() {
            vec![OrderLine {
                section: self.section.clone(),
                quantity: self.quantity,
                unit_price: self.unit_price,
                tier: None,
            }]
        } else {
            self.lines.clone()
        }
    }

    /// Whether the order spans several sections (each held in its own inventory).
    #[must_use]
    pub fn is_multi_section(&self) -> bool {
        self.lines.len() > 1
    }

    /// Seats held now, in every line.
    #[must_use]
    pub fn held_seats(&self) -> Vec<SeatId> {
        if self.is_multi_section() {
            self.held.iter().flat_map(|line| line.seats.iter().copied()).collect()
        } else {
            self.seats.clone()
        }
    }

    /// The seats held per line, in the order's line order: every line's seats once allocated
    /// (one line for a one-section reservation; empty before any seat is held).
    #[must_use]
    pub fn held_lines(&self) -> Vec<LineSeats> {
        if self.is_multi_section() {
            // In the order's line order, whichever inventory answered first.
            self.lines
                .iter()
                .filter_map(|line| self.held.iter().find(|held| held.section == line.section).cloned())
                .collect()
        } else if self.seats.is_empty() {
            Vec::new()
        } else {
            vec![LineSeats { section: self.section.clone(), unit_price: self.unit_price, seats: self.seats.clone() }]
        }
    }

    /// The seats held per line, as an ending event of an order of several sections records
    /// them (empty for one section: the event's flat `section` and `seats` say it).
    fn ending_lines(&self) -> Vec<LineSeats> {
        if self.is_multi_section() { self.held.clone() } else { Vec::new() }
    }

    /// What the seats bought and not refunded cost.
    ///
    /// # Errors
    /// [`DomainError::MoneyOverflow`] past the bounds of [`Money`] (not for an order that
    /// `InitiateReservation` accepted).
    pub fn kept_price(&self) -> Result<Money, DomainError> {
        self.price_of_seats(self.kept_seats())
    }

    /// What `seats` of the order cost, each at its line's price.
    ///
    /// # Errors
    /// As [`Reservation::kept_price`].
    pub fn price_of_seats(&self, seats: impl IntoIterator<Item = SeatId>) -> Result<Money, DomainError> {
        seats.into_iter().try_fold(Money::zero(self.total.currency()), |sum, seat| sum.checked_add(self.price_of(seat)))
    }

    /// The price `seat` was sold for (its line's).
    #[must_use]
    pub fn price_of(&self, seat: SeatId) -> Money {
        self.held.iter().find(|line| line.seats.contains(&seat)).map_or(self.unit_price, |line| line.unit_price)
    }
}

/// State of one Reservation stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReservationState {
    /// Set by `ReservationInitiated`.
    pub reservation: Option<Reservation>,
}

/// Why a Reservation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReservationError {
    /// Zero seats asked for (in the order, or in one of its lines).
    #[error("reservation {reservation_id}: quantity must be positive")]
    ZeroQuantity {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// An order of no lines.
    #[error("reservation {reservation_id}: an order needs at least one line")]
    EmptyOrder {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Two lines of one order name the same section.
    #[error("reservation {reservation_id}: section {section} appears in two lines")]
    DuplicateSection {
        /// The reservation.
        reservation_id: ReservationId,
        /// The section.
        section: SectionName,
    },
    /// The unit price is zero or negative.
    #[error("reservation {reservation_id}: unit price {unit_price} must be positive")]
    NonPositivePrice {
        /// The reservation.
        reservation_id: ReservationId,
        /// The price.
        unit_price: Money,
    },
    /// The total price overflowed.
    #[error("reservation {reservation_id}: {source}")]
    Money {
        /// The reservation.
        reservation_id: ReservationId,
        /// The domain error.
        source: DomainError,
    },
    /// The id is taken by a different reservation.
    #[error("reservation {reservation_id} already exists with other details")]
    AlreadyExists {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// No such reservation.
    #[error("reservation {reservation_id} not found")]
    NotFound {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// The event is not selling tickets for this section (checked by the composite reducer,
    /// which sees the Event state).
    #[error("event {event_id} section {section} is not on sale")]
    NotOnSale {
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
    },
    /// Expiry requested before the deadline.
    #[error("reservation {reservation_id} holds until {expires_at}, now is {now}")]
    NotYetExpired {
        /// The reservation.
        reservation_id: ReservationId,
        /// The deadline.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
        /// The clock's time.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        now: DateTime<Utc>,
    },
    /// A seat refund names a seat this purchase did not buy, or one already refunded.
    #[error("reservation {reservation_id}: seat {seat_id} is not a kept seat of the purchase")]
    SeatNotRefundable {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seat.
        seat_id: SeatId,
    },
    /// Every seat of the purchase was refunded already.
    #[error("reservation {reservation_id}: no seat left to refund")]
    NothingToRefund {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// A seat refund gives back more than the seats cost, or a negative amount.
    #[error("reservation {reservation_id}: refund of {amount} for seats that cost {price}")]
    RefundNotInPrice {
        /// The reservation.
        reservation_id: ReservationId,
        /// The amount asked for.
        amount: Money,
        /// What the seats cost.
        price: Money,
    },
    /// The command does not fit the reservation's status.
    #[error("reservation {reservation_id} is {status:?}: cannot {action}")]
    InvalidState {
        /// The reservation.
        reservation_id: ReservationId,
        /// Current status.
        status: ReservationStatus,
        /// What was attempted.
        action: std::borrow::Cow<'static, str>,
    },
}

/// Commands, events and the rejection of the Reservation aggregate.
///
/// `InitiateReservation`, `CancelReservation` and `ExpireReservation` come from callers or timers;
/// `AllocateSeats`, `RecordSeatShortage`, `CompletePayment` and `FailPayment` are the saga
/// reporting what Inventory and Payment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationAction {
    /// Start a purchase: an order of one line per section, all held or none. A redelivery with
    /// identical details is a no-op.
    InitiateReservation {
        /// New reservation id (generated by the caller).
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The lines, each priced from the event's pricing tiers; distinct sections.
        lines: Vec<OrderLine>,
        /// Who buys.
        customer_id: CustomerId,
        /// The event's hold and late-payment rules.
        #[serde(default)]
        policy: SalesPolicy,
    },
    /// Saga: Inventory held these seats.
    AllocateSeats {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats.
        seats: Vec<SeatId>,
        /// The section whose inventory held them (needed for an order of several sections).
        #[serde(default)]
        section: Option<SectionName>,
    },
    /// Saga: Inventory refused for lack of seats.
    RecordSeatShortage {
        /// The reservation.
        reservation_id: ReservationId,
        /// Seats asked for.
        requested: u32,
        /// Seats that were available.
        available: u32,
        /// The section that lacked them.
        #[serde(default)]
        section: Option<SectionName>,
    },
    /// Saga: the customer's allowance refused the seats (the event's per-customer limit).
    RecordLimitReached {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event's limit.
        limit: u32,
        /// Tickets the customer held or was buying.
        held: u32,
    },
    /// Saga: the payment succeeded.
    CompletePayment {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Amount taken.
        amount: Money,
    },
    /// Saga: the payment failed.
    FailPayment {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Why.
        reason: String,
    },
    /// Saga: Inventory sold seats to the late payment accepted for this reservation.
    CompleteLateSale {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats sold.
        seats: Vec<SeatId>,
    },
    /// Saga: the late payment could not be honoured (too few seats free); it is refunded.
    RefuseLateSale {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// The customer pays for the seats held: requests the payment of the total.
    RequestPayment {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// Refund seats of the completed purchase: their tickets are revoked, the seats go back on
    /// sale and `amount` goes back to the customer. A redelivery (same refund id) is a no-op.
    RefundSeats {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats; empty for every seat not refunded yet.
        seats: Vec<SeatId>,
        /// The refund, the provider's idempotency key.
        refund_id: RefundId,
        /// How much goes back: at most what the seats cost (less when part of the payment was
        /// refunded already).
        amount: Money,
        /// Why (kept in the log).
        reason: String,
    },
    /// The customer gives up.
    CancelReservation {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// The hold deadline passed (sent by the timer or a sweeper).
    ExpireReservation {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// A purchase started.
    #[serde(rename = "ReservationInitiated")]
    ReservationInitiated {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section (of the first line, for an order of several).
        section: SectionName,
        /// Seats wanted, in all lines.
        quantity: u32,
        /// Who buys.
        customer_id: CustomerId,
        /// Price of one seat (of the first line, for an order of several).
        unit_price: Money,
        /// What the order costs, all lines.
        total: Money,
        /// The hold deadline.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        initiated_at: DateTime<Utc>,
        /// What happens to a payment that succeeds after the hold ended.
        #[serde(default)]
        late_payment: LatePaymentPolicy,
        /// The event's per-customer ticket limit, if any: the seats are claimed on the
        /// customer's allowance before the inventory is asked.
        #[serde(default)]
        ticket_limit: Option<u32>,
        /// The order's lines, written when the flat fields do not say everything (several
        /// sections, or a tier chosen); see [`ReservationAction::order_lines`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<OrderLine>,
    },
    /// One line of an order of several sections has its seats; the order waits for the others.
    #[serde(rename = "LineSeatsHeld")]
    LineSeatsHeld {
        /// The reservation.
        reservation_id: ReservationId,
        /// The line's seats.
        line: LineSeats,
    },
    /// Seats are held for the reservation: every line of it.
    #[serde(rename = "SeatsAllocated")]
    SeatsAllocated {
        /// The reservation.
        reservation_id: ReservationId,
        /// The seats.
        seats: Vec<SeatId>,
    },
    /// Payment was requested.
    #[serde(rename = "PaymentRequested")]
    PaymentRequested {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment, [`PaymentId::for_reservation`].
        payment_id: PaymentId,
        /// How much.
        amount: Money,
        /// When (the epoch in logs written before it was recorded).
        #[serde(default)]
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        requested_at: DateTime<Utc>,
    },
    /// The payment for the reservation succeeded.
    #[serde(rename = "PaymentSucceeded")]
    PaymentSucceeded {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Amount taken.
        amount: Money,
        /// True when the reservation had already ended: the money must go back.
        refund_owed: bool,
    },
    /// The payment for the reservation failed.
    #[serde(rename = "PaymentFailed")]
    PaymentFailed {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Why.
        reason: String,
    },
    /// Paid; the seats are to be confirmed and their tickets issued. Terminal.
    #[serde(rename = "ReservationCompleted")]
    ReservationCompleted {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The seats bought.
        seats: Vec<SeatId>,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        completed_at: DateTime<Utc>,
        /// Who bought (for the tickets; absent in logs written before tickets existed, whose
        /// purchases get no tickets).
        #[serde(default)]
        customer_id: Option<CustomerId>,
        /// Price of one seat (as `customer_id`; of the first line, for an order of several).
        #[serde(default)]
        unit_price: Option<Money>,
        /// For an order of several sections, `seats` per line; empty for one section.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<LineSeats>,
    },
    /// Seats of the completed purchase were refunded: their tickets are to be revoked, the
    /// seats returned to the inventory and `amount` given back.
    #[serde(rename = "SeatsRefunded")]
    SeatsRefunded {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Who bought.
        customer_id: CustomerId,
        /// The seats refunded.
        seats: Vec<SeatId>,
        /// The payment the money goes back from.
        payment_id: PaymentId,
        /// The refund.
        refund_id: RefundId,
        /// How much goes back.
        amount: Money,
        /// Why.
        reason: String,
        /// Whether every seat of the purchase is refunded now.
        all: bool,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        refunded_at: DateTime<Utc>,
        /// The customer whose allowance gives back this reservation's claim (under a ticket
        /// limit).
        #[serde(default)]
        claim: Option<CustomerId>,
        /// For an order of several sections, `seats` per line; empty for one section.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<LineSeats>,
    },
    /// The hold ran out. Terminal.
    #[serde(rename = "ReservationExpired")]
    ReservationExpired {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Seats to release (empty if none were held yet).
        seats: Vec<SeatId>,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expired_at: DateTime<Utc>,
        /// The customer whose allowance gives back this reservation's claim (under a ticket
        /// limit).
        #[serde(default)]
        claim: Option<CustomerId>,
        /// For an order of several sections, `seats` per line; empty for one section.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<LineSeats>,
    },
    /// The customer cancelled. Terminal.
    #[serde(rename = "ReservationCancelled")]
    ReservationCancelled {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Seats to release (empty if none were held yet).
        seats: Vec<SeatId>,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        cancelled_at: DateTime<Utc>,
        /// The customer whose allowance gives back this reservation's claim (under a ticket
        /// limit).
        #[serde(default)]
        claim: Option<CustomerId>,
        /// For an order of several sections, `seats` per line; empty for one section.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<LineSeats>,
    },
    /// Undone after a failure. Terminal.
    #[serde(rename = "ReservationCompensated")]
    ReservationCompensated {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Seats to release (empty if none were held).
        seats: Vec<SeatId>,
        /// Why.
        reason: CompensationReason,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        compensated_at: DateTime<Utc>,
        /// The customer whose allowance gives back this reservation's claim (under a ticket
        /// limit).
        #[serde(default)]
        claim: Option<CustomerId>,
        /// For an order of several sections, `seats` per line; empty for one section.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<LineSeats>,
    },
    /// A payment succeeded after the hold ended and the event accepts late payments if seats
    /// are free: the saga asks Inventory for them.
    #[serde(rename = "LatePaymentAccepted")]
    LatePaymentAccepted {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Amount taken.
        amount: Money,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Seats it had held.
        quantity: u32,
    },
    /// A payment succeeded after the hold ended and the event keeps such payments for an
    /// operator to settle: the money stays, nothing else happens.
    #[serde(rename = "LatePaymentHeldForReview")]
    LatePaymentHeldForReview {
        /// The reservation.
        reservation_id: ReservationId,
        /// The payment.
        payment_id: PaymentId,
        /// Amount taken.
        amount: Money,
    },
    /// Seats arrived after the reservation had ended and must be released.
    #[serde(rename = "SeatsReturned")]
    SeatsReturned {
        /// The reservation.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// The seats to release.
        seats: Vec<SeatId>,
    },
    /// A command was refused.
    Rejected(ReservationError),
}

impl ReservationAction {
    /// Whether this is one of the four events that end a reservation (Completed, Expired,
    /// Cancelled, Compensated).
    #[must_use]
    pub fn is_ending(&self) -> bool {
        matches!(
            self,
            Self::ReservationCompleted { .. }
                | Self::ReservationExpired { .. }
                | Self::ReservationCancelled { .. }
                | Self::ReservationCompensated { .. }
        )
    }

    /// The lines of the order a `ReservationInitiated` starts (one for a one-section
    /// reservation); empty for any other action.
    #[must_use]
    pub fn order_lines(&self) -> Vec<OrderLine> {
        match self {
            Self::ReservationInitiated { lines, .. } if !lines.is_empty() => lines.clone(),
            Self::ReservationInitiated { section, quantity, unit_price, .. } => {
                vec![OrderLine { section: section.clone(), quantity: *quantity, unit_price: *unit_price, tier: None }]
            }
            _ => Vec::new(),
        }
    }

    /// The seats of an event that ends a reservation, completes it or refunds seats of it, per
    /// section (one pair for a one-section reservation; sections without seats left out);
    /// empty for any other action.
    #[must_use]
    pub fn seats_by_section(&self) -> SmallVec<[(&SectionName, &[SeatId]); 2]> {
        match self {
            Self::ReservationCompleted { section, seats, lines, .. }
            | Self::ReservationExpired { section, seats, lines, .. }
            | Self::ReservationCancelled { section, seats, lines, .. }
            | Self::ReservationCompensated { section, seats, lines, .. }
            | Self::SeatsRefunded { section, seats, lines, .. } => {
                if lines.is_empty() {
                    if seats.is_empty() { SmallVec::new() } else { smallvec![(section, seats.as_slice())] }
                } else {
                    lines.iter().filter(|l| !l.seats.is_empty()).map(|l| (&l.section, l.seats.as_slice())).collect()
                }
            }
            _ => SmallVec::new(),
        }
    }

    /// The reservation this action addresses (`None` for a rejection).
    #[must_use]
    pub fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Self::InitiateReservation { reservation_id, .. }
            | Self::AllocateSeats { reservation_id, .. }
            | Self::RecordSeatShortage { reservation_id, .. }
            | Self::RecordLimitReached { reservation_id, .. }
            | Self::CompletePayment { reservation_id, .. }
            | Self::FailPayment { reservation_id, .. }
            | Self::RequestPayment { reservation_id, .. }
            | Self::CompleteLateSale { reservation_id, .. }
            | Self::RefuseLateSale { reservation_id }
            | Self::CancelReservation { reservation_id }
            | Self::ExpireReservation { reservation_id }
            | Self::RefundSeats { reservation_id, .. }
            | Self::SeatsRefunded { reservation_id, .. }
            | Self::ReservationInitiated { reservation_id, .. }
            | Self::SeatsAllocated { reservation_id, .. }
            | Self::LineSeatsHeld { reservation_id, .. }
            | Self::PaymentRequested { reservation_id, .. }
            | Self::PaymentSucceeded { reservation_id, .. }
            | Self::PaymentFailed { reservation_id, .. }
            | Self::ReservationCompleted { reservation_id, .. }
            | Self::ReservationExpired { reservation_id, .. }
            | Self::ReservationCancelled { reservation_id, .. }
            | Self::ReservationCompensated { reservation_id, .. }
            | Self::LatePaymentAccepted { reservation_id, .. }
            | Self::LatePaymentHeldForReview { reservation_id, .. }
            | Self::SeatsReturned { reservation_id, .. } => Some(*reservation_id),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for ReservationAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::InitiateReservation { .. }
            | Self::AllocateSeats { .. }
            | Self::RecordSeatShortage { .. }
            | Self::RecordLimitReached { .. }
            | Self::CompletePayment { .. }
            | Self::FailPayment { .. }
            | Self::RequestPayment { .. }
            | Self::CompleteLateSale { .. }
            | Self::RefuseLateSale { .. }
            | Self::CancelReservation { .. }
            | Self::ExpireReservation { .. }
            | Self::RefundSeats { .. } => MessageKind::Command,
            Self::Rejected(_) => MessageKind::Rejection,
            _ => MessageKind::Event,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::InitiateReservation { .. } => "InitiateReservation",
            Self::AllocateSeats { .. } => "AllocateSeats",
            Self::RecordSeatShortage { .. } => "RecordSeatShortage",
            Self::RecordLimitReached { .. } => "RecordLimitReached",
            Self::CompletePayment { .. } => "CompletePayment",
            Self::FailPayment { .. } => "FailPayment",
            Self::RequestPayment { .. } => "RequestPayment",
            Self::CompleteLateSale { .. } => "CompleteLateSale",
            Self::RefuseLateSale { .. } => "RefuseLateSale",
            Self::CancelReservation { .. } => "CancelReservation",
            Self::ExpireReservation { .. } => "ExpireReservation",
            Self::RefundSeats { .. } => "RefundSeats",
            Self::SeatsRefunded { .. } => "SeatsRefunded",
            Self::ReservationInitiated { .. } => "ReservationInitiated",
            Self::SeatsAllocated { .. } => "SeatsAllocated",
            Self::LineSeatsHeld { .. } => "LineSeatsHeld",
            Self::PaymentRequested { .. } => "PaymentRequested",
            Self::PaymentSucceeded { .. } => "PaymentSucceeded",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::ReservationCompleted { .. } => "ReservationCompleted",
            Self::ReservationExpired { .. } => "ReservationExpired",
            Self::ReservationCancelled { .. } => "ReservationCancelled",
            Self::ReservationCompensated { .. } => "ReservationCompensated",
            Self::LatePaymentAccepted { .. } => "LatePaymentAccepted",
            Self::LatePaymentHeldForReview { .. } => "LatePaymentHeldForReview",
            Self::SeatsReturned { .. } => "SeatsReturned",
            Self::Rejected(_) => "ReservationRejected",
        }
    }
}

/// Dependencies of the Reservation reducer.
#[derive(Debug, Clone)]
pub struct ReservationEnv {
    /// Deadlines and timestamps.
    pub clock: Arc<dyn Clock>,
    /// How long seats are held for an unpaid reservation.
    pub hold_duration: Duration,
}

impl ReservationEnv {
    /// The default hold: five minutes.
    pub const DEFAULT_HOLD: Duration = Duration::from_secs(5 * 60);

    /// An environment with the default hold duration.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, hold_duration: Self::DEFAULT_HOLD }
    }

    /// Changes the hold duration.
    #[must_use]
    pub fn with_hold_duration(mut self, hold_duration: Duration) -> Self {
        self.hold_duration = hold_duration;
        self
    }
}

/// The Reservation reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReservationReducer;

impl Reducer for ReservationReducer {
    type State = ReservationState;
    type Action = ReservationAction;
    type Env = ReservationEnv;

    /// A reservation starts with `InitiateReservation`.
    fn creates(action: &ReservationAction) -> bool {
        matches!(action, ReservationAction::InitiateReservation { .. })
    }

    /// Ended, with no refund still owed.
    fn at_rest(state: &ReservationState) -> bool {
        state.reservation.as_ref().is_some_and(|r| r.status.is_terminal() && r.refund_owed.is_none())
    }

    fn reduce(
        &self,
        state: &mut ReservationState,
        action: ReservationAction,
        env: &ReservationEnv,
    ) -> Effects<ReservationAction> {
        event_sourced(state, action, |s, a| decide(s, a, env), apply, ReservationAction::Rejected)
    }
}

type Events = SmallVec<[ReservationAction; 4]>;

fn decide(
    state: &ReservationState,
    command: ReservationAction,
    env: &ReservationEnv,
) -> Result<Events, ReservationError> {
    let now = env.clock.now();
    if let ReservationAction::InitiateReservation { reservation_id, event_id, lines, customer_id, policy } = command {
        return initiate(state, env, Initiate { reservation_id, event_id, lines, customer_id, policy });
    }
    let Some(reservation_id) = command.reservation_id() else { return Ok(smallvec![]) };
    let r = state.reservation.as_ref().ok_or(ReservationError::NotFound { reservation_id })?;
    let (event_id, section, status) = (r.event_id, r.section.clone(), r.status);
    let invalid =
        |action: &'static str| ReservationError::InvalidState { reservation_id, status, action: action.into() };
    let events: Events = match command {
        ReservationAction::AllocateSeats { seats, section: held_in, .. } if r.is_multi_section() => {
            allocate_line(r, held_in, seats)?
        }
        ReservationAction::AllocateSeats { seats, .. } => match status {
            ReservationStatus::Initiated => smallvec![ReservationAction::SeatsAllocated { reservation_id, seats }],
            // The reservation ended while Inventory was still holding seats for it.
            ReservationStatus::Expired | ReservationStatus::Cancelled | ReservationStatus::Compensated
                if r.seats.is_empty() =>
            {
                smallvec![ReservationAction::SeatsReturned { reservation_id, event_id, section, seats }]
            }
            _ => smallvec![],
        },
        ReservationAction::RecordLimitReached { .. } | ReservationAction::RecordSeatShortage { .. } => {
            refused_seats(r, &command, now)
        }
        ReservationAction::CompletePayment { payment_id, amount, .. } => payment_succeeded(r, payment_id, amount, now)?,
        ReservationAction::CompleteLateSale { .. } | ReservationAction::RefuseLateSale { .. } => {
            late_sale(r, command, now)?
        }
        ReservationAction::FailPayment { payment_id, reason, .. } => match status {
            ReservationStatus::PaymentPending => smallvec![
                ReservationAction::PaymentFailed { reservation_id, payment_id, reason: reason.clone() },
                ReservationAction::ReservationCompensated {
                    reservation_id,
                    event_id,
                    section,
                    seats: r.held_seats(),
                    reason: CompensationReason::PaymentFailed { reason },
                    compensated_at: now,
                    claim: r.claim(),
                    lines: r.ending_lines(),
                },
            ],
            _ => smallvec![],
        },
        ReservationAction::RequestPayment { .. } => request_payment(r, now)?,
        ReservationAction::RefundSeats { seats, refund_id, amount, reason, .. } => {
            refund_seats(r, SeatRefund { seats, refund_id, amount, reason }, now)?
        }
        ReservationAction::CancelReservation { .. } => match status {
            ReservationStatus::Cancelled => smallvec![],
            s if s.is_terminal() => return Err(invalid("cancel")),
            _ => smallvec![ReservationAction::ReservationCancelled {
                reservation_id,
                event_id,
                section,
                seats: r.held_seats(),
                cancelled_at: now,
                claim: r.claim(),
                lines: r.ending_lines(),
            }],
        },
        ReservationAction::ExpireReservation { .. } => match status {
            s if s.is_terminal() => smallvec![],
            _ if now < r.expires_at => {
                return Err(ReservationError::NotYetExpired { reservation_id, expires_at: r.expires_at, now });
            }
            _ => smallvec![ReservationAction::ReservationExpired {
                reservation_id,
                event_id,
                section,
                seats: r.held_seats(),
                expired_at: now,
                claim: r.claim(),
                lines: r.ending_lines(),
            }],
        },
        _ => smallvec![],
    };
    Ok(events)
}

/// The saga's answer to a late payment accepted under [`LatePaymentPolicy::AcceptIfSeatsFree`]:
/// Inventory sold it seats (the reservation completes) or had too few (the money goes back).
fn late_sale(r: &Reservation, command: ReservationAction, now: DateTime<Utc>) -> Result<Events, ReservationError> {
    let (reservation_id, status) = (r.reservation_id, r.status);
    let (event_id, section) = (r.event_id, r.section.clone());
    let invalid =
        |action: &'static str| ReservationError::InvalidState { reservation_id, status, action: action.into() };
    Ok(match command {
        ReservationAction::CompleteLateSale { seats, .. } => match (status, r.late_payment_kept) {
            (ReservationStatus::Completed, _) => smallvec![],
            (_, Some(_)) if r.late_payment == LatePaymentPolicy::AcceptIfSeatsFree && status.is_terminal() => {
                smallvec![ReservationAction::ReservationCompleted {
                    reservation_id,
                    event_id,
                    section,
                    seats,
                    completed_at: now,
                    customer_id: Some(r.customer_id),
                    unit_price: Some(r.unit_price),
                    lines: Vec::new(),
                }]
            }
            _ => return Err(invalid("complete a late sale that was not accepted")),
        },
        ReservationAction::RefuseLateSale { .. } => match (r.late_payment_kept, r.refund_owed, r.payment_id) {
            (Some(amount), None, Some(payment_id)) if status != ReservationStatus::Completed => {
                smallvec![ReservationAction::PaymentSucceeded { reservation_id, payment_id, amount, refund_owed: true }]
            }
            _ => smallvec![],
        },
        _ => smallvec![],
    })
}

/// A payment for `r` succeeded: complete it if it was waiting, or record that the money must go
/// back if it had already ended.
fn payment_succeeded(
    r: &Reservation,
    payment_id: PaymentId,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Events, ReservationError> {
    let reservation_id = r.reservation_id;
    Ok(match r.status {
        ReservationStatus::PaymentPending => smallvec![
            ReservationAction::PaymentSucceeded { reservation_id, payment_id, amount, refund_owed: false },
            ReservationAction::ReservationCompleted {
                reservation_id,
                event_id: r.event_id,
                section: r.section.clone(),
                seats: r.seats.clone(),
                completed_at: now,
                customer_id: Some(r.customer_id),
                unit_price: Some(r.unit_price),
                lines: r.ending_lines(),
            },
        ],
        ReservationStatus::Expired | ReservationStatus::Cancelled | ReservationStatus::Compensated
            if r.refund_owed.is_none() && r.late_payment_kept.is_none() =>
        {
            // A customer who cancelled is always refunded; otherwise the event's policy decides. An
            // order of several sections is refunded rather than sold late: selling it late would
            // take every section's seats at once, and a late sale asks one inventory.
            let policy = match r.late_payment {
                _ if r.status == ReservationStatus::Cancelled => LatePaymentPolicy::Refund,
                LatePaymentPolicy::AcceptIfSeatsFree if r.is_multi_section() => LatePaymentPolicy::Refund,
                policy => policy,
            };
            match policy {
                LatePaymentPolicy::Refund => {
                    smallvec![ReservationAction::PaymentSucceeded {
                        reservation_id,
                        payment_id,
                        amount,
                        refund_owed: true
                    }]
                }
                LatePaymentPolicy::AcceptIfSeatsFree => smallvec![ReservationAction::LatePaymentAccepted {
                    reservation_id,
                    payment_id,
                    amount,
                    event_id: r.event_id,
                    section: r.section.clone(),
                    quantity: r.quantity,
                }],
                LatePaymentPolicy::ManualReview => {
                    smallvec![ReservationAction::LatePaymentHeldForReview { reservation_id, payment_id, amount }]
                }
            }
        }
        status @ (ReservationStatus::Initiated | ReservationStatus::SeatsAllocated) => {
            return Err(ReservationError::InvalidState {
                reservation_id,
                status,
                action: "record a payment that was never requested".into(),
            });
        }
        _ => smallvec![],
    })
}

/// The saga reports that the reservation's seats were refused, by the customer's allowance or
/// the inventory: a reservation still waiting for them ends Compensated.
fn refused_seats(r: &Reservation, command: &ReservationAction, now: DateTime<Utc>) -> Events {
    let reason = match command {
        ReservationAction::RecordLimitReached { limit, held, .. } => {
            CompensationReason::CustomerLimitReached { limit: *limit, held: *held }
        }
        ReservationAction::RecordSeatShortage { requested, available, section, .. } => {
            CompensationReason::InsufficientInventory {
                requested: *requested,
                available: *available,
                section: section.clone(),
            }
        }
        _ => return smallvec![],
    };
    if r.status != ReservationStatus::Initiated {
        return smallvec![];
    }
    // Lines of an order of several sections that had their seats already give them back.
    smallvec![ReservationAction::ReservationCompensated {
        reservation_id: r.reservation_id,
        event_id: r.event_id,
        section: r.section.clone(),
        seats: r.held_seats(),
        reason,
        compensated_at: now,
        claim: r.claim(),
        lines: r.ending_lines(),
    }]
}

/// One line of an order of several sections has its seats: recorded while the order waits, and
/// the order allocated with the last of them; seats that arrive after the order ended go back.
fn allocate_line(
    r: &Reservation,
    section: Option<SectionName>,
    seats: Vec<SeatId>,
) -> Result<Events, ReservationError> {
    let reservation_id = r.reservation_id;
    let line = section.and_then(|section| r.lines.iter().find(|l| l.section == section)).ok_or_else(|| {
        ReservationError::InvalidState {
            reservation_id,
            status: r.status,
            action: "allocate seats of a section the order does not name".into(),
        }
    })?;
    if r.held.iter().any(|held| held.section == line.section) {
        return Ok(smallvec![]);
    }
    let line_seats = LineSeats { section: line.section.clone(), unit_price: line.unit_price, seats };
    Ok(match r.status {
        ReservationStatus::Initiated => {
            let mut all = r.held_seats();
            all.extend(line_seats.seats.iter().copied());
            let complete = r.held.len() + 1 == r.lines.len();
            let mut events: Events = smallvec![ReservationAction::LineSeatsHeld { reservation_id, line: line_seats }];
            if complete {
                events.push(ReservationAction::SeatsAllocated { reservation_id, seats: all });
            }
            events
        }
        ReservationStatus::Expired | ReservationStatus::Cancelled | ReservationStatus::Compensated => {
            smallvec![ReservationAction::SeatsReturned {
                reservation_id,
                event_id: r.event_id,
                section: line_seats.section,
                seats: line_seats.seats,
            }]
        }
        _ => smallvec![],
    })
}

/// The customer pays for the seats held.
fn request_payment(r: &Reservation, now: DateTime<Utc>) -> Result<Events, ReservationError> {
    let (reservation_id, status) = (r.reservation_id, r.status);
    let invalid =
        |action: &'static str| ReservationError::InvalidState { reservation_id, status, action: action.into() };
    Ok(match status {
        ReservationStatus::SeatsAllocated if now >= r.expires_at => {
            return Err(invalid("pay after the hold ran out"));
        }
        ReservationStatus::SeatsAllocated => smallvec![ReservationAction::PaymentRequested {
            reservation_id,
            payment_id: PaymentId::for_reservation(reservation_id),
            amount: r.total,
            requested_at: now,
        }],
        ReservationStatus::PaymentPending | ReservationStatus::Completed => smallvec![],
        _ => return Err(invalid("pay")),
    })
}

/// The fields of `RefundSeats`.
struct SeatRefund {
    seats: Vec<SeatId>,
    refund_id: RefundId,
    amount: Money,
    reason: String,
}

/// Seats of a completed purchase are refunded: all kept ones when none are named.
fn refund_seats(r: &Reservation, refund: SeatRefund, now: DateTime<Utc>) -> Result<Events, ReservationError> {
    let SeatRefund { seats, refund_id, amount, reason } = refund;
    let reservation_id = r.reservation_id;
    if r.seat_refunds.contains(&refund_id) {
        return Ok(smallvec![]);
    }
    if r.status != ReservationStatus::Completed {
        return Err(ReservationError::InvalidState {
            reservation_id,
            status: r.status,
            action: "refund seats of a purchase that did not complete".into(),
        });
    }
    let kept: Vec<SeatId> = r.kept_seats().collect();
    let seats = if seats.is_empty() { kept.clone() } else { seats };
    if seats.is_empty() {
        return Err(ReservationError::NothingToRefund { reservation_id });
    }
    let mut unique = Vec::with_capacity(seats.len());
    for seat_id in seats {
        if !kept.contains(&seat_id) || unique.contains(&seat_id) {
            return Err(ReservationError::SeatNotRefundable { reservation_id, seat_id });
        }
        unique.push(seat_id);
    }
    let price = r
        .price_of_seats(unique.iter().copied())
        .map_err(|source| ReservationError::Money { reservation_id, source })?;
    let in_price = amount.currency() == price.currency() && (0..=price.minor_units()).contains(&amount.minor_units());
    if !in_price {
        return Err(ReservationError::RefundNotInPrice { reservation_id, amount, price });
    }
    Ok(smallvec![ReservationAction::SeatsRefunded {
        reservation_id,
        event_id: r.event_id,
        section: r.section.clone(),
        customer_id: r.customer_id,
        all: unique.len() == kept.len(),
        lines: if r.is_multi_section() { split_by_line(&r.held, &unique) } else { Vec::new() },
        seats: unique,
        payment_id: r.payment_id.unwrap_or_else(|| PaymentId::for_reservation(reservation_id)),
        refund_id,
        amount,
        reason,
        refunded_at: now,
        claim: r.claim(),
    }])
}

/// The fields of `InitiateReservation`.
struct Initiate {
    reservation_id: ReservationId,
    event_id: EventId,
    lines: Vec<OrderLine>,
    customer_id: CustomerId,
    policy: SalesPolicy,
}

fn initiate(state: &ReservationState, env: &ReservationEnv, request: Initiate) -> Result<Events, ReservationError> {
    let Initiate { reservation_id, event_id, lines, customer_id, policy } = request;
    if let Some(r) = &state.reservation {
        let same = r.event_id == event_id && r.order_lines() == lines && r.customer_id == customer_id;
        return if same { Ok(smallvec![]) } else { Err(ReservationError::AlreadyExists { reservation_id }) };
    }
    let Some(first) = lines.first() else { return Err(ReservationError::EmptyOrder { reservation_id }) };
    let money = |source| ReservationError::Money { reservation_id, source };
    let mut total = Money::zero(first.unit_price.currency());
    let mut quantity: u32 = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.quantity == 0 {
            return Err(ReservationError::ZeroQuantity { reservation_id });
        }
        if !line.unit_price.is_positive() {
            return Err(ReservationError::NonPositivePrice { reservation_id, unit_price: line.unit_price });
        }
        if lines[..i].iter().any(|earlier| earlier.section == line.section) {
            return Err(ReservationError::DuplicateSection { reservation_id, section: line.section.clone() });
        }
        total = total.checked_add(line.unit_price.checked_mul(line.quantity).map_err(money)?).map_err(money)?;
        quantity = quantity
            .checked_add(line.quantity)
            .ok_or_else(|| money(DomainError::MoneyOverflow { operation: "sum the seats of an order".into() }))?;
    }
    let now = env.clock.now();
    let hold = chrono::Duration::from_std(policy.hold.unwrap_or(env.hold_duration)).unwrap_or(chrono::Duration::MAX);
    let expires_at = now.checked_add_signed(hold).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let (section, unit_price) = (first.section.clone(), first.unit_price);
    // The flat fields say everything about one line with no tier chosen: no `lines` written.
    let said = lines.len() == 1 && first.tier.is_none();
    Ok(smallvec![ReservationAction::ReservationInitiated {
        reservation_id,
        event_id,
        section,
        quantity,
        customer_id,
        unit_price,
        total,
        expires_at,
        initiated_at: now,
        late_payment: policy.late_payment,
        ticket_limit: policy.max_tickets_per_customer,
        lines: if said { Vec::new() } else { lines },
    }])
}

fn apply(state: &mut ReservationState, event: &ReservationAction) {
    if let ReservationAction::ReservationInitiated {
        reservation_id,
        event_id,
        section,
        quantity,
        customer_id,
        unit_price,
        total,
        expires_at,
        late_payment,
        ticket_limit,
        lines,
        ..
    } = event
    {
        state.reservation = Some(Reservation {
            reservation_id: *reservation_id,
            event_id: *event_id,
            section: section.clone(),
            quantity: *quantity,
            customer_id: *customer_id,
            unit_price: *unit_price,
            total: *total,
            expires_at: *expires_at,
            seats: Vec::new(),
            payment_id: None,
            status: ReservationStatus::Initiated,
            refund_owed: None,
            late_payment: *late_payment,
            late_payment_kept: None,
            compensation: None,
            refunded_seats: Vec::new(),
            seat_refunds: Vec::new(),
            ticket_limit: *ticket_limit,
            lines: lines.clone(),
            held: Vec::new(),
        });
        return;
    }
    let Some(r) = state.reservation.as_mut() else { return };
    match event {
        ReservationAction::SeatsAllocated { seats, .. } => {
            r.seats.clone_from(seats);
            r.status = ReservationStatus::SeatsAllocated;
        }
        ReservationAction::PaymentRequested { payment_id, .. } => {
            r.payment_id = Some(*payment_id);
            r.status = ReservationStatus::PaymentPending;
        }
        ReservationAction::PaymentSucceeded { amount, refund_owed: true, .. } => r.refund_owed = Some(*amount),
        ReservationAction::LatePaymentAccepted { amount, .. }
        | ReservationAction::LatePaymentHeldForReview { amount, .. } => r.late_payment_kept = Some(*amount),
        ReservationAction::ReservationCompleted { seats, .. } => {
            r.seats.clone_from(seats);
            r.status = ReservationStatus::Completed;
        }
        ReservationAction::ReservationExpired { .. } => r.status = ReservationStatus::Expired,
        ReservationAction::ReservationCancelled { .. } => r.status = ReservationStatus::Cancelled,
        ReservationAction::ReservationCompensated { reason, .. } => {
            r.status = ReservationStatus::Compensated;
            r.compensation = Some(reason.clone());
        }
        ReservationAction::LineSeatsHeld { line, .. } => r.held.push(line.clone()),
        ReservationAction::SeatsReturned { section, seats, .. } if r.is_multi_section() => {
            r.held.push(LineSeats { section: section.clone(), unit_price: r.unit_price, seats: seats.clone() });
        }
        ReservationAction::SeatsReturned { seats, .. } => r.seats.clone_from(seats),
        ReservationAction::SeatsRefunded { seats, refund_id, .. } => {
            r.refunded_seats.extend(seats.iter().copied());
            r.seat_refunds.push(*refund_id);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::domain::Currency;
    use crate::framework::{FixedClock, ReducerTest, ReducerTestError};
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }
    fn deadline() -> DateTime<Utc> {
        start() + chrono::Duration::minutes(5)
    }
    fn rid() -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(1))
    }
    fn event() -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(2))
    }
    fn customer() -> CustomerId {
        CustomerId::from_uuid(uuid::Uuid::from_u128(3))
    }
    fn pid() -> PaymentId {
        PaymentId::for_reservation(rid())
    }
    fn section() -> SectionName {
        SectionName::new("Stalls").unwrap()
    }
    fn eur(m: i64) -> Money {
        Money::new(m, Currency::EUR)
    }
    fn seats() -> Vec<SeatId> {
        (0..2).map(|i| SeatId::derive(event(), "Stalls", i)).collect()
    }
    fn test_at(now: DateTime<Utc>) -> ReducerTest<ReservationReducer> {
        ReducerTest::new(ReservationReducer, ReservationEnv::new(Arc::new(FixedClock::new(now))))
    }
    fn test() -> ReducerTest<ReservationReducer> {
        test_at(start())
    }
    fn initiate(quantity: u32, unit: i64) -> ReservationAction {
        ReservationAction::InitiateReservation {
            reservation_id: rid(),
            event_id: event(),
            lines: vec![OrderLine { section: section(), quantity, unit_price: eur(unit), tier: None }],
            customer_id: customer(),
            policy: crate::aggregates::SalesPolicy::default(),
        }
    }
    fn initiated() -> ReservationAction {
        ReservationAction::ReservationInitiated {
            lines: Vec::new(),
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            quantity: 2,
            customer_id: customer(),
            unit_price: eur(2_500),
            total: eur(5_000),
            expires_at: deadline(),
            initiated_at: start(),
            late_payment: crate::aggregates::LatePaymentPolicy::default(),
            ticket_limit: None,
        }
    }
    fn allocated() -> [ReservationAction; 2] {
        [
            ReservationAction::SeatsAllocated { reservation_id: rid(), seats: seats() },
            ReservationAction::PaymentRequested {
                reservation_id: rid(),
                payment_id: pid(),
                amount: eur(5_000),
                requested_at: start(),
            },
        ]
    }
    fn pending() -> Vec<ReservationAction> {
        let mut history = vec![initiated()];
        history.extend(allocated());
        history
    }
    fn complete() -> ReservationAction {
        ReservationAction::CompletePayment { reservation_id: rid(), payment_id: pid(), amount: eur(5_000) }
    }
    fn paid(refund_owed: bool) -> ReservationAction {
        ReservationAction::PaymentSucceeded {
            reservation_id: rid(),
            payment_id: pid(),
            amount: eur(5_000),
            refund_owed,
        }
    }
    fn completed() -> ReservationAction {
        ReservationAction::ReservationCompleted {
            lines: Vec::new(),
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            seats: seats(),
            completed_at: start(),
            customer_id: Some(customer()),
            unit_price: Some(eur(2_500)),
        }
    }
    fn expired(seats: Vec<SeatId>, at: DateTime<Utc>) -> ReservationAction {
        ReservationAction::ReservationExpired {
            lines: Vec::new(),
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            seats,
            expired_at: at,
            claim: None,
        }
    }
    fn cancelled(seats: Vec<SeatId>) -> ReservationAction {
        ReservationAction::ReservationCancelled {
            lines: Vec::new(),
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            seats,
            cancelled_at: start(),
            claim: None,
        }
    }
    fn status_is(status: ReservationStatus) -> impl FnOnce(&ReservationState) -> bool {
        move |s| s.reservation.as_ref().is_some_and(|r| r.status == status)
    }

    #[test]
    fn initiate_records_total_and_deadline() -> Result<(), ReducerTestError> {
        // Enforcing the deadline is the system's job (a durable sweep over the log): the reducer
        // only records it.
        test()
            .when(initiate(2, 2_500))
            .then_persisted(&[initiated()])?
            .then_state("initiated", status_is(ReservationStatus::Initiated))?;
        Ok(())
    }

    #[test]
    fn hold_duration_is_configurable() -> Result<(), ReducerTestError> {
        let env = ReservationEnv::new(Arc::new(FixedClock::new(start()))).with_hold_duration(Duration::from_secs(60));
        ReducerTest::new(ReservationReducer, env).when(initiate(1, 100)).then_state("1 min", |s| {
            s.reservation.as_ref().is_some_and(|r| r.expires_at == start() + chrono::Duration::minutes(1))
        })?;
        Ok(())
    }

    #[test]
    fn initiate_rejections() -> Result<(), ReducerTestError> {
        test().when(initiate(0, 100)).then_rejected("zero", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::ZeroQuantity { .. }))
        })?;
        test().when(initiate(1, 0)).then_rejected("free", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::NonPositivePrice { .. }))
        })?;
        test().when(initiate(2, i64::MAX)).then_rejected("overflow", |a| {
            matches!(
                a,
                ReservationAction::Rejected(ReservationError::Money { source: DomainError::MoneyOverflow { .. }, .. })
            )
        })?;
        test().given([initiated()])?.when(initiate(3, 2_500)).then_rejected("id reuse", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::AlreadyExists { .. }))
        })?;
        test().given([initiated()])?.when(initiate(2, 2_500)).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn allocated_seats_wait_for_the_customer_to_pay() -> Result<(), ReducerTestError> {
        let [seats_allocated, payment_requested] = allocated();
        let pay = || ReservationAction::RequestPayment { reservation_id: rid() };
        test()
            .given([initiated()])?
            .when(ReservationAction::AllocateSeats { section: None, reservation_id: rid(), seats: seats() })
            .then_persisted(std::slice::from_ref(&seats_allocated))?
            .then_state("allocated", status_is(ReservationStatus::SeatsAllocated))?;
        test()
            .given([initiated(), seats_allocated.clone()])?
            .when(pay())
            .then_persisted(&[payment_requested])?
            .then_state("pending", status_is(ReservationStatus::PaymentPending))?;
        test().given(pending())?.when(pay()).then_persisted(&[])?.then_unchanged()?;
        test().given([initiated()])?.when(pay()).then_rejected("seats not held yet", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::InvalidState { .. }))
        })?;
        test()
            .given(pending())?
            .when(ReservationAction::AllocateSeats { section: None, reservation_id: rid(), seats: seats() })
            .then_persisted(&[])?
            .then_unchanged()?;
        Ok(())
    }

    #[test]
    fn seats_arriving_after_the_end_are_returned_once() -> Result<(), ReducerTestError> {
        let allocate = || ReservationAction::AllocateSeats { section: None, reservation_id: rid(), seats: seats() };
        let returned = ReservationAction::SeatsReturned {
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            seats: seats(),
        };
        test()
            .given([initiated(), cancelled(Vec::new())])?
            .when(allocate())
            .then_persisted(std::slice::from_ref(&returned))?;
        test().given([initiated(), cancelled(Vec::new()), returned])?.when(allocate()).then_persisted(&[])?;
        Ok(())
    }

    #[test]
    fn commands_for_unknown_reservations_are_rejected() -> Result<(), ReducerTestError> {
        test().when(complete()).then_rejected("unknown", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::NotFound { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn payment_success_completes() -> Result<(), ReducerTestError> {
        test()
            .given(pending())?
            .when(complete())
            .then_persisted(&[paid(false), completed()])?
            .then_state("completed", status_is(ReservationStatus::Completed))?;
        let mut history = pending();
        history.extend([paid(false), completed()]);
        test().given(history)?.when(complete()).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn payment_before_request_is_rejected() -> Result<(), ReducerTestError> {
        test().given([initiated()])?.when(complete()).then_rejected("early", |a| {
            matches!(
                a,
                ReservationAction::Rejected(ReservationError::InvalidState {
                    status: ReservationStatus::Initiated,
                    ..
                })
            )
        })?;
        Ok(())
    }

    #[test]
    fn late_payment_after_expiry_is_owed_back_once() -> Result<(), ReducerTestError> {
        let mut history = pending();
        history.push(expired(seats(), deadline()));
        let outcome = test().given(history.clone())?.when(complete()).then_persisted(&[paid(true)])?.then_state(
            "still expired, refund owed",
            |s| {
                s.reservation
                    .as_ref()
                    .is_some_and(|r| r.status == ReservationStatus::Expired && r.refund_owed == Some(eur(5_000)))
            },
        )?;
        drop(outcome);
        history.push(paid(true));
        test().given(history)?.when(complete()).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    fn initiated_under(late_payment: LatePaymentPolicy) -> ReservationAction {
        let mut event = initiated();
        if let ReservationAction::ReservationInitiated { late_payment: policy, .. } = &mut event {
            *policy = late_payment;
        }
        event
    }

    fn expired_under(late_payment: LatePaymentPolicy) -> Vec<ReservationAction> {
        let mut history = vec![initiated_under(late_payment)];
        history.extend(allocated());
        history.push(expired(seats(), deadline()));
        history
    }

    #[test]
    fn a_late_payment_follows_the_events_policy_once() -> Result<(), ReducerTestError> {
        let accepted = ReservationAction::LatePaymentAccepted {
            reservation_id: rid(),
            payment_id: pid(),
            amount: eur(5_000),
            event_id: event(),
            section: section(),
            quantity: 2,
        };
        let accept = || expired_under(LatePaymentPolicy::AcceptIfSeatsFree);
        test().given(accept())?.when(complete()).then_persisted(std::slice::from_ref(&accepted))?;
        let sold = ReservationAction::CompleteLateSale { reservation_id: rid(), seats: seats() };
        let mut after = accept();
        after.push(accepted.clone());
        test()
            .given(after.clone())?
            .when(sold.clone())
            .then_persisted(&[completed()])?
            .then_state("completed", status_is(ReservationStatus::Completed))?;
        test().given(after.clone())?.when(complete()).then_persisted(&[])?.then_unchanged()?;
        test()
            .given(after.clone())?
            .when(ReservationAction::RefuseLateSale { reservation_id: rid() })
            .then_persisted(&[paid(true)])?;
        test().given(accept())?.when(sold).then_rejected("not accepted", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::InvalidState { .. }))
        })?;

        let held = ReservationAction::LatePaymentHeldForReview {
            reservation_id: rid(),
            payment_id: pid(),
            amount: eur(5_000),
        };
        test()
            .given(expired_under(LatePaymentPolicy::ManualReview))?
            .when(complete())
            .then_persisted(std::slice::from_ref(&held))?
            .then_state("kept, still expired", |s| {
                s.reservation
                    .as_ref()
                    .is_some_and(|r| r.status == ReservationStatus::Expired && r.late_payment_kept == Some(eur(5_000)))
            })?;
        let mut cancelled_history = vec![initiated_under(LatePaymentPolicy::ManualReview)];
        cancelled_history.extend(allocated());
        cancelled_history.push(cancelled(seats()));
        test().given(cancelled_history)?.when(complete()).then_persisted(&[paid(true)])?;
        Ok(())
    }

    #[test]
    fn payment_failure_compensates() -> Result<(), ReducerTestError> {
        let fail =
            || ReservationAction::FailPayment { reservation_id: rid(), payment_id: pid(), reason: "card".into() };
        let compensated = ReservationAction::ReservationCompensated {
            lines: Vec::new(),
            reservation_id: rid(),
            event_id: event(),
            section: section(),
            seats: seats(),
            reason: CompensationReason::PaymentFailed { reason: "card".into() },
            compensated_at: start(),
            claim: None,
        };
        let failed =
            ReservationAction::PaymentFailed { reservation_id: rid(), payment_id: pid(), reason: "card".into() };
        test()
            .given(pending())?
            .when(fail())
            .then_persisted(&[failed.clone(), compensated.clone()])?
            .then_state("compensated", status_is(ReservationStatus::Compensated))?;
        let mut history = pending();
        history.extend([failed, compensated]);
        test().given(history)?.when(fail()).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn seat_shortage_compensates_without_seats() -> Result<(), ReducerTestError> {
        let shortage =
            ReservationAction::RecordSeatShortage { section: None, reservation_id: rid(), requested: 2, available: 1 };
        test().given([initiated()])?.when(shortage.clone()).then_persisted(&[
            ReservationAction::ReservationCompensated {
                lines: Vec::new(),
                reservation_id: rid(),
                event_id: event(),
                section: section(),
                seats: Vec::new(),
                reason: CompensationReason::InsufficientInventory { section: None, requested: 2, available: 1 },
                compensated_at: start(),
                claim: None,
            },
        ])?;
        test().given(pending())?.when(shortage).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn cancel_releases_and_is_idempotent() -> Result<(), ReducerTestError> {
        let cancel = || ReservationAction::CancelReservation { reservation_id: rid() };
        test()
            .given(pending())?
            .when(cancel())
            .then_persisted(&[cancelled(seats())])?
            .then_state("cancelled", status_is(ReservationStatus::Cancelled))?;
        test().given([initiated(), cancelled(Vec::new())])?.when(cancel()).then_persisted(&[])?.then_unchanged()?;
        let mut done = pending();
        done.extend([paid(false), completed()]);
        test().given(done)?.when(cancel()).then_rejected("completed", |a| {
            matches!(
                a,
                ReservationAction::Rejected(ReservationError::InvalidState {
                    status: ReservationStatus::Completed,
                    ..
                })
            )
        })?;
        Ok(())
    }

    #[test]
    fn expiry_only_after_the_deadline_and_never_after_completion() -> Result<(), ReducerTestError> {
        let expire = || ReservationAction::ExpireReservation { reservation_id: rid() };
        test().given(pending())?.when(expire()).then_rejected("too early", |a| {
            matches!(a, ReservationAction::Rejected(ReservationError::NotYetExpired { .. }))
        })?;
        test_at(deadline())
            .given(pending())?
            .when(expire())
            .then_persisted(&[expired(seats(), deadline())])?
            .then_state("expired", status_is(ReservationStatus::Expired))?;
        let mut done = pending();
        done.extend([paid(false), completed()]);
        test_at(deadline()).given(done)?.when(expire()).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn event_names_equal_serde_tags() {
        let mut events = pending();
        events.extend([paid(true), completed(), expired(Vec::new(), start()), cancelled(Vec::new())]);
        events.extend([
            ReservationAction::PaymentFailed { reservation_id: rid(), payment_id: pid(), reason: "card".into() },
            ReservationAction::ReservationCompensated {
                lines: Vec::new(),
                reservation_id: rid(),
                event_id: event(),
                section: section(),
                seats: seats(),
                reason: CompensationReason::InsufficientInventory { section: None, requested: 2, available: 1 },
                compensated_at: start(),
                claim: None,
            },
            ReservationAction::SeatsReturned {
                reservation_id: rid(),
                event_id: event(),
                section: section(),
                seats: seats(),
            },
        ]);
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json.as_object().unwrap().keys().next().unwrap(), event.name());
            assert_eq!(serde_json::from_value::<ReservationAction>(json).unwrap(), event);
        }
    }

    #[test]
    fn a_reservation_is_at_rest_once_it_ended_and_owes_no_refund() {
        let mut state = ReservationState::default();
        let mut events = vec![initiated()];
        events.extend(allocated());
        events.push(paid(false));
        for event in &events {
            apply(&mut state, event);
            assert!(!ReservationReducer::at_rest(&state), "not at rest after {event:?}");
        }
        apply(&mut state, &completed());
        assert!(ReservationReducer::at_rest(&state));
        if let Some(r) = state.reservation.as_mut() {
            r.refund_owed = Some(eur(5_000));
        }
        assert!(!ReservationReducer::at_rest(&state), "a refund still owed keeps it awake");
    }
}
