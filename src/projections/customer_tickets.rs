//! The `CustomerTickets` read model: each customer's completed orders and the tickets they hold
//! now, following transfers and revocations.

use std::collections::{BTreeMap, HashMap};

use crate::aggregates::{ReservationAction, TicketStatus, TicketingAction, TicketsAction};
use crate::domain::{CustomerId, EventId, Money, ReservationId, SeatId, SectionName, TicketId};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, ReservationFacts, decode_ticketing, projection_bookkeeping};

/// The events this read model follows.
pub const CUSTOMER_TICKETS_EVENTS: &[&str] = &[
    "ReservationInitiated",
    "ReservationCompleted",
    "SeatsRefunded",
    "TicketsIssued",
    "TicketTransferred",
    "TicketsRevoked",
];

/// One completed purchase of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// Seats bought.
    pub seats_bought: u32,
    /// Seats bought and not refunded.
    pub seats_kept: u32,
    /// Price of the seats bought.
    pub total: Money,
}

/// A ticket as its current holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTicket {
    /// The ticket.
    pub ticket_id: TicketId,
    /// The purchase it was issued for (possibly another customer's, after a transfer).
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// The seat.
    pub seat_id: SeatId,
    /// Who holds it now.
    pub holder: CustomerId,
    /// The current owner's serial (0 when issued, one more per transfer).
    pub serial: u32,
    /// Valid, or revoked with the reason and time.
    pub status: TicketStatus,
}

/// One change the log makes to orders and held tickets: the unit both storages apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketChange {
    /// A reservation started; remembered to know who bought and for how much.
    ReservationStarted(ReservationFacts),
    /// A reservation completed.
    Ordered {
        /// Who bought.
        customer_id: CustomerId,
        /// What.
        order: Order,
    },
    /// Seats of an order were refunded.
    Returned {
        /// The order.
        reservation_id: ReservationId,
        /// Seats refunded.
        seats: u32,
    },
    /// A purchase's tickets were issued, in seat order.
    Issued(Vec<HeldTicket>),
    /// A ticket changed hands.
    Transferred {
        /// The ticket.
        ticket_id: TicketId,
        /// The new holder.
        to: CustomerId,
        /// The new holder's serial.
        serial: u32,
    },
    /// A ticket was revoked.
    Revoked {
        /// The ticket.
        ticket_id: TicketId,
        /// Its status now.
        status: TicketStatus,
    },
}

impl TicketChange {
    /// The changes `action` makes, looking reservations up with `facts`.
    pub fn from_action(
        action: &TicketingAction,
        facts: impl FnOnce(ReservationId) -> Option<ReservationFacts>,
    ) -> Vec<Self> {
        match action {
            TicketingAction::Reservation(ReservationAction::ReservationInitiated { .. }) => {
                ReservationFacts::from_action(action).map(Self::ReservationStarted).into_iter().collect()
            }
            TicketingAction::Reservation(ReservationAction::ReservationCompleted { reservation_id, seats, .. }) => {
                facts(*reservation_id)
                    .map(|f| {
                        let bought = u32::try_from(seats.len()).unwrap_or(u32::MAX);
                        Self::Ordered {
                            customer_id: f.customer_id,
                            order: Order {
                                reservation_id: f.reservation_id,
                                event_id: f.event_id,
                                section: f.section,
                                seats_bought: bought,
                                seats_kept: bought,
                                total: f.total,
                            },
                        }
                    })
                    .into_iter()
                    .collect()
            }
            TicketingAction::Reservation(ReservationAction::SeatsRefunded { reservation_id, seats, .. }) => {
                vec![Self::Returned {
                    reservation_id: *reservation_id,
                    seats: u32::try_from(seats.len()).unwrap_or(u32::MAX),
                }]
            }
            TicketingAction::Tickets(TicketsAction::TicketsIssued {
                reservation_id,
                event_id,
                section,
                holder,
                tickets,
                ..
            }) => vec![Self::Issued(
                tickets
                    .iter()
                    .map(|(ticket_id, seat_id)| HeldTicket {
                        ticket_id: *ticket_id,
                        reservation_id: *reservation_id,
                        event_id: *event_id,
                        section: section.clone(),
                        seat_id: *seat_id,
                        holder: *holder,
                        serial: 0,
                        status: TicketStatus::Valid,
                    })
                    .collect(),
            )],
            TicketingAction::Tickets(TicketsAction::TicketTransferred { ticket_id, to, serial, .. }) => {
                vec![Self::Transferred { ticket_id: *ticket_id, to: *to, serial: *serial }]
            }
            TicketingAction::Tickets(TicketsAction::TicketsRevoked { codes, reason, revoked_at, .. }) => codes
                .iter()
                .map(|code| Self::Revoked {
                    ticket_id: code.ticket_id,
                    status: TicketStatus::Revoked { reason: *reason, at: *revoked_at },
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TicketRecord {
    ticket: HeldTicket,
    /// Where the ticket was issued (global position, index in the purchase): the listing order.
    issued: (u64, usize),
}

/// Orders and held tickets per customer, kept in memory.
///
/// ```
/// use boxoffice::projections::CustomerTicketsProjection;
/// use boxoffice::domain::CustomerId;
///
/// let tickets = CustomerTicketsProjection::new();
/// assert!(tickets.get_orders(CustomerId::new_v4()).is_empty());
/// assert!(tickets.get_tickets_held(CustomerId::new_v4()).is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerTicketsProjection {
    reservations: HashMap<ReservationId, ReservationFacts>,
    /// Orders per customer, in log order.
    orders: HashMap<CustomerId, Vec<Order>>,
    /// Who bought each order.
    buyers: HashMap<ReservationId, CustomerId>,
    tickets: HashMap<TicketId, TicketRecord>,
    /// Tickets per holder, by issue order.
    held: HashMap<CustomerId, BTreeMap<(u64, usize), TicketId>>,
    position: u64,
}

impl CustomerTicketsProjection {
    /// The name under which the runner checkpoints this model.
    pub const NAME: &'static str = "customer-tickets";

    /// An empty model.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change at global position `position`.
    pub(crate) fn apply_change(&mut self, position: u64, change: TicketChange) {
        match change {
            TicketChange::ReservationStarted(facts) => {
                self.reservations.insert(facts.reservation_id, facts);
            }
            TicketChange::Ordered { customer_id, order } => {
                if self.buyers.insert(order.reservation_id, customer_id).is_none() {
                    self.orders.entry(customer_id).or_default().push(order);
                }
            }
            TicketChange::Returned { reservation_id, seats } => {
                let Some(buyer) = self.buyers.get(&reservation_id) else { return };
                let orders = self.orders.entry(*buyer).or_default();
                if let Some(order) = orders.iter_mut().find(|o| o.reservation_id == reservation_id) {
                    order.seats_kept = order.seats_kept.saturating_sub(seats);
                }
            }
            TicketChange::Issued(tickets) => {
                for (index, ticket) in tickets.into_iter().enumerate() {
                    if self.tickets.contains_key(&ticket.ticket_id) {
                        continue;
                    }
                    let issued = (position, index);
                    self.held.entry(ticket.holder).or_default().insert(issued, ticket.ticket_id);
                    self.tickets.insert(ticket.ticket_id, TicketRecord { ticket, issued });
                }
            }
            TicketChange::Transferred { ticket_id, to, serial } => {
                let Some(record) = self.tickets.get_mut(&ticket_id) else { return };
                if let Some(previous) = self.held.get_mut(&record.ticket.holder) {
                    previous.remove(&record.issued);
                    if previous.is_empty() {
                        self.held.remove(&record.ticket.holder);
                    }
                }
                record.ticket.holder = to;
                record.ticket.serial = serial;
                self.held.entry(to).or_default().insert(record.issued, ticket_id);
            }
            TicketChange::Revoked { ticket_id, status } => {
                if let Some(record) = self.tickets.get_mut(&ticket_id) {
                    record.ticket.status = status;
                }
            }
        }
    }

    /// The completed purchases of `customer`, in log order, with the seats kept after refunds.
    #[must_use]
    pub fn get_orders(&self, customer: CustomerId) -> Vec<Order> {
        self.orders.get(&customer).cloned().unwrap_or_default()
    }

    /// Every ticket `customer` holds now, valid or revoked, in the order they were issued: the
    /// tickets of their purchases not transferred away, and those transferred to them.
    #[must_use]
    pub fn get_tickets_held(&self, customer: CustomerId) -> Vec<HeldTicket> {
        self.held
            .get(&customer)
            .map(|ids| ids.values().filter_map(|id| self.tickets.get(id)).map(|r| r.ticket.clone()).collect())
            .unwrap_or_default()
    }

    /// The tickets of [`get_tickets_held`](Self::get_tickets_held) that still admit.
    #[must_use]
    pub fn get_valid_tickets_held(&self, customer: CustomerId) -> Vec<HeldTicket> {
        let mut tickets = self.get_tickets_held(customer);
        tickets.retain(|t| t.status == TicketStatus::Valid);
        tickets
    }
}

impl Projection for CustomerTicketsProjection {
    projection_bookkeeping!(CUSTOMER_TICKETS_EVENTS);

    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError> {
        let action = decode_ticketing(Self::NAME, envelope)?;
        for change in TicketChange::from_action(&action, |id| self.reservations.get(&id).cloned()) {
            self.apply_change(envelope.global_position, change);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::RevocationReason;
    use crate::projections::test_log::{at, eur, ev, log};

    /// Alice buys two seats, gives the first to Bob, and has the second refunded.
    fn purchase_transfer_refund() -> Vec<TicketingAction> {
        let (r, alice, bob) = (ev::rid(1), ev::customer(1), ev::customer(2));
        vec![
            ev::initiated(r, alice, 2),
            ev::completed(r, alice, &[0, 1], at(1, 0, 1, 0)),
            ev::issued(r, alice, &[0, 1]),
            ev::transferred(r, 0, alice, bob, 1),
            ev::seats_refunded(r, alice, &[1], at(1, 2, 0, 0)),
            ev::revoked(r, 1, 0),
        ]
    }

    fn folded(log: &[Envelope]) -> CustomerTicketsProjection {
        let mut model = CustomerTicketsProjection::new();
        for e in log {
            model.apply(e).unwrap();
        }
        model
    }

    #[test]
    fn transfers_move_tickets_between_holders_and_revoked_ones_stay_listed() {
        let model = folded(&log(&purchase_transfer_refund()));
        let (r, alice, bob) = (ev::rid(1), ev::customer(1), ev::customer(2));
        let order = Order {
            reservation_id: r,
            event_id: ev::event(),
            section: SectionName::new("Stalls").unwrap(),
            seats_bought: 2,
            seats_kept: 1,
            total: eur(5_000),
        };
        assert_eq!(model.get_orders(alice), vec![order]);
        assert!(model.get_orders(bob).is_empty(), "a transfer is not a purchase");

        let alices = model.get_tickets_held(alice);
        assert_eq!(alices.len(), 1, "the transferred ticket left Alice: {alices:?}");
        assert_eq!(alices[0].ticket_id, ev::ticket(r, 1));
        assert_eq!(alices[0].status, TicketStatus::Revoked { reason: RevocationReason::Refunded, at: at(1, 2, 0, 0) });
        assert!(model.get_valid_tickets_held(alice).is_empty());

        let bobs = model.get_tickets_held(bob);
        assert_eq!(bobs.len(), 1);
        assert_eq!((bobs[0].ticket_id, bobs[0].holder, bobs[0].serial), (ev::ticket(r, 0), bob, 1));
        assert_eq!(bobs[0].status, TicketStatus::Valid);
        assert_eq!(model.get_valid_tickets_held(bob), bobs);
    }

    #[test]
    fn redelivered_events_count_once() {
        let log = log(&purchase_transfer_refund());
        let once = folded(&log);
        let mut twice = folded(&log);
        for e in log.iter().chain(&log[2..]) {
            assert!(!twice.apply(e).unwrap(), "position {} is not new", e.global_position);
        }
        assert_eq!(twice, once);
        assert_eq!(twice.get_orders(ev::customer(1))[0].seats_kept, 1, "the refund counted once");
    }
}
