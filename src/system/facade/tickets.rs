//! Tickets, from a completed purchase to the door: the signed codes of a purchase's tickets, the
//! scanner kit, check-in and check-out at a gate, offline scans merged later, transfers, and
//! refunds of whole purchases or single tickets that revoke the tickets and put their seats back
//! on sale.

use chrono::{DateTime, Utc};

use super::TicketingSystem;
use crate::aggregates::{
    Direction, OrderTickets, RefundRecord, ReservationAction, ReservationStatus, RevocationReason, ScanAnswer,
    TicketStatus, TicketingAction, TicketsAction, TicketsError, TicketsState, event_stream, tickets_stream,
};
use crate::domain::TicketKeys;
use crate::domain::{
    CustomerId, EventId, GateName, Money, PaymentId, RefundId, ReservationId, ScanId, ScannerKit, SeatId, SectionName,
    TicketCode, TicketId, ensure_storable_text,
};
use crate::system::SystemError;

/// A gate of one event, where codes are scanned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gate {
    /// The event it admits to.
    pub event_id: EventId,
    /// Its name.
    pub name: GateName,
}

/// One ticket of a purchase, with the code that admits its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    /// The ticket.
    pub ticket_id: TicketId,
    /// The purchase.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// The seat.
    pub seat_id: SeatId,
    /// Who holds it.
    pub holder: CustomerId,
    /// What it was sold for.
    pub price: Money,
    /// Valid or revoked.
    pub status: TicketStatus,
    /// The code to print or put in a wallet: signed by the event's key, checked offline by a
    /// [`ScannerKit`]. A transfer replaces it.
    pub code: String,
}

/// The answer to a scan at a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckIn {
    /// Let in.
    Admitted {
        /// The ticket.
        ticket_id: TicketId,
        /// Its section.
        section: SectionName,
        /// Its seat.
        seat_id: SeatId,
    },
    /// Already inside since `at`, through `gate`: turned away.
    AlreadyAdmitted {
        /// The ticket.
        ticket_id: TicketId,
        /// Where it was admitted.
        gate: GateName,
        /// When.
        at: DateTime<Utc>,
    },
    /// Let out (a later entry admits again).
    Exited {
        /// The ticket.
        ticket_id: TicketId,
    },
    /// An exit scan of a ticket whose holder is not inside.
    NotInside {
        /// The ticket.
        ticket_id: TicketId,
    },
    /// The code no longer admits: refunded, cancelled, or transferred to someone else.
    Revoked {
        /// The ticket.
        ticket_id: TicketId,
        /// Why.
        reason: RevocationReason,
    },
    /// Not a genuine ticket code.
    Invalid,
    /// A genuine code of another event.
    WrongEvent {
        /// The event it is for.
        event_id: EventId,
    },
}

impl CheckIn {
    /// Whether the holder goes through (admitted or let out).
    #[must_use]
    pub const fn passes(&self) -> bool {
        matches!(self, Self::Admitted { .. } | Self::Exited { .. })
    }
}

/// A scan a gate made without a connection and let the holder through on (its [`ScannerKit`]
/// said the code was valid), to be recorded later with [`TicketingSystem::merge_offline_scans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineScan {
    /// The code scanned.
    pub code: String,
    /// Where.
    pub gate: Gate,
    /// The scanner's id for the scan.
    pub scan_id: ScanId,
    /// Which way the holder went.
    pub direction: Direction,
    /// When.
    pub scanned_at: DateTime<Utc>,
}

/// What [`TicketingSystem::refund_tickets`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefundRequest {
    /// The completed purchase.
    pub reservation_id: ReservationId,
    /// The tickets to refund; empty for every ticket not refunded yet (the whole order).
    pub tickets: Vec<TicketId>,
    /// Why (kept in the log; a NUL character is refused).
    pub reason: String,
    /// Makes retries safe: the same purchase and key are the same refund, made once. `None`: a
    /// new refund. A key with a NUL character is refused.
    pub idempotency_key: Option<String>,
}

/// What a ticket refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefund {
    /// The purchase.
    pub reservation_id: ReservationId,
    /// The refund, its id the provider's idempotency key.
    pub refund_id: RefundId,
    /// The money going back: the tickets' price, or what was left of the payment if less.
    pub amount: Money,
    /// The refund as the payment records it (`None` when nothing was left to give back): its
    /// status says whether the provider has confirmed it.
    pub refund: Option<RefundRecord>,
}

impl TicketingSystem {
    fn ticket_keys(&self) -> Result<&TicketKeys, SystemError> {
        self.inner.ticket_keys.as_ref().ok_or(SystemError::NoTicketKeys { variable: TicketKeys::VARIABLE })
    }

    async fn order_tickets(&self, reservation_id: ReservationId, fresh: bool) -> Result<TicketsState, SystemError> {
        let stream = tickets_stream(reservation_id)?;
        let state = self.inner.router.tickets.read(&stream, fresh, |s: Option<&TicketsState>| s.cloned()).await;
        Ok(state.map_err(|e| SystemError::from(e.map_action(TicketingAction::Tickets)))?.unwrap_or_default())
    }

    /// The tickets of a completed purchase, waiting for the saga to issue them when the purchase
    /// has just completed; none for a purchase that did not complete.
    async fn issued(&self, reservation_id: ReservationId) -> Result<Option<OrderTickets>, SystemError> {
        if let Some(order) = self.order_tickets(reservation_id, false).await?.order {
            return Ok(Some(order));
        }
        let reservation = self.reservation_after_saga(reservation_id).await?;
        if reservation.status != ReservationStatus::Completed {
            return Ok(None);
        }
        let committed = self.inner.store.last_committed_position().await?;
        self.handled(committed, self.inner.reply_timeout).await?;
        Ok(self.order_tickets(reservation_id, true).await?.order)
    }

    fn issued_ticket(
        keys: &TicketKeys,
        order: &OrderTickets,
        ticket: &crate::aggregates::Ticket,
    ) -> Result<IssuedTicket, SystemError> {
        let code = TicketCode {
            event_id: order.event_id,
            reservation_id: order.reservation_id,
            ticket_id: ticket.ticket_id,
            serial: ticket.serial,
        };
        Ok(IssuedTicket {
            ticket_id: ticket.ticket_id,
            reservation_id: order.reservation_id,
            event_id: order.event_id,
            section: order.section_of(ticket).clone(),
            seat_id: ticket.seat_id,
            holder: ticket.holder,
            price: ticket.price,
            status: ticket.status.clone(),
            code: code.sign(&keys.signing_key(order.event_id)?),
        })
    }

    /// The tickets of a purchase, one per seat, with their codes (empty until it completed).
    /// Right after [`TicketingSystem::pay`] returns they may still be on their way from the
    /// saga: this waits for them.
    ///
    /// # Errors
    /// [`SystemError::NoTicketKeys`] without ticket keys, [`SystemError::UnknownReservation`],
    /// [`SystemError::Lagging`] when the saga does not issue them within the reply timeout.
    pub async fn tickets(&self, reservation_id: ReservationId) -> Result<Vec<IssuedTicket>, SystemError> {
        let keys = self.ticket_keys()?;
        let Some(order) = self.issued(reservation_id).await? else { return Ok(Vec::new()) };
        order.tickets.iter().map(|ticket| Self::issued_ticket(keys, &order, ticket)).collect()
    }

    /// What scanners of `event_id` need to check codes offline: the event's public key and every
    /// code revoked so far. Reading the revocations visits every purchase of the event; fetch
    /// the kit before the doors open, and again to pick up later revocations.
    ///
    /// # Errors
    /// [`SystemError::NoTicketKeys`], [`SystemError::Storage`].
    pub async fn scanner_kit(&self, event_id: EventId) -> Result<ScannerKit, SystemError> {
        let public_key = self.ticket_keys()?.public_key(event_id)?;
        let mut revoked = std::collections::BTreeSet::new();
        for reservation_id in self.sold_reservations(event_id).await? {
            revoked.extend(self.order_tickets(reservation_id, true).await?.revoked);
        }
        Ok(ScannerKit { event_id, public_key, revoked })
    }

    /// Every reservation that bought seats of `event_id` (confirmed holds of its inventories).
    async fn sold_reservations(&self, event_id: EventId) -> Result<Vec<ReservationId>, SystemError> {
        let holds = self.inner.router.holds_of_event(event_id).await?;
        Ok(holds
            .into_iter()
            .filter(|(_, status)| *status == crate::aggregates::HoldStatus::Confirmed)
            .map(|(id, _)| id)
            .collect())
    }

    /// Scans `code` at `gate` to let its holder in. Exactly one of several gates scanning one
    /// ticket at once admits it, in this process or across processes. Every scan is recorded
    /// with its answer; a scan retried with the same `scan_id` gets the same answer.
    ///
    /// # Errors
    /// [`SystemError::NoTicketKeys`]; [`SystemError::Tickets`] for a `scan_id` already used for
    /// another ticket; storage errors. A bad code is an answer ([`CheckIn::Invalid`]), not an
    /// error.
    pub async fn check_in(&self, code: &str, gate: &Gate, scan_id: ScanId) -> Result<CheckIn, SystemError> {
        self.scan(code, gate, scan_id, Direction::Entry, None).await
    }

    /// Scans `code` at `gate` to let its holder out; a later [`TicketingSystem::check_in`]
    /// admits again.
    ///
    /// # Errors
    /// As [`TicketingSystem::check_in`].
    pub async fn check_out(&self, code: &str, gate: &Gate, scan_id: ScanId) -> Result<CheckIn, SystemError> {
        self.scan(code, gate, scan_id, Direction::Exit, None).await
    }

    /// Records scans gates made offline, earliest first, and answers each as it would have been
    /// answered online at that point of the log. Every answer that does not pass
    /// ([`CheckIn::passes`]) is a conflict to look into: the scanner let someone through whom
    /// the system would have turned away (a second entry on one ticket, a code revoked after the
    /// kit was loaded, a forged code). Merging the same scans again changes nothing and gives
    /// the same answers.
    ///
    /// # Errors
    /// As [`TicketingSystem::check_in`], for the first scan that fails (those before it are
    /// recorded; merge again to go on).
    pub async fn merge_offline_scans(
        &self,
        mut scans: Vec<OfflineScan>,
    ) -> Result<Vec<(ScanId, CheckIn)>, SystemError> {
        scans.sort_by_key(|scan| scan.scanned_at);
        let mut answers = Vec::with_capacity(scans.len());
        for scan in scans {
            let answer = self.scan(&scan.code, &scan.gate, scan.scan_id, scan.direction, Some(scan.scanned_at)).await?;
            answers.push((scan.scan_id, answer));
        }
        Ok(answers)
    }

    async fn scan(
        &self,
        code: &str,
        gate: &Gate,
        scan_id: ScanId,
        direction: Direction,
        scanned_at: Option<DateTime<Utc>>,
    ) -> Result<CheckIn, SystemError> {
        let keys = self.ticket_keys()?;
        let Ok(claimed) = TicketCode::claimed(code) else { return Ok(CheckIn::Invalid) };
        let Ok(ticket) = TicketCode::verify(code, &keys.verifying_key(claimed.event_id)?) else {
            return Ok(CheckIn::Invalid);
        };
        if ticket.event_id != gate.event_id {
            return Ok(CheckIn::WrongEvent { event_id: ticket.event_id });
        }
        let command = TicketsAction::ScanTicket {
            reservation_id: ticket.reservation_id,
            ticket_id: ticket.ticket_id,
            serial: ticket.serial,
            gate: gate.name.clone(),
            scan_id,
            direction,
            scanned_at,
        };
        match self.command(TicketingAction::Tickets(command), self.context()).await {
            Ok(_) => {}
            Err(SystemError::Tickets(TicketsError::NotIssued { .. } | TicketsError::UnknownTicket { .. })) => {
                return Ok(CheckIn::Invalid);
            }
            Err(error) => return Err(error),
        }
        let state = self.order_tickets(ticket.reservation_id, false).await?;
        let recorded = state.scans.get(&scan_id).map(|scan| scan.answer.clone());
        let seat =
            state.order.as_ref().and_then(|o| o.ticket(ticket.ticket_id).map(|t| (o.section_of(t).clone(), t.seat_id)));
        let ticket_id = ticket.ticket_id;
        Ok(match (recorded, seat) {
            (Some(ScanAnswer::Admitted), Some((section, seat_id))) => CheckIn::Admitted { ticket_id, section, seat_id },
            (Some(ScanAnswer::AlreadyAdmitted { gate, at }), _) => CheckIn::AlreadyAdmitted { ticket_id, gate, at },
            (Some(ScanAnswer::Exited), _) => CheckIn::Exited { ticket_id },
            (Some(ScanAnswer::NotInside), _) => CheckIn::NotInside { ticket_id },
            (Some(ScanAnswer::Revoked { reason }), _) => CheckIn::Revoked { ticket_id, reason },
            _ => CheckIn::Invalid,
        })
    }

    /// Gives a ticket to another customer, until the event's transfer cut-off
    /// ([`SalesPolicy::transfer_cutoff`](crate::aggregates::SalesPolicy::transfer_cutoff) before
    /// it starts). The old code is revoked and the new holder's code returned; the log keeps
    /// the trail. Transferring to the current holder changes nothing.
    ///
    /// # Errors
    /// [`SystemError::NoTicketKeys`]; [`SystemError::Tickets`] for an unknown or revoked ticket
    /// or after the cut-off; [`SystemError::UnknownReservation`].
    pub async fn transfer_ticket(
        &self,
        reservation_id: ReservationId,
        ticket_id: TicketId,
        to: CustomerId,
    ) -> Result<IssuedTicket, SystemError> {
        let keys = self.ticket_keys()?;
        let order = self
            .issued(reservation_id)
            .await?
            .ok_or(SystemError::Tickets(TicketsError::NotIssued { reservation_id }))?;
        let until = self
            .inner
            .router
            .events
            .read(&event_stream(order.event_id)?, false, |e| {
                e.and_then(|e| e.details.as_ref()).map(|d| {
                    let cutoff = chrono::Duration::from_std(d.policy.transfer_cutoff).unwrap_or(chrono::Duration::MAX);
                    d.date.checked_sub_signed(cutoff).unwrap_or(DateTime::<Utc>::MIN_UTC)
                })
            })
            .await
            .map_err(|e| SystemError::from(e.map_action(TicketingAction::Event)))?
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let transfer = TicketsAction::TransferTicket { reservation_id, ticket_id, to, until };
        self.command(TicketingAction::Tickets(transfer), self.context()).await?;
        let order = self.order_tickets(reservation_id, false).await?.order;
        let ticket = order.as_ref().and_then(|o| o.ticket(ticket_id).map(|t| (o, t)));
        let (order, ticket) =
            ticket.ok_or(SystemError::Tickets(TicketsError::UnknownTicket { reservation_id, ticket_id, serial: 0 }))?;
        Self::issued_ticket(keys, order, ticket)
    }

    /// Refunds tickets of a completed purchase, or all of them: their codes are revoked, their
    /// seats go back on sale, their price goes back to the customer through the payment gateway
    /// (or what is left of the payment, if part of it was refunded already), and the sales and
    /// customer figures fall accordingly. The refund is recorded and sent to the gateway before
    /// this returns.
    ///
    /// # Errors
    /// [`SystemError::Invalid`] for a reason or key with a NUL character;
    /// [`SystemError::UnknownReservation`]; [`SystemError::Reservation`] for a purchase that did
    /// not complete, a ticket not of it or already refunded, or nothing left to refund;
    /// [`SystemError::Lagging`] when the saga does not catch up within the reply timeout.
    pub async fn refund_tickets(&self, request: TicketRefundRequest) -> Result<TicketRefund, SystemError> {
        let TicketRefundRequest { reservation_id, tickets, reason, idempotency_key } = request;
        ensure_storable_text("refund reason", &reason)?;
        if let Some(key) = &idempotency_key {
            ensure_storable_text("idempotency key", key)?;
        }
        let reservation = self.reservation_after_saga(reservation_id).await?;
        let payment_id = reservation.payment_id.unwrap_or_else(|| PaymentId::for_reservation(reservation_id));
        let refund_id = match &idempotency_key {
            Some(key) => RefundId::for_payment(payment_id, &format!("tickets:{key}")),
            None => RefundId::new_v4(),
        };
        let seats = if tickets.is_empty() {
            Vec::new()
        } else {
            let order = self.issued(reservation_id).await?;
            let seat_of = |ticket_id: TicketId| order.as_ref().and_then(|o| o.ticket(ticket_id)).map(|t| t.seat_id);
            tickets
                .iter()
                .map(|ticket_id| {
                    seat_of(*ticket_id).ok_or(SystemError::Tickets(TicketsError::UnknownTicket {
                        reservation_id,
                        ticket_id: *ticket_id,
                        serial: 0,
                    }))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let price =
            if seats.is_empty() { reservation.kept_price() } else { reservation.price_of_seats(seats.iter().copied()) }
                .map_err(SystemError::Invalid)?;
        let left = match self.read_payment(reservation_id, true).await? {
            Some(payment) => payment.refundable().map_err(SystemError::Invalid)?,
            None => Money::new(0, price.currency()),
        };
        let amount = if left.minor_units() < price.minor_units() { left } else { price };
        let refund = ReservationAction::RefundSeats { reservation_id, seats, refund_id, amount, reason };
        let committed = self.command(TicketingAction::Reservation(refund), self.context()).await?;
        if let Some(refunded) = committed.last_position {
            // The saga's steps (revoke, return the seats, request the refund), then the gateway
            // call that follows the request.
            self.handled(refunded, self.inner.reply_timeout).await?;
            let requested = self.inner.store.last_committed_position().await?;
            self.handled(requested, self.inner.reply_timeout).await?;
        }
        let refund = self.read_payment(reservation_id, false).await?.and_then(|p| p.refund(refund_id).cloned());
        let amount = refund.as_ref().map_or(amount, |r| r.amount);
        Ok(TicketRefund { reservation_id, refund_id, amount, refund })
    }
}
