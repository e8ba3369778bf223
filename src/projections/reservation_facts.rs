//! What the read models remember about each reservation, to attribute later events to it.

use crate::aggregates::{ReservationAction, TicketingAction, category};
use crate::domain::{CustomerId, EventId, Money, ReservationId, SectionName};
use crate::event_store::Envelope;

/// The facts fixed when a reservation starts (`ReservationInitiated`).
///
/// Payment events name only the reservation; read models look these facts up to know which
/// event, section and customer a payment or a refund belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationFacts {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// Who buys.
    pub customer_id: CustomerId,
    /// Seats asked for.
    pub quantity: u32,
    /// Price of all the seats.
    pub total: Money,
}

impl ReservationFacts {
    /// The facts in `action` if it is a `ReservationInitiated`.
    #[must_use]
    pub fn from_action(action: &TicketingAction) -> Option<Self> {
        match action {
            TicketingAction::Reservation(ReservationAction::ReservationInitiated {
                reservation_id,
                event_id,
                section,
                quantity,
                customer_id,
                total,
                ..
            }) => Some(Self {
                reservation_id: *reservation_id,
                event_id: *event_id,
                section: section.clone(),
                customer_id: *customer_id,
                quantity: *quantity,
                total: *total,
            }),
            _ => None,
        }
    }
}

/// Half-up (away from zero) integer division of an amount by a count, in minor units: the
/// average price of one ticket. Zero tickets give zero.
#[must_use]
pub fn average_price(amount: Money, count: u64) -> Money {
    if count == 0 {
        return Money::zero(amount.currency());
    }
    let total = i128::from(amount.minor_units());
    let count = i128::from(count);
    let magnitude = (2 * total.abs() + count) / (2 * count);
    let signed = if total < 0 { -magnitude } else { magnitude };
    // |signed| <= |total|, so it always fits back into i64.
    Money::new(i64::try_from(signed).unwrap_or(amount.minor_units()), amount.currency())
}

/// Whether a sales or customer model needs `envelope`'s payload: the Reservation stream's
/// `PaymentSucceeded` repeats the Payment stream's and is skipped before paying for decoding.
#[must_use]
pub fn reads_payload(envelope: &Envelope) -> bool {
    &*envelope.event_type != "PaymentSucceeded" || category(&envelope.stream_id) == "payment"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    #[test]
    fn average_price_rounds_half_away_from_zero() {
        let eur = |m| Money::new(m, Currency::EUR);
        assert_eq!(average_price(eur(1_000), 3), eur(333)); // 333.33 rounds down
        assert_eq!(average_price(eur(1_001), 2), eur(501)); // 500.5 rounds up
        assert_eq!(average_price(eur(-1_001), 2), eur(-501));
        assert_eq!(average_price(eur(500), 0), eur(0));
    }
}
