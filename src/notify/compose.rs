//! Turning a log event into the notifications it calls for, by reading the streams that hold
//! what the event itself does not carry (the customer, the event's name, the purchases).
//!
//! The customer of a reservation is read from its stream's `ReservationInitiated` rather than
//! remembered from the live log: a notifier resuming from a checkpoint between a reservation's
//! initiation and its completion has not seen the initiation, and a memory of every open
//! reservation would grow with the sale. The read is of one short stream (a reservation has a
//! handful of events) per notification. Every read is cut at the position of the event being
//! handled, so a redelivery (here or in another process) derives the same notifications with the
//! same recipients and details.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{
    CancellationNotice, EventSummary, Notification, NotificationId, NotificationKind, NotifierError, Purchase,
    PurchaseConfirmation, Recipient, RefundNotice, TicketLine,
};
use crate::aggregates::{
    EventAction, InventoryAction, PaymentAction, ReservationAction, StreamDecodeError, TicketingAction, event_stream,
    inventory_stream, reservation_stream,
};
use crate::domain::{CustomerId, EventId, Money, ReservationId, SeatId, SectionName, TicketCode, TicketId, TicketKeys};
use crate::event_store::{Envelope, EventStore, StreamId};

/// The log event types that can cause a notification; the notifier reads no others.
pub(super) const NOTIFYING_EVENTS: [&str; 3] = ["ReservationCompleted", "PaymentRefunded", "EventCancelled"];

/// Event summaries kept at most (the cache is emptied when full; events are never renamed).
const EVENTS_CACHED: usize = 1024;

/// Which notification goes to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) id: NotificationId,
    pub(super) kind: NotificationKind,
    pub(super) customer_id: CustomerId,
}

impl Mark {
    fn new(source: uuid::Uuid, kind: NotificationKind, customer_id: CustomerId) -> Self {
        Self { id: NotificationId::derive(source, kind, customer_id), kind, customer_id }
    }
}

/// A notification waiting for its recipient's address.
pub(super) struct Planned {
    pub(super) mark: Mark,
    pub(super) make: Box<dyn FnOnce(Recipient) -> Notification + Send>,
}

/// What a reservation's stream says, up to a position.
struct ReservationFacts {
    customer_id: CustomerId,
    event_id: EventId,
    section: SectionName,
    /// Seats bought, once completed.
    completed: Option<Vec<SeatId>>,
    /// The payment's amount, else the reservation's total.
    amount: Money,
}

/// Builds notifications from log events.
pub(super) struct Composer {
    store: Arc<dyn EventStore>,
    events: HashMap<EventId, (EventSummary, Vec<SectionName>)>,
    ticket_keys: Option<TicketKeys>,
}

impl Composer {
    pub(super) fn new(store: Arc<dyn EventStore>, ticket_keys: Option<TicketKeys>) -> Self {
        Self { store, events: HashMap::new(), ticket_keys }
    }

    /// The tickets a completed purchase was issued, with the codes that admit (its first
    /// owners' codes: a later transfer replaces them), when this notifier signs tickets.
    fn tickets(
        &self,
        event_id: EventId,
        reservation_id: ReservationId,
        by_section: &[(&SectionName, &[SeatId])],
    ) -> Result<Vec<TicketLine>, NotifierError> {
        let Some(keys) = &self.ticket_keys else { return Ok(Vec::new()) };
        let key = keys.signing_key(event_id).map_err(|source| NotifierError::TicketKey { source })?;
        Ok(by_section
            .iter()
            .flat_map(|(section, seats)| seats.iter().map(move |seat_id| (*section, seat_id)))
            .map(|(section, seat_id)| {
                let ticket_id = TicketId::for_seat(reservation_id, *seat_id);
                let code = TicketCode { event_id, reservation_id, ticket_id, serial: 0 }.sign(&key);
                TicketLine { ticket_id, section: section.clone(), seat_id: *seat_id, code }
            })
            .collect())
    }

    /// The notifications `envelope` calls for (none for most events).
    ///
    /// # Errors
    /// [`NotifierError::Store`] when a stream cannot be read (retry); [`NotifierError::Decode`]
    /// or [`NotifierError::Incomplete`] when the event or a stream it refers to cannot be read
    /// as what it must be (a bad event).
    pub(super) async fn plan(&mut self, envelope: &Envelope) -> Result<Vec<Planned>, NotifierError> {
        if !NOTIFYING_EVENTS.contains(&&*envelope.event_type) {
            return Ok(Vec::new());
        }
        let at = envelope.global_position;
        let action = match TicketingAction::decode(envelope) {
            Ok(action) => action,
            Err(StreamDecodeError::UnknownCategory { .. }) => return Ok(Vec::new()),
            Err(source) => return Err(NotifierError::Decode { global_position: at, source }),
        };
        let source = envelope.event_id;
        match action {
            TicketingAction::Reservation(
                ref completed @ ReservationAction::ReservationCompleted {
                    reservation_id,
                    event_id,
                    ref section,
                    ref seats,
                    ..
                },
            ) => {
                let facts = self.reservation(reservation_id, at).await?;
                let (event, _) = self.event(event_id, at).await?;
                let mark = Mark::new(source, NotificationKind::PurchaseConfirmed, facts.customer_id);
                let id = mark.id;
                let tickets = self.tickets(event_id, reservation_id, &completed.seats_by_section())?;
                let purchase =
                    Purchase { reservation_id, section: section.clone(), seats: seats.clone(), amount: facts.amount };
                let make = move |recipient| {
                    Notification::PurchaseConfirmed(PurchaseConfirmation { id, recipient, event, purchase, tickets })
                };
                Ok(vec![Planned { mark, make: Box::new(make) }])
            }
            TicketingAction::Payment(PaymentAction::PaymentRefunded {
                payment_id,
                reservation_id,
                refund_id,
                amount,
                reason,
                ..
            }) => {
                let facts = self.reservation(reservation_id, at).await?;
                let (event, _) = self.event(facts.event_id, at).await?;
                let mark = Mark::new(source, NotificationKind::RefundSucceeded, facts.customer_id);
                let id = mark.id;
                let make = move |recipient| {
                    Notification::RefundSucceeded(RefundNotice {
                        id,
                        recipient,
                        event,
                        reservation_id,
                        payment_id,
                        refund_id,
                        amount,
                        reason,
                    })
                };
                Ok(vec![Planned { mark, make: Box::new(make) }])
            }
            TicketingAction::Event(EventAction::EventCancelled { event_id, reason, .. }) => {
                let (event, sections) = self.event(event_id, at).await?;
                let holders = self.holders(event_id, &sections, at).await?;
                Ok(holders
                    .into_iter()
                    .map(|(customer_id, purchases)| {
                        let mark = Mark::new(source, NotificationKind::EventCancelled, customer_id);
                        let id = mark.id;
                        let (event, reason) = (event.clone(), reason.clone());
                        let make = move |recipient| {
                            Notification::EventCancelled(CancellationNotice { id, recipient, event, reason, purchases })
                        };
                        Planned { mark, make: Box::new(make) }
                    })
                    .collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The events of `stream` up to position `at`, decoded.
    async fn read(&self, stream: &StreamId, at: u64) -> Result<Vec<TicketingAction>, NotifierError> {
        let envelopes = self.store.load_stream(stream, 1).await?;
        envelopes
            .iter()
            .filter(|e| e.global_position <= at)
            .map(|e| TicketingAction::decode(e).map_err(|source| NotifierError::Decode { global_position: at, source }))
            .collect()
    }

    /// The event's summary and sections, as created.
    async fn event(&mut self, event_id: EventId, at: u64) -> Result<(EventSummary, Vec<SectionName>), NotifierError> {
        if let Some(known) = self.events.get(&event_id) {
            return Ok(known.clone());
        }
        let stream = event_stream(event_id)?;
        let created = self.read(&stream, at).await?.into_iter().find_map(|action| match action {
            TicketingAction::Event(EventAction::EventCreated { details, .. }) => Some(details),
            _ => None,
        });
        let Some(details) = created else {
            return Err(NotifierError::Incomplete { global_position: at, stream, missing: "EventCreated" });
        };
        let summary =
            EventSummary { event_id, name: details.name, venue: details.venue.name().to_owned(), date: details.date };
        let sections: Vec<SectionName> = details.sections.into_iter().map(|s| s.name).collect();
        if self.events.len() >= EVENTS_CACHED {
            self.events.clear();
        }
        self.events.insert(event_id, (summary.clone(), sections.clone()));
        Ok((summary, sections))
    }

    /// What the reservation's stream says up to `at`.
    async fn reservation(&self, reservation_id: ReservationId, at: u64) -> Result<ReservationFacts, NotifierError> {
        let stream = reservation_stream(reservation_id)?;
        let mut facts = None;
        let mut paid = None;
        let mut completed = None;
        for action in self.read(&stream, at).await? {
            match action {
                TicketingAction::Reservation(ReservationAction::ReservationInitiated {
                    customer_id,
                    event_id,
                    section,
                    total,
                    ..
                }) => facts = Some((customer_id, event_id, section, total)),
                TicketingAction::Reservation(
                    ReservationAction::PaymentSucceeded { amount, .. }
                    | ReservationAction::LatePaymentAccepted { amount, .. },
                ) => paid = Some(amount),
                TicketingAction::Reservation(ReservationAction::ReservationCompleted { seats, .. }) => {
                    completed = Some(seats);
                }
                TicketingAction::Reservation(ReservationAction::SeatsRefunded { seats: refunded, .. }) => {
                    // Refunded tickets are held no more; a purchase refunded whole holds nothing.
                    completed = completed
                        .map(|seats: Vec<_>| seats.into_iter().filter(|s| !refunded.contains(s)).collect::<Vec<_>>())
                        .filter(|seats| !seats.is_empty());
                }
                _ => {}
            }
        }
        let Some((customer_id, event_id, section, total)) = facts else {
            return Err(NotifierError::Incomplete { global_position: at, stream, missing: "ReservationInitiated" });
        };
        Ok(ReservationFacts { customer_id, event_id, section, completed, amount: paid.unwrap_or(total) })
    }

    /// The customers holding a completed purchase for the event at position `at` (tickets not
    /// all refunded), each with their purchases (in a stable order). Candidates are the reservations the event's inventory
    /// had not released by then; each is confirmed on its own stream.
    async fn holders(
        &self,
        event_id: EventId,
        sections: &[SectionName],
        at: u64,
    ) -> Result<BTreeMap<CustomerId, Vec<Purchase>>, NotifierError> {
        let mut holders: BTreeMap<CustomerId, Vec<Purchase>> = BTreeMap::new();
        // An order of several sections is live in each of them: it is one purchase.
        let mut seen = std::collections::BTreeSet::new();
        for section in sections {
            let mut live: BTreeMap<ReservationId, bool> = BTreeMap::new();
            for action in self.read(&inventory_stream(event_id, section)?, at).await? {
                match action {
                    TicketingAction::Inventory(
                        InventoryAction::SeatsReserved { reservation_id, .. }
                        | InventoryAction::SeatsConfirmed { reservation_id, .. }
                        | InventoryAction::LateSeatsSold { reservation_id, .. },
                    ) => {
                        live.insert(reservation_id, true);
                    }
                    TicketingAction::Inventory(InventoryAction::SeatsReleased { reservation_id, .. }) => {
                        live.insert(reservation_id, false);
                    }
                    _ => {}
                }
            }
            for reservation_id in live.into_iter().filter_map(|(id, live)| live.then_some(id)) {
                if !seen.insert(reservation_id) {
                    continue;
                }
                let facts = self.reservation(reservation_id, at).await?;
                if let Some(seats) = facts.completed {
                    holders.entry(facts.customer_id).or_default().push(Purchase {
                        reservation_id,
                        section: facts.section,
                        seats,
                        amount: facts.amount,
                    });
                }
            }
        }
        Ok(holders)
    }
}
