//! The `CustomerHistory` read model: purchases, spending and habits per customer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::aggregates::{PaymentAction, ReservationAction, TicketingAction};
use crate::domain::{Currency, CustomerId, DomainError, EventId, Money, MoneyTotal, ReservationId, SectionName};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, ReservationFacts, decode_ticketing, projection_bookkeeping, reads_payload};

/// The events this read model follows (`PaymentSucceeded` from Payment streams only).
pub const CUSTOMER_HISTORY_EVENTS: &[&str] =
    &["ReservationInitiated", "ReservationCompleted", "PaymentSucceeded", "PaymentRefunded", "SeatsRefunded"];

/// One completed reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// Seats bought and not refunded.
    pub tickets: u32,
    /// Price of the seats bought.
    pub total: Money,
}

/// One change the log makes to customer histories: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerChange {
    /// A reservation started; remembered to attribute its payments.
    ReservationStarted(ReservationFacts),
    /// A reservation completed.
    Purchased {
        /// Who bought.
        customer_id: CustomerId,
        /// What.
        purchase: Purchase,
    },
    /// Seats of a purchase were refunded: the customer holds that many tickets fewer.
    Returned {
        /// Who bought.
        customer_id: CustomerId,
        /// The purchase.
        reservation_id: ReservationId,
        /// Seats refunded.
        tickets: u32,
    },
    /// Money taken from (positive) or refunded to (negative) a customer.
    Spent {
        /// Who.
        customer_id: CustomerId,
        /// Signed amount.
        amount: Money,
    },
}

impl CustomerChange {
    /// The change `action` makes, looking reservations up with `facts`. Spending follows the
    /// money, like revenue in [`SalesChange`](super::SalesChange).
    pub fn from_action(
        action: &TicketingAction,
        facts: impl FnOnce(ReservationId) -> Option<ReservationFacts>,
    ) -> Option<Self> {
        match action {
            TicketingAction::Reservation(ReservationAction::ReservationInitiated { .. }) => {
                ReservationFacts::from_action(action).map(Self::ReservationStarted)
            }
            TicketingAction::Reservation(ReservationAction::ReservationCompleted { reservation_id, .. }) => {
                facts(*reservation_id).map(|f| Self::Purchased {
                    customer_id: f.customer_id,
                    purchase: Purchase {
                        reservation_id: f.reservation_id,
                        event_id: f.event_id,
                        section: f.section,
                        tickets: f.quantity,
                        total: f.total,
                    },
                })
            }
            TicketingAction::Reservation(ReservationAction::SeatsRefunded {
                customer_id,
                reservation_id,
                seats,
                ..
            }) => Some(Self::Returned {
                customer_id: *customer_id,
                reservation_id: *reservation_id,
                tickets: u32::try_from(seats.len()).unwrap_or(u32::MAX),
            }),
            TicketingAction::Payment(PaymentAction::PaymentSucceeded { reservation_id, amount, .. }) => {
                facts(*reservation_id).map(|f| Self::Spent { customer_id: f.customer_id, amount: *amount })
            }
            TicketingAction::Payment(PaymentAction::PaymentRefunded { reservation_id, amount, .. }) => {
                facts(*reservation_id).map(|f| Self::Spent {
                    customer_id: f.customer_id,
                    amount: Money::new(amount.minor_units().saturating_neg(), amount.currency()),
                })
            }
            _ => None,
        }
    }
}

/// What a customer has done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    /// The customer.
    pub customer_id: CustomerId,
    /// Completed reservations, in log order.
    pub purchases: Vec<Purchase>,
    /// Successful payments minus refunds, one amount per currency.
    pub total_spent: BTreeMap<Currency, MoneyTotal>,
    /// Seats bought and not refunded.
    pub total_tickets: u64,
    /// Events with at least one completed reservation holding a ticket not refunded.
    pub events_attended: BTreeSet<EventId>,
    /// The section the customer bought the most tickets in (ties: the name that sorts first).
    pub favorite_section: Option<SectionName>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CustomerRecord {
    purchases: Vec<Purchase>,
    spent: BTreeMap<Currency, i128>,
    tickets: u64,
    events: BTreeSet<EventId>,
    section_tickets: BTreeMap<SectionName, u64>,
}

/// Purchase histories per customer, kept in memory.
///
/// ```
/// use boxoffice::projections::CustomerHistoryProjection;
/// use boxoffice::domain::{Currency, CustomerId, EventId};
///
/// let history = CustomerHistoryProjection::new();
/// assert!(history.get_customer_profile(CustomerId::new_v4()).is_none());
/// assert!(history.get_event_attendees(EventId::new_v4()).is_empty());
/// assert!(history.get_top_spenders(Currency::EUR, 10).is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerHistoryProjection {
    reservations: HashMap<ReservationId, ReservationFacts>,
    customers: HashMap<CustomerId, CustomerRecord>,
    attendees: HashMap<EventId, BTreeSet<CustomerId>>,
    position: u64,
}

impl CustomerHistoryProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "customer-history";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change. On error nothing changes.
    ///
    /// # Errors
    /// [`DomainError::MoneyOverflow`] when a customer's spending would overflow.
    pub(crate) fn apply_change(&mut self, change: CustomerChange) -> Result<(), DomainError> {
        match change {
            CustomerChange::ReservationStarted(facts) => {
                self.reservations.insert(facts.reservation_id, facts);
            }
            CustomerChange::Purchased { customer_id, purchase } => {
                let c = self.customers.entry(customer_id).or_default();
                c.tickets = c.tickets.saturating_add(u64::from(purchase.tickets));
                c.events.insert(purchase.event_id);
                let per_section = c.section_tickets.entry(purchase.section.clone()).or_default();
                *per_section = per_section.saturating_add(u64::from(purchase.tickets));
                self.attendees.entry(purchase.event_id).or_default().insert(customer_id);
                c.purchases.push(purchase);
            }
            CustomerChange::Returned { customer_id, reservation_id, tickets } => {
                let Some(c) = self.customers.get_mut(&customer_id) else { return Ok(()) };
                let Some(purchase) = c.purchases.iter_mut().find(|p| p.reservation_id == reservation_id) else {
                    return Ok(());
                };
                let returned = tickets.min(purchase.tickets);
                purchase.tickets -= returned;
                let (event_id, section) = (purchase.event_id, purchase.section.clone());
                c.tickets = c.tickets.saturating_sub(u64::from(returned));
                if let Some(per_section) = c.section_tickets.get_mut(&section) {
                    *per_section = per_section.saturating_sub(u64::from(returned));
                    if *per_section == 0 {
                        c.section_tickets.remove(&section);
                    }
                }
                if !c.purchases.iter().any(|p| p.event_id == event_id && p.tickets > 0) {
                    c.events.remove(&event_id);
                    if let Some(attendees) = self.attendees.get_mut(&event_id) {
                        attendees.remove(&customer_id);
                    }
                }
            }
            CustomerChange::Spent { customer_id, amount } => {
                let c = self.customers.entry(customer_id).or_default();
                let before = c.spent.get(&amount.currency()).copied().unwrap_or(0);
                let after = MoneyTotal::new(before, amount.currency()).checked_add(amount)?;
                c.spent.insert(amount.currency(), after.minor_units());
            }
        }
        Ok(())
    }

    /// The profile of `customer`, or `None` when the customer never paid or bought.
    #[must_use]
    pub fn get_customer_profile(&self, customer: CustomerId) -> Option<CustomerProfile> {
        let c = self.customers.get(&customer)?;
        let favorite_section = favorite_section(c.section_tickets.iter().map(|(s, n)| (s, *n)));
        Some(CustomerProfile {
            customer_id: customer,
            purchases: c.purchases.clone(),
            total_spent: c.spent.iter().map(|(cur, m)| (*cur, MoneyTotal::new(*m, *cur))).collect(),
            total_tickets: c.tickets,
            events_attended: c.events.clone(),
            favorite_section,
        })
    }

    /// Whether `customer` holds a ticket of `event` (a completed reservation not wholly
    /// refunded).
    #[must_use]
    pub fn has_attended_event(&self, customer: CustomerId, event: EventId) -> bool {
        self.attendees.get(&event).is_some_and(|a| a.contains(&customer))
    }

    /// Customers holding a ticket of `event`, in id order.
    #[must_use]
    pub fn get_event_attendees(&self, event: EventId) -> Vec<CustomerId> {
        self.attendees.get(&event).map(|a| a.iter().copied().collect()).unwrap_or_default()
    }

    /// The `n` customers who spent the most in `currency`, highest first (ties: lower id first).
    /// Amounts in different currencies are never compared, hence the currency argument.
    #[must_use]
    pub fn get_top_spenders(&self, currency: Currency, n: usize) -> Vec<(CustomerId, MoneyTotal)> {
        let mut all: Vec<(CustomerId, i128)> =
            self.customers.iter().filter_map(|(id, c)| c.spent.get(&currency).map(|m| (*id, *m))).collect();
        all.sort_unstable_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
        all.into_iter().take(n).map(|(id, m)| (id, MoneyTotal::new(m, currency))).collect()
    }

    /// Every customer with a profile, in id order.
    #[must_use]
    pub fn customers(&self) -> Vec<CustomerId> {
        let mut ids: Vec<_> = self.customers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// The section with the most tickets; ties go to the name that sorts first. Shared by both
/// storages so they break ties the same way.
pub(crate) fn favorite_section<'a>(tickets: impl Iterator<Item = (&'a SectionName, u64)>) -> Option<SectionName> {
    tickets.max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a))).map(|(name, _)| name.clone())
}

impl Projection for CustomerHistoryProjection {
    projection_bookkeeping!(CUSTOMER_HISTORY_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        if !reads_payload(envelope) {
            return Ok(());
        }
        let action = decode_ticketing(Self::NAME, envelope)?;
        if let Some(change) = CustomerChange::from_action(&action, |id| self.reservations.get(&id).cloned()) {
            self.apply_change(change).map_err(|source| ProjectionError::Money {
                projection: Self::NAME.to_owned(),
                global_position: envelope.global_position,
                source,
            })?;
        }
        Ok(())
    }
}
