//! What callers hand the [`TicketingSystem`] and what it hands back.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

#[cfg(doc)]
use super::TicketingSystem;
use crate::aggregates::{EventAction, LineSeats, SalesPolicy, Section};
use crate::domain::{
    CustomerId, EventId, Money, PaymentId, PricingTier, ReservationId, SeatId, SectionName, TierKind, Venue,
};

/// What [`TicketingSystem::create_event`] needs.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// Display name (not blank, no NUL character).
    pub name: String,
    /// Where it happens.
    pub venue: Venue,
    /// When it happens.
    pub date: DateTime<Utc>,
    /// The seating plan.
    pub sections: Vec<Section>,
    /// Prices per section.
    pub pricing_tiers: Vec<PricingTier>,
    /// Hold duration and late-payment handling (`SalesPolicy::default()`: the system's hold,
    /// late payments refunded).
    pub policy: SalesPolicy,
}

impl EventSpec {
    /// The `CreateEvent` command that creates this event as `event_id`.
    #[must_use]
    pub fn into_command(self, event_id: EventId) -> EventAction {
        EventAction::CreateEvent {
            event_id,
            name: self.name,
            venue: self.venue,
            date: self.date,
            sections: self.sections,
            pricing_tiers: self.pricing_tiers,
            policy: self.policy,
        }
    }
}

/// A request for seats.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// How many seats.
    pub quantity: u32,
    /// Who buys.
    pub customer_id: CustomerId,
    /// Makes retries safe: the same customer and key always address the same reservation, so a
    /// retried call returns the original outcome and never holds seats twice. A key with a NUL
    /// character is refused.
    pub idempotency_key: Option<String>,
}

/// An order of seats in several sections of one event, held all or none, paid with one payment
/// and held until one deadline: what [`TicketingSystem::reserve_order`] takes.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// The event.
    pub event_id: EventId,
    /// The lines: one per section, each section at most once.
    pub lines: Vec<OrderLineRequest>,
    /// Who buys.
    pub customer_id: CustomerId,
    /// As [`ReserveRequest::idempotency_key`].
    pub idempotency_key: Option<String>,
}

/// One line of an [`OrderRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineRequest {
    /// The section.
    pub section: SectionName,
    /// How many seats of it.
    pub quantity: u32,
    /// The pricing tier to buy at; `None` for the cheapest of the section's tiers on sale.
    pub tier: Option<TierKind>,
}

impl From<ReserveRequest> for OrderRequest {
    fn from(request: ReserveRequest) -> Self {
        Self {
            event_id: request.event_id,
            lines: vec![OrderLineRequest { section: request.section, quantity: request.quantity, tier: None }],
            customer_id: request.customer_id,
            idempotency_key: request.idempotency_key,
        }
    }
}

/// Seats held for a customer until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeats {
    /// The reservation to pay or cancel.
    pub reservation_id: ReservationId,
    /// The seats held, in every line.
    pub seats: Vec<SeatId>,
    /// The seats held per line (section and price); one line for [`TicketingSystem::reserve`].
    pub lines: Vec<LineSeats>,
    /// What paying costs: each line's tier price times its quantity, summed.
    pub total: Money,
    /// When the hold runs out.
    pub expires_at: DateTime<Utc>,
}

/// A completed purchase: what [`TicketingSystem::pay`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The payment that paid for it.
    pub payment_id: PaymentId,
    /// The seats sold.
    pub seats: Vec<SeatId>,
    /// What was paid.
    pub amount: Money,
}

/// Payment details handed to the gateway: an opaque token from the customer's payment provider
/// (never a card number). It goes to the gateway from this process's memory and is never
/// stored: not in the log, snapshots, the bus, traces or error messages; its `Debug` output is
/// redacted.
#[derive(Debug, Clone)]
pub struct PaymentDetails {
    /// The provider's token (`"tok_visa".into()`).
    pub token: SecretString,
}

/// What [`TicketingSystem::refund`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The paid reservation.
    pub reservation_id: ReservationId,
    /// How much to give back; `None` for all that is left.
    pub amount: Option<Money>,
    /// Why (kept in the log; a NUL character is refused).
    pub reason: String,
    /// The caller's key for this refund: asked for again with the same key (a retry, another
    /// process), it is the same refund and the money goes back once. `None`: a new refund. A key
    /// with a NUL character is refused.
    pub idempotency_key: Option<String>,
}
