//! What the read models remember about each reservation, to attribute later events to it.

use crate::aggregates::{ReservationAction, TicketingAction, category};
use crate::domain::{CustomerId, EventId, Money, MoneyTotal, RefundId, ReservationId, SectionName};
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
    /// The section (the first line's, for an order of several sections).
    pub section: SectionName,
    /// Who buys.
    pub customer_id: CustomerId,
    /// Seats asked for, in all lines.
    pub quantity: u32,
    /// Price of all the seats.
    pub total: Money,
    /// Each section's part of an order of several sections; empty for one section, whose part
    /// is the whole (see [`ReservationFacts::shares`]).
    pub lines: Vec<SectionShare>,
}

/// One section's part of an order: its seats and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SectionShare {
    /// The section.
    pub section: SectionName,
    /// Seats of it.
    pub quantity: u32,
    /// What they cost.
    pub total: Money,
}

impl ReservationFacts {
    /// The facts in `action` if it is a `ReservationInitiated`.
    #[must_use]
    pub fn from_action(action: &TicketingAction) -> Option<Self> {
        match action {
            TicketingAction::Reservation(
                initiated @ ReservationAction::ReservationInitiated {
                    reservation_id,
                    event_id,
                    section,
                    quantity,
                    customer_id,
                    total,
                    lines,
                    ..
                },
            ) => Some(Self {
                reservation_id: *reservation_id,
                event_id: *event_id,
                section: section.clone(),
                customer_id: *customer_id,
                quantity: *quantity,
                total: *total,
                lines: if lines.len() > 1 {
                    initiated
                        .order_lines()
                        .into_iter()
                        .map(|line| SectionShare {
                            section: line.section,
                            quantity: line.quantity,
                            total: line.unit_price.checked_mul(line.quantity).unwrap_or(line.unit_price),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            }),
            _ => None,
        }
    }

    /// Each section's part of the order (one for a one-section reservation).
    #[must_use]
    pub fn shares(&self) -> Vec<SectionShare> {
        if self.lines.is_empty() {
            vec![SectionShare { section: self.section.clone(), quantity: self.quantity, total: self.total }]
        } else {
            self.lines.clone()
        }
    }

    /// `amount` (a payment or a refund of the order) split across its sections in proportion
    /// to what each costs ([`split_by_weight`]): the whole amount for one section, and each
    /// section's own price when `amount` is the order's total.
    #[must_use]
    pub fn split(&self, amount: Money) -> Vec<(SectionName, Money)> {
        let shares = self.shares();
        split_by_weight(shares.into_iter().map(|s| (s.section, i128::from(s.total.minor_units()))).collect(), amount)
    }
}

/// `amount` split across sections in proportion to their weights, rounded toward zero with the
/// remainder on the last, so the parts add up to `amount` exactly.
#[must_use]
pub fn split_by_weight(weights: Vec<(SectionName, i128)>, amount: Money) -> Vec<(SectionName, Money)> {
    let whole: i128 = weights.iter().map(|(_, w)| *w).sum();
    let mut left = i128::from(amount.minor_units());
    let last = weights.len().saturating_sub(1);
    weights
        .into_iter()
        .enumerate()
        .map(|(i, (section, weight))| {
            let part = if i == last || whole == 0 { left } else { i128::from(amount.minor_units()) * weight / whole };
            left -= part;
            let part = i64::try_from(part).unwrap_or(if part < 0 { i64::MIN } else { i64::MAX });
            (section, Money::new(part, amount.currency()))
        })
        .collect()
}

/// How the refund of seats of an order of several sections splits by section
/// (`SeatsRefunded` with `lines`): its amount in proportion to the refunded seats' prices.
/// `None` for any other action, and for a refund of a one-section order.
#[must_use]
pub fn refund_split(action: &TicketingAction) -> Option<(RefundId, Vec<(SectionName, Money)>)> {
    match action {
        TicketingAction::Reservation(ReservationAction::SeatsRefunded { refund_id, amount, lines, .. })
            if !lines.is_empty() =>
        {
            let weights = lines
                .iter()
                .map(|l| (l.section.clone(), i128::from(l.unit_price.minor_units()) * i128::from(l.count())))
                .collect();
            Some((*refund_id, split_by_weight(weights, *amount)))
        }
        _ => None,
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::Currency;

    #[test]
    fn an_amount_splits_by_what_each_section_costs() {
        let eur = |m| Money::new(m, Currency::EUR);
        let section = |name: &str| SectionName::new(name).unwrap();
        let share = |name: &str, quantity, total| SectionShare { section: section(name), quantity, total: eur(total) };
        let facts = ReservationFacts {
            reservation_id: ReservationId::new_v4(),
            event_id: EventId::new_v4(),
            section: section("Stalls"),
            customer_id: CustomerId::new_v4(),
            quantity: 3,
            total: eur(9_000),
            lines: vec![share("Stalls", 2, 6_000), share("Box", 1, 3_000)],
        };
        assert_eq!(facts.split(eur(9_000)), vec![(section("Stalls"), eur(6_000)), (section("Box"), eur(3_000))]);
        assert_eq!(facts.split(eur(-1_000)), vec![(section("Stalls"), eur(-666)), (section("Box"), eur(-334))]);
        let one = ReservationFacts { lines: Vec::new(), ..facts };
        assert_eq!(one.split(eur(123)), vec![(section("Stalls"), eur(123))]);
    }

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
