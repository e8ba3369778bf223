//! What callers hand the [`TicketingSystem`] and what it hands back.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

#[cfg(doc)]
use super::TicketingSystem;
use crate::aggregates::{EventAction, SalesPolicy, Section};
use crate::domain::{CustomerId, EventId, Money, PaymentId, PricingTier, ReservationId, SeatId, SectionName, Venue};

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

/// Seats held for a customer until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeats {
    /// The reservation to pay or cancel.
    pub reservation_id: ReservationId,
    /// The seats held.
    pub seats: Vec<SeatId>,
    /// What paying costs: the tier price times the quantity.
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
