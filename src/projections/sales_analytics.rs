//! The `SalesAnalytics` read model: revenue, tickets and reservation outcomes per event.

use std::collections::{BTreeMap, HashMap};

use crate::aggregates::{PaymentAction, ReservationAction, TicketingAction};
use crate::domain::{Currency, DomainError, EventId, Money, MoneyTotal, RefundId, ReservationId, SectionName};
use crate::event_store::Envelope;

use super::reservation_facts::split_by_weight;
use super::{
    Projection, ProjectionError, ReservationFacts, average_price, decode_ticketing, projection_bookkeeping,
    reads_payload, refund_split,
};

/// The events this read model follows. `PaymentSucceeded` is read from Payment streams only (the
/// Reservation stream's event of the same name reports the same money and is ignored).
pub const SALES_ANALYTICS_EVENTS: &[&str] = &[
    "ReservationInitiated",
    "ReservationCompleted",
    "ReservationCancelled",
    "ReservationExpired",
    "ReservationCompensated",
    "PaymentSucceeded",
    "PaymentRefunded",
    "SeatsRefunded",
];

/// How a reservation that did not complete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationEnd {
    /// The customer cancelled.
    Cancelled,
    /// The hold ran out.
    Expired,
    /// Undone after a failed payment or a seat shortage.
    Compensated,
}

/// One change the log makes to the sales figures: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesChange {
    /// A reservation started; remembered to attribute its payments.
    ReservationStarted(ReservationFacts),
    /// Money taken (positive) or refunded (negative) for a reservation of `event_id`, split
    /// across the order's sections ([`ReservationFacts::split`]).
    Revenue {
        /// The event.
        event_id: EventId,
        /// Signed amount per section.
        by_section: Vec<(SectionName, Money)>,
    },
    /// A reservation completed and its seats are sold.
    Completed {
        /// The event.
        event_id: EventId,
        /// Seats sold per section.
        by_section: Vec<(SectionName, u32)>,
    },
    /// Seats of a completed reservation were refunded: they are sold no more.
    Returned {
        /// The event.
        event_id: EventId,
        /// Seats refunded per section.
        by_section: Vec<(SectionName, u32)>,
        /// For an order of several sections, how its refund splits by section (remembered until
        /// the money goes back, [`refund_split`]).
        refund: Option<(RefundId, Vec<(SectionName, Money)>)>,
    },
    /// A reservation ended without a sale.
    Ended {
        /// The event.
        event_id: EventId,
        /// How.
        end: ReservationEnd,
    },
}

impl SalesChange {
    /// The change `action` makes, looking reservations up with `facts`.
    ///
    /// Revenue follows the money (invariant I4): successful payments add, refunds subtract, so a
    /// payment that arrived after its reservation ended and was refunded nets to zero. Events of
    /// reservations the log never started are ignored.
    ///
    /// A refund of seats of an order of several sections lowers the revenue of their sections
    /// (`refunds` looks up the split its `SeatsRefunded` recorded); any other refund of such an
    /// order lowers each section's revenue in proportion to its part of the order.
    pub fn from_action(
        action: &TicketingAction,
        facts: impl FnOnce(ReservationId) -> Option<ReservationFacts>,
        refunds: impl FnOnce(RefundId) -> Option<Vec<(SectionName, Money)>>,
    ) -> Option<Self> {
        use ReservationAction as R;
        let ended = |event_id: &EventId, end| Some(Self::Ended { event_id: *event_id, end });
        match action {
            TicketingAction::Reservation(r) => match r {
                R::ReservationInitiated { .. } => ReservationFacts::from_action(action).map(Self::ReservationStarted),
                R::ReservationCompleted { reservation_id, .. } => facts(*reservation_id).map(|f| Self::Completed {
                    event_id: f.event_id,
                    by_section: f.shares().into_iter().map(|share| (share.section, share.quantity)).collect(),
                }),
                R::ReservationCancelled { event_id, .. } => ended(event_id, ReservationEnd::Cancelled),
                R::ReservationExpired { event_id, .. } => ended(event_id, ReservationEnd::Expired),
                R::ReservationCompensated { event_id, .. } => ended(event_id, ReservationEnd::Compensated),
                R::SeatsRefunded { event_id, .. } => Some(Self::Returned {
                    refund: refund_split(action),
                    event_id: *event_id,
                    by_section: r
                        .seats_by_section()
                        .into_iter()
                        .map(|(section, seats)| (section.clone(), u32::try_from(seats.len()).unwrap_or(u32::MAX)))
                        .collect(),
                }),
                _ => None,
            },
            TicketingAction::Payment(PaymentAction::PaymentSucceeded { reservation_id, amount, .. }) => {
                facts(*reservation_id).map(|f| Self::Revenue { event_id: f.event_id, by_section: f.split(*amount) })
            }
            TicketingAction::Payment(PaymentAction::PaymentRefunded { reservation_id, refund_id, amount, .. }) => {
                let back = Money::new(amount.minor_units().saturating_neg(), amount.currency());
                facts(*reservation_id).map(|f| Self::Revenue {
                    event_id: f.event_id,
                    by_section: match refunds(*refund_id) {
                        Some(split) => split_by_weight(
                            split
                                .into_iter()
                                .map(|(section, part)| (section, i128::from(part.minor_units())))
                                .collect(),
                            back,
                        ),
                        None => f.split(back),
                    },
                })
            }
            _ => None,
        }
    }
}

/// The sales figures of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesMetrics {
    /// The event.
    pub event_id: EventId,
    /// Successful payments minus refunds.
    pub total_revenue: MoneyTotal,
    /// Seats of completed reservations, less those refunded since.
    pub tickets_sold: u64,
    /// Reservations that completed.
    pub completed_reservations: u64,
    /// Reservations the customer cancelled.
    pub cancelled_reservations: u64,
    /// Reservations whose hold ran out.
    pub expired_reservations: u64,
    /// Reservations undone after a failed payment or a seat shortage.
    pub compensated_reservations: u64,
    /// Revenue per section (sections with a payment or a sale only).
    pub revenue_by_section: BTreeMap<SectionName, MoneyTotal>,
    /// Tickets sold per section (same sections).
    pub tickets_by_section: BTreeMap<SectionName, u64>,
    /// `total_revenue / tickets_sold` in minor units, rounded half-up (away from zero); zero when
    /// nothing is sold. Refunds lower it, since they lower revenue but not tickets.
    pub average_ticket_price: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SectionSales {
    revenue: i128,
    tickets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EventSales {
    currency: Currency,
    revenue: i128,
    tickets: u64,
    completed: u64,
    cancelled: u64,
    expired: u64,
    compensated: u64,
    sections: BTreeMap<SectionName, SectionSales>,
}

impl EventSales {
    fn new(currency: Currency) -> Self {
        Self {
            currency,
            revenue: 0,
            tickets: 0,
            completed: 0,
            cancelled: 0,
            expired: 0,
            compensated: 0,
            sections: BTreeMap::new(),
        }
    }
}

/// Sales figures per event, kept in memory.
///
/// An event appears once a reservation for it starts; its currency is that reservation's (an
/// event prices every tier in one currency). Query results use [`Money`] in that currency.
///
/// ```
/// use boxoffice::projections::SalesAnalyticsProjection;
/// use boxoffice::domain::EventId;
///
/// let sales = SalesAnalyticsProjection::new();
/// assert!(sales.get_metrics(EventId::new_v4()).is_none());
/// assert!(sales.get_total_revenue_all_events().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesAnalyticsProjection {
    reservations: HashMap<ReservationId, ReservationFacts>,
    /// How refunds of seats of orders of several sections split by section.
    refunds: HashMap<RefundId, Vec<(SectionName, Money)>>,
    events: HashMap<EventId, EventSales>,
    position: u64,
}

impl SalesAnalyticsProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "sales-analytics";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The facts of `reservation`, if it started.
    #[must_use]
    pub fn reservation(&self, reservation: ReservationId) -> Option<&ReservationFacts> {
        self.reservations.get(&reservation)
    }

    /// Applies one change. On error nothing changes.
    ///
    /// # Errors
    /// [`DomainError`] when revenue mixes currencies within an event (sums are `i128` and do not
    /// overflow: see [`MoneyTotal`]).
    pub(crate) fn apply_change(&mut self, change: SalesChange) -> Result<(), DomainError> {
        match change {
            SalesChange::ReservationStarted(facts) => {
                self.events.entry(facts.event_id).or_insert_with(|| EventSales::new(facts.total.currency()));
                self.reservations.insert(facts.reservation_id, facts);
            }
            SalesChange::Revenue { event_id, by_section } => {
                let Some(sales) = self.events.get_mut(&event_id) else { return Ok(()) };
                if let Some((_, amount)) = by_section.iter().find(|(_, amount)| amount.currency() != sales.currency) {
                    return Err(DomainError::CurrencyMismatch { left: sales.currency, right: amount.currency() });
                }
                // Sums are i128 of i64 amounts: these additions cannot fail once the currency
                // matches, so nothing is left half-applied.
                for (section, amount) in by_section {
                    let section_revenue = sales.sections.get(&section).map_or(0, |s| s.revenue);
                    let event_total = MoneyTotal::new(sales.revenue, sales.currency).checked_add(amount)?.minor_units();
                    let section_total =
                        MoneyTotal::new(section_revenue, sales.currency).checked_add(amount)?.minor_units();
                    sales.revenue = event_total;
                    sales.sections.entry(section).or_default().revenue = section_total;
                }
            }
            SalesChange::Completed { event_id, by_section } => {
                let Some(sales) = self.events.get_mut(&event_id) else { return Ok(()) };
                sales.completed = sales.completed.saturating_add(1);
                for (section, tickets) in by_section {
                    sales.tickets = sales.tickets.saturating_add(u64::from(tickets));
                    let s = sales.sections.entry(section).or_default();
                    s.tickets = s.tickets.saturating_add(u64::from(tickets));
                }
            }
            SalesChange::Returned { event_id, by_section, refund } => {
                if let Some((refund_id, split)) = refund {
                    self.refunds.insert(refund_id, split);
                }
                let Some(sales) = self.events.get_mut(&event_id) else { return Ok(()) };
                for (section, tickets) in by_section {
                    sales.tickets = sales.tickets.saturating_sub(u64::from(tickets));
                    let s = sales.sections.entry(section).or_default();
                    s.tickets = s.tickets.saturating_sub(u64::from(tickets));
                }
            }
            SalesChange::Ended { event_id, end } => {
                let Some(sales) = self.events.get_mut(&event_id) else { return Ok(()) };
                let counter = match end {
                    ReservationEnd::Cancelled => &mut sales.cancelled,
                    ReservationEnd::Expired => &mut sales.expired,
                    ReservationEnd::Compensated => &mut sales.compensated,
                };
                *counter = counter.saturating_add(1);
            }
        }
        Ok(())
    }

    /// The figures of `event`, or `None` when no reservation for it ever started.
    #[must_use]
    pub fn get_metrics(&self, event: EventId) -> Option<SalesMetrics> {
        let s = self.events.get(&event)?;
        let money = |m| MoneyTotal::new(m, s.currency);
        let total_revenue = money(s.revenue);
        Some(SalesMetrics {
            event_id: event,
            total_revenue,
            tickets_sold: s.tickets,
            completed_reservations: s.completed,
            cancelled_reservations: s.cancelled,
            expired_reservations: s.expired,
            compensated_reservations: s.compensated,
            revenue_by_section: s.sections.iter().map(|(name, x)| (name.clone(), money(x.revenue))).collect(),
            tickets_by_section: s.sections.iter().map(|(name, x)| (name.clone(), x.tickets)).collect(),
            average_ticket_price: average_price(total_revenue, s.tickets),
        })
    }

    /// Revenue over all events, one total per currency (amounts in different currencies are never
    /// added together), in currency-code order, summed in `i128`: past the range of one
    /// [`Money`] amount, exactly.
    #[must_use]
    pub fn get_total_revenue_all_events(&self) -> Vec<MoneyTotal> {
        let mut totals: BTreeMap<Currency, i128> = BTreeMap::new();
        for s in self.events.values() {
            // Each event's revenue is a sum of i64 amounts, one per event of the log; all of
            // them together stay below 2^127.
            let t = totals.entry(s.currency).or_default();
            *t = t.saturating_add(s.revenue);
        }
        totals.into_iter().map(|(c, m)| MoneyTotal::new(m, c)).collect()
    }

    /// The section of `event` with the most tickets sold and that number; ties go to the section
    /// whose name sorts first. `None` when nothing is sold.
    #[must_use]
    pub fn get_most_popular_section(&self, event: EventId) -> Option<(SectionName, u64)> {
        let s = self.events.get(&event)?;
        most_popular_section(s.sections.iter().map(|(name, x)| (name, x.tickets)))
    }

    /// Every event with figures, in id order.
    #[must_use]
    pub fn events(&self) -> Vec<EventId> {
        let mut ids: Vec<_> = self.events.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// The section with the most tickets sold (more than zero); ties go to the name that sorts first.
/// Shared by both storages so they break ties the same way.
pub(crate) fn most_popular_section<'a>(
    sections: impl Iterator<Item = (&'a SectionName, u64)>,
) -> Option<(SectionName, u64)> {
    sections
        .filter(|(_, tickets)| *tickets > 0)
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))
        .map(|(name, tickets)| (name.clone(), tickets))
}

impl Projection for SalesAnalyticsProjection {
    projection_bookkeeping!(SALES_ANALYTICS_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        if !reads_payload(envelope) {
            return Ok(());
        }
        let action = decode_ticketing(Self::NAME, envelope)?;
        let change = SalesChange::from_action(
            &action,
            |id| self.reservations.get(&id).cloned(),
            |id| self.refunds.get(&id).cloned(),
        );
        if let Some(change) = change {
            self.apply_change(change).map_err(|source| ProjectionError::Money {
                projection: Self::NAME.to_owned(),
                global_position: envelope.global_position,
                source,
            })?;
        }
        Ok(())
    }
}
