//! The `DailySales` read model: tickets, revenue and completed reservations per event and UTC
//! calendar day.
//!
//! Each event of the log counts on the day of its own timestamp (`completed_at`, `refunded_at`,
//! `succeeded_at`), not of `recorded_at`: that is the time the system's clock gave the decision,
//! the same on every replay and in every storage, and a refund lowers the day it happened, never
//! the day of the sale.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use crate::aggregates::{PaymentAction, ReservationAction, TicketingAction};
use crate::domain::{Currency, DomainError, EventId, Money, MoneyTotal, ReservationId};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, ReservationFacts, decode_ticketing, projection_bookkeeping, reads_payload};

/// The events this read model follows (`PaymentSucceeded` from Payment streams only).
pub const DAILY_SALES_EVENTS: &[&str] =
    &["ReservationInitiated", "ReservationCompleted", "SeatsRefunded", "PaymentSucceeded", "PaymentRefunded"];

/// The sales of one event on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySales {
    /// The event.
    pub event_id: EventId,
    /// The UTC calendar day.
    pub day: NaiveDate,
    /// Successful payments minus refunds made that day (negative on a day with only refunds).
    pub revenue: MoneyTotal,
    /// Seats of reservations completed that day.
    pub tickets_sold: u64,
    /// Seats refunded that day (of purchases of any day).
    pub tickets_refunded: u64,
    /// `tickets_sold - tickets_refunded`.
    pub net_tickets: i64,
    /// Reservations completed that day.
    pub completed_reservations: u64,
}

/// What one event of the log adds to one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDelta {
    /// Signed minor units.
    pub revenue: i64,
    /// Seats sold.
    pub tickets_sold: u32,
    /// Seats refunded.
    pub tickets_refunded: u32,
    /// Reservations completed.
    pub completed: u32,
}

/// One change the log makes to the daily figures: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DailyChange {
    /// A reservation started; remembered to know the event and currency of its later events.
    ReservationStarted(ReservationFacts),
    /// Something happened on `day` for `event_id`.
    Day {
        /// The event.
        event_id: EventId,
        /// The event's currency.
        currency: Currency,
        /// The UTC day.
        day: NaiveDate,
        /// What it adds.
        delta: DayDelta,
    },
}

/// The UTC calendar day of `at`.
#[must_use]
pub fn utc_day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

impl DailyChange {
    /// The change `action` makes, looking reservations up with `facts`. Events of reservations
    /// the log never started are ignored.
    ///
    /// # Errors
    /// [`DomainError::CurrencyMismatch`] when a payment or refund is not in the reservation's
    /// currency.
    pub fn from_action(
        action: &TicketingAction,
        facts: impl FnOnce(ReservationId) -> Option<ReservationFacts>,
    ) -> Result<Option<Self>, DomainError> {
        let seats = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (reservation, at, delta, amount) = match action {
            TicketingAction::Reservation(ReservationAction::ReservationInitiated { .. }) => {
                return Ok(ReservationFacts::from_action(action).map(Self::ReservationStarted));
            }
            TicketingAction::Reservation(ReservationAction::ReservationCompleted {
                reservation_id,
                seats: sold,
                completed_at,
                ..
            }) => (
                *reservation_id,
                *completed_at,
                DayDelta { tickets_sold: seats(sold.len()), completed: 1, ..DayDelta::default() },
                None,
            ),
            TicketingAction::Reservation(ReservationAction::SeatsRefunded {
                reservation_id,
                seats: refunded,
                refunded_at,
                ..
            }) => (
                *reservation_id,
                *refunded_at,
                DayDelta { tickets_refunded: seats(refunded.len()), ..DayDelta::default() },
                None,
            ),
            TicketingAction::Payment(PaymentAction::PaymentSucceeded {
                reservation_id, amount, succeeded_at, ..
            }) => (
                *reservation_id,
                *succeeded_at,
                DayDelta { revenue: amount.minor_units(), ..DayDelta::default() },
                Some(*amount),
            ),
            TicketingAction::Payment(PaymentAction::PaymentRefunded {
                reservation_id, amount, refunded_at, ..
            }) => (
                *reservation_id,
                *refunded_at,
                DayDelta { revenue: amount.minor_units().saturating_neg(), ..DayDelta::default() },
                Some(*amount),
            ),
            _ => return Ok(None),
        };
        let Some(f) = facts(reservation) else { return Ok(None) };
        let currency = f.total.currency();
        if let Some(amount) = amount.filter(|a: &Money| a.currency() != currency) {
            return Err(DomainError::CurrencyMismatch { left: currency, right: amount.currency() });
        }
        Ok(Some(Self::Day { event_id: f.event_id, currency, day: utc_day(at), delta }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DayRecord {
    currency: Currency,
    revenue: i128,
    sold: u64,
    refunded: u64,
    completed: u64,
}

/// Sales per event and UTC day, kept in memory.
///
/// ```
/// use boxoffice::projections::DailySalesProjection;
/// use boxoffice::domain::EventId;
///
/// let daily = DailySalesProjection::new();
/// assert!(daily.get_daily_sales(EventId::new_v4()).is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailySalesProjection {
    reservations: HashMap<ReservationId, ReservationFacts>,
    days: HashMap<EventId, BTreeMap<NaiveDate, DayRecord>>,
    position: u64,
}

impl DailySalesProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "daily-sales";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change. On error nothing changes.
    ///
    /// # Errors
    /// [`DomainError::CurrencyMismatch`] when a day already holds another currency,
    /// [`DomainError::MoneyOverflow`] past the `i128` range (not reachable by one log).
    pub(crate) fn apply_change(&mut self, change: DailyChange) -> Result<(), DomainError> {
        match change {
            DailyChange::ReservationStarted(facts) => {
                self.reservations.insert(facts.reservation_id, facts);
            }
            DailyChange::Day { event_id, currency, day, delta } => {
                let days = self.days.entry(event_id).or_default();
                let record =
                    days.entry(day).or_insert(DayRecord { currency, revenue: 0, sold: 0, refunded: 0, completed: 0 });
                if record.currency != currency {
                    return Err(DomainError::CurrencyMismatch { left: record.currency, right: currency });
                }
                let revenue = record
                    .revenue
                    .checked_add(i128::from(delta.revenue))
                    .ok_or(DomainError::MoneyOverflow { operation: "add".into() })?;
                record.revenue = revenue;
                record.sold = record.sold.saturating_add(u64::from(delta.tickets_sold));
                record.refunded = record.refunded.saturating_add(u64::from(delta.tickets_refunded));
                record.completed = record.completed.saturating_add(u64::from(delta.completed));
            }
        }
        Ok(())
    }

    /// The days of `event` with any sale, payment or refund, oldest first.
    #[must_use]
    pub fn get_daily_sales(&self, event: EventId) -> Vec<DaySales> {
        self.days
            .get(&event)
            .map(|days| days.iter().map(|(day, r)| day_sales(event, *day, r)).collect())
            .unwrap_or_default()
    }

    /// The sales of `event` on `day`, or `None` when nothing happened that day.
    #[must_use]
    pub fn get_day_sales(&self, event: EventId, day: NaiveDate) -> Option<DaySales> {
        self.days.get(&event)?.get(&day).map(|r| day_sales(event, day, r))
    }
}

fn day_sales(event_id: EventId, day: NaiveDate, r: &DayRecord) -> DaySales {
    DaySales {
        event_id,
        day,
        revenue: MoneyTotal::new(r.revenue, r.currency),
        tickets_sold: r.sold,
        tickets_refunded: r.refunded,
        net_tickets: net_tickets(r.sold, r.refunded),
        completed_reservations: r.completed,
    }
}

/// `sold - refunded` as a signed count, saturating. Shared by both storages.
pub(crate) fn net_tickets(sold: u64, refunded: u64) -> i64 {
    let net = i128::from(sold) - i128::from(refunded);
    i64::try_from(net).unwrap_or(if net < 0 { i64::MIN } else { i64::MAX })
}

impl Projection for DailySalesProjection {
    projection_bookkeeping!(DAILY_SALES_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        if !reads_payload(envelope) {
            return Ok(());
        }
        let money = |source| ProjectionError::Money {
            projection: Self::NAME.to_owned(),
            global_position: envelope.global_position,
            source,
        };
        let action = decode_ticketing(Self::NAME, envelope)?;
        if let Some(change) =
            DailyChange::from_action(&action, |id| self.reservations.get(&id).cloned()).map_err(money)?
        {
            self.apply_change(change).map_err(money)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::projections::test_log::{at, eur, ev, log};

    /// Paid and completed one second before midnight UTC; one seat refunded one second after.
    fn across_midnight() -> Vec<TicketingAction> {
        let (r, alice) = (ev::rid(1), ev::customer(1));
        vec![
            ev::initiated(r, alice, 2),
            ev::paid(r, eur(5_000), at(1, 23, 59, 59)),
            ev::paid_reservation_side(r, eur(5_000)),
            ev::completed(r, alice, &[0, 1], at(1, 23, 59, 59)),
            ev::money_back(r, eur(2_500), at(2, 0, 0, 1)),
            ev::seats_refunded(r, alice, &[1], at(2, 0, 0, 1)),
        ]
    }

    fn folded(log: &[Envelope]) -> DailySalesProjection {
        let mut model = DailySalesProjection::new();
        for e in log {
            model.apply(e).unwrap();
        }
        model
    }

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2030, 1, n).unwrap()
    }

    #[test]
    fn each_event_counts_on_the_utc_day_of_its_own_timestamp() {
        let model = folded(&log(&across_midnight()));
        let first = DaySales {
            event_id: ev::event(),
            day: day(1),
            revenue: eur(5_000).into(),
            tickets_sold: 2,
            tickets_refunded: 0,
            net_tickets: 2,
            completed_reservations: 1,
        };
        let second = DaySales {
            event_id: ev::event(),
            day: day(2),
            revenue: eur(-2_500).into(),
            tickets_sold: 0,
            tickets_refunded: 1,
            net_tickets: -1,
            completed_reservations: 0,
        };
        assert_eq!(model.get_daily_sales(ev::event()), vec![first.clone(), second.clone()]);
        assert_eq!(model.get_day_sales(ev::event(), day(2)), Some(second));
        assert_eq!(model.get_day_sales(ev::event(), day(3)), None);
        assert_eq!(utc_day(at(1, 23, 59, 59)), day(1));
        assert_eq!(utc_day(at(2, 0, 0, 0)), day(2));
    }

    #[test]
    fn redelivered_events_count_once() {
        let log = log(&across_midnight());
        let once = folded(&log);
        let mut again = folded(&log);
        for e in log.iter().rev() {
            assert!(!again.apply(e).unwrap());
        }
        assert_eq!(again, once);
    }

    #[test]
    fn a_payment_in_another_currency_is_refused_and_changes_nothing() {
        let r = ev::rid(1);
        let mut actions = across_midnight();
        actions.push(ev::paid(r, Money::new(100, Currency::USD), at(2, 1, 0, 0)));
        let log = log(&actions);
        let mut model = folded(&log[..log.len() - 1]);
        let before = model.clone();
        let error = model.apply(&log[log.len() - 1]).unwrap_err();
        assert_eq!(error.bad_event_position(), Some(7), "{error}");
        assert_eq!(model, before);
    }
}
