//! What the read models remember about each reservation, to attribute later events to it.

use crate::aggregates::{ReservationAction, TicketingAction, category};
use crate::domain::{CustomerId, EventId, Money, MoneyTotal, ReservationId, SectionName};
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

/// Half-up (away from zero) integer division of a total by a count, in minor units: the
/// average price of one ticket. Zero tickets give zero.
///
/// An event's revenue is at most its capacity times its highest price, which `create_event`
/// keeps within an `i64`, so the average fits a [`Money`]; a log written without that check
/// could exceed it, and then the average saturates at the `i64` bound of its sign.
#[must_use]
pub fn average_price(total: MoneyTotal, count: u64) -> Money {
    if count == 0 {
        return Money::zero(total.currency());
    }
    let sum = total.minor_units();
    let count = i128::from(count);
    let magnitude = (sum.unsigned_abs() * 2 + count.unsigned_abs()) / (count.unsigned_abs() * 2);
    let signed = i128::try_from(magnitude).map_or(i128::MAX, |m| if sum < 0 { -m } else { m });
    let saturated = i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX });
    Money::new(saturated, total.currency())
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
        let total = |m: i64| MoneyTotal::from(eur(m));
        assert_eq!(average_price(total(1_000), 3), eur(333)); // 333.33 rounds down
        assert_eq!(average_price(total(1_001), 2), eur(501)); // 500.5 rounds up
        assert_eq!(average_price(total(-1_001), 2), eur(-501));
        assert_eq!(average_price(total(500), 0), eur(0));
        let beyond = MoneyTotal::new(3 * i128::from(i64::MAX), Currency::EUR);
        assert_eq!(average_price(beyond, 3), eur(i64::MAX), "a total past i64 still averages exactly");
        assert_eq!(average_price(beyond, 1), eur(i64::MAX), "saturates only past the bound");
    }
}
