//! The Tickets aggregate: the tickets of one completed purchase, one per seat, and everything
//! that happens to them at and before the door: scans (entry and exit), revocations (refund,
//! event cancelled) and transfers to another customer.
//!
//! One stream per purchase (`tickets-<reservation id>`), not per ticket: a purchase's tickets are
//! issued in one append, and two gates scanning the same ticket at once are decided one after the
//! other on that stream (in another process, the append's expected version makes the second
//! decide again on the first's outcome), so a ticket is admitted exactly once.
//!
//! Every scan is recorded with its answer, so a scan retried under the same [`ScanId`] gets the
//! first answer, and the log keeps who came in where and when. A ticket's code carries its owner
//! serial: a transfer moves it to the next serial, and a code with an older serial is answered as
//! revoked.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::order_line::LineSeats;

use crate::domain::{
    CustomerId, EventId, GateName, Money, ReservationId, RevokedCode, ScanId, SeatId, SectionName, TicketId,
};
use crate::framework::{Clock, Effects, Message, MessageKind, Reducer, event_sourced};

/// Which way a scan lets the holder through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Coming in.
    Entry,
    /// Going out (a later entry admits again).
    Exit,
}

/// Why a ticket's code no longer admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RevocationReason {
    /// The ticket was refunded; its seat is back on sale.
    Refunded,
    /// The event was cancelled.
    EventCancelled,
    /// The ticket was transferred to another customer: this owner's code is replaced.
    Transferred,
}

/// Whether a ticket admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketStatus {
    /// Its current code admits.
    Valid,
    /// It admits no more.
    Revoked {
        /// Why.
        reason: RevocationReason,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        at: DateTime<Utc>,
    },
}

/// A ticket's last admission while its holder is inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The gate.
    pub gate: GateName,
    /// When.
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    pub at: DateTime<Utc>,
}

/// One ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket, [`TicketId::for_seat`].
    pub ticket_id: TicketId,
    /// Its seat.
    pub seat_id: SeatId,
    /// Its seat's section, when it is not the order's first section (an order of several
    /// sections); see [`OrderTickets::section_of`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<SectionName>,
    /// Who holds it now.
    pub holder: CustomerId,
    /// What it was sold for.
    pub price: Money,
    /// The current owner's serial: the code with this serial admits.
    pub serial: u32,
    /// Valid or revoked.
    pub status: TicketStatus,
    /// Set while the holder is inside (admitted and not exited).
    pub inside: Option<Admission>,
}

/// The tickets of one purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTickets {
    /// The purchase.
    pub reservation_id: ReservationId,
    /// The event.
    pub event_id: EventId,
    /// The section (the first line's, for an order of several sections).
    pub section: SectionName,
    /// Its tickets, in seat order (line by line).
    pub tickets: Vec<Ticket>,
}

impl OrderTickets {
    /// The section of `ticket`'s seat.
    #[must_use]
    pub fn section_of<'a>(&'a self, ticket: &'a Ticket) -> &'a SectionName {
        ticket.section.as_ref().unwrap_or(&self.section)
    }

    /// The ticket `ticket_id`.
    #[must_use]
    pub fn ticket(&self, ticket_id: TicketId) -> Option<&Ticket> {
        self.tickets.iter().find(|t| t.ticket_id == ticket_id)
    }

    fn ticket_mut(&mut self, ticket_id: TicketId) -> Option<&mut Ticket> {
        self.tickets.iter_mut().find(|t| t.ticket_id == ticket_id)
    }
}

/// What a scan was answered, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanAnswer {
    /// Let in.
    Admitted,
    /// Already inside: admitted at `gate` at `at` and not out since.
    AlreadyAdmitted {
        /// Where it was admitted.
        gate: GateName,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        at: DateTime<Utc>,
    },
    /// Let out.
    Exited,
    /// An exit scan of a ticket whose holder is not inside.
    NotInside,
    /// The code no longer admits.
    Revoked {
        /// Why.
        reason: RevocationReason,
    },
}

impl ScanAnswer {
    /// Whether the holder was let through.
    #[must_use]
    pub const fn passes(&self) -> bool {
        matches!(self, Self::Admitted | Self::Exited)
    }
}

/// A recorded scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// The ticket scanned.
    pub ticket_id: TicketId,
    /// The answer.
    pub answer: ScanAnswer,
}

/// State of one Tickets stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TicketsState {
    /// Set by `TicketsIssued`.
    pub order: Option<OrderTickets>,
    /// Every scan recorded, by scan id.
    pub scans: HashMap<ScanId, ScanRecord>,
    /// Codes revoked so far (refunds, cancellation, transferred-away serials).
    pub revoked: Vec<RevokedCode>,
}

/// Why a Tickets command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TicketsError {
    /// No tickets were issued for this purchase.
    #[error("no tickets issued for reservation {reservation_id}")]
    NotIssued {
        /// The purchase.
        reservation_id: ReservationId,
    },
    /// The tickets of this purchase were issued with other details.
    #[error("tickets of reservation {reservation_id} were issued with other details")]
    AlreadyIssued {
        /// The purchase.
        reservation_id: ReservationId,
    },
    /// The purchase has no such ticket (or no such owner serial of it).
    #[error("reservation {reservation_id} has no ticket {ticket_id} with serial {serial}")]
    UnknownTicket {
        /// The purchase.
        reservation_id: ReservationId,
        /// The ticket.
        ticket_id: TicketId,
        /// The serial asked for.
        serial: u32,
    },
    /// The scan id was used for another ticket.
    #[error("scan {scan_id} was already used for ticket {ticket_id}")]
    ScanIdReused {
        /// The scan.
        scan_id: ScanId,
        /// The ticket it was used for.
        ticket_id: TicketId,
    },
    /// A revoked ticket cannot be transferred.
    #[error("ticket {ticket_id} is revoked ({reason:?})")]
    Revoked {
        /// The ticket.
        ticket_id: TicketId,
        /// Why.
        reason: RevocationReason,
    },
    /// Transfers of this event closed.
    #[error("ticket {ticket_id}: transfers closed at {until}, now is {now}")]
    TransferClosed {
        /// The ticket.
        ticket_id: TicketId,
        /// The cut-off.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        until: DateTime<Utc>,
        /// The clock's time.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        now: DateTime<Utc>,
    },
}

/// Commands, events and the rejection of the Tickets aggregate.
///
/// `IssueTickets` and `RevokeTickets` come from the saga (a completed purchase, a refund, a
/// cancelled event); `ScanTicket` from gates; `TransferTicket` from the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketsAction {
    /// Issue one ticket per seat of a completed purchase: one `TicketsIssued` per line of the
    /// order. A redelivery is a no-op.
    IssueTickets {
        /// The purchase.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// Who bought.
        holder: CustomerId,
        /// The seats sold, per line (section and price).
        lines: Vec<LineSeats>,
    },
    /// A ticket's code was scanned at a gate (`scanned_at` is set for a scan made offline and
    /// merged later; the holder was let through or turned away by the scanner then).
    ScanTicket {
        /// The purchase.
        reservation_id: ReservationId,
        /// The ticket.
        ticket_id: TicketId,
        /// The serial of the code scanned.
        serial: u32,
        /// Where.
        gate: GateName,
        /// The scanner's id for this scan.
        scan_id: ScanId,
        /// Which way.
        direction: Direction,
        /// When an offline scan happened.
        scanned_at: Option<DateTime<Utc>>,
    },
    /// Revoke these tickets. Already revoked ones are skipped.
    RevokeTickets {
        /// The purchase.
        reservation_id: ReservationId,
        /// The tickets.
        tickets: Vec<TicketId>,
        /// Why.
        reason: RevocationReason,
    },
    /// Give a ticket to another customer: its code is replaced by the next serial's.
    TransferTicket {
        /// The purchase.
        reservation_id: ReservationId,
        /// The ticket.
        ticket_id: TicketId,
        /// The new holder.
        to: CustomerId,
        /// The event's transfer cut-off.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        until: DateTime<Utc>,
    },
    /// The tickets of one line of a purchase exist (one such event per section of the order).
    #[serde(rename = "TicketsIssued")]
    TicketsIssued {
        /// The purchase.
        reservation_id: ReservationId,
        /// The event.
        event_id: EventId,
        /// The section.
        section: SectionName,
        /// Who bought.
        holder: CustomerId,
        /// Price of one seat.
        unit_price: Money,
        /// One ticket per seat.
        tickets: Vec<(TicketId, SeatId)>,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        issued_at: DateTime<Utc>,
    },
    /// A scan and its answer.
    #[serde(rename = "TicketScanned")]
    TicketScanned {
        /// The purchase.
        reservation_id: ReservationId,
        /// The ticket.
        ticket_id: TicketId,
        /// The scanner's id for it.
        scan_id: ScanId,
        /// Where.
        gate: GateName,
        /// Which way.
        direction: Direction,
        /// When it happened.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        at: DateTime<Utc>,
        /// Made offline and merged later.
        offline: bool,
        /// The answer.
        answer: ScanAnswer,
    },
    /// Codes revoked.
    #[serde(rename = "TicketsRevoked")]
    TicketsRevoked {
        /// The purchase.
        reservation_id: ReservationId,
        /// The codes.
        codes: Vec<RevokedCode>,
        /// Why.
        reason: RevocationReason,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        revoked_at: DateTime<Utc>,
    },
    /// A ticket changed hands; the code of `serial - 1` is revoked.
    #[serde(rename = "TicketTransferred")]
    TicketTransferred {
        /// The purchase.
        reservation_id: ReservationId,
        /// The ticket.
        ticket_id: TicketId,
        /// The previous holder.
        from: CustomerId,
        /// The new holder.
        to: CustomerId,
        /// The new owner's serial.
        serial: u32,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        transferred_at: DateTime<Utc>,
    },
    /// A command was refused.
    Rejected(TicketsError),
}

impl TicketsAction {
    /// The purchase this action addresses (`None` for a rejection).
    #[must_use]
    pub fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Self::IssueTickets { reservation_id, .. }
            | Self::ScanTicket { reservation_id, .. }
            | Self::RevokeTickets { reservation_id, .. }
            | Self::TransferTicket { reservation_id, .. }
            | Self::TicketsIssued { reservation_id, .. }
            | Self::TicketScanned { reservation_id, .. }
            | Self::TicketsRevoked { reservation_id, .. }
            | Self::TicketTransferred { reservation_id, .. } => Some(*reservation_id),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for TicketsAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::IssueTickets { .. }
            | Self::ScanTicket { .. }
            | Self::RevokeTickets { .. }
            | Self::TransferTicket { .. } => MessageKind::Command,
            Self::Rejected(_) => MessageKind::Rejection,
            _ => MessageKind::Event,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::IssueTickets { .. } => "IssueTickets",
            Self::ScanTicket { .. } => "ScanTicket",
            Self::RevokeTickets { .. } => "RevokeTickets",
            Self::TransferTicket { .. } => "TransferTicket",
            Self::TicketsIssued { .. } => "TicketsIssued",
            Self::TicketScanned { .. } => "TicketScanned",
            Self::TicketsRevoked { .. } => "TicketsRevoked",
            Self::TicketTransferred { .. } => "TicketTransferred",
            Self::Rejected(_) => "TicketsRejected",
        }
    }
}

/// Dependencies of the Tickets reducer.
#[derive(Debug, Clone)]
pub struct TicketsEnv {
    /// Timestamps of scans, revocations and transfers; the transfer cut-off.
    pub clock: Arc<dyn Clock>,
}

impl TicketsEnv {
    /// An environment reading `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// The Tickets reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketsReducer;

impl Reducer for TicketsReducer {
    type State = TicketsState;
    type Action = TicketsAction;
    type Env = TicketsEnv;

    /// A purchase's tickets start with `IssueTickets`.
    fn creates(action: &TicketsAction) -> bool {
        matches!(action, TicketsAction::IssueTickets { .. })
    }

    /// Issued tickets expect nothing more from the saga; a scan at the door, a transfer or a
    /// revocation comes much later, or never, and reloads the stream.
    fn at_rest(state: &TicketsState) -> bool {
        state.order.is_some()
    }

    fn reduce(&self, state: &mut TicketsState, action: TicketsAction, env: &TicketsEnv) -> Effects<TicketsAction> {
        event_sourced(state, action, |s, a| decide(s, a, env.clock.now()), apply, TicketsAction::Rejected)
    }
}

fn decide(
    state: &TicketsState,
    command: TicketsAction,
    now: DateTime<Utc>,
) -> Result<SmallVec<[TicketsAction; 2]>, TicketsError> {
    let TicketsAction::IssueTickets { reservation_id, event_id, holder, lines } = command else {
        return decide_one(state, command, now).map(Option::into_iter).map(Iterator::collect);
    };
    if let Some(order) = &state.order {
        let same = order.event_id == event_id
            && order.tickets.iter().map(|t| t.seat_id).eq(lines.iter().flat_map(|l| l.seats.iter().copied()));
        return if same { Ok(SmallVec::new()) } else { Err(TicketsError::AlreadyIssued { reservation_id }) };
    }
    Ok(lines
        .into_iter()
        .filter(|line| !line.seats.is_empty())
        .map(|LineSeats { section, unit_price, seats }| TicketsAction::TicketsIssued {
            reservation_id,
            event_id,
            section,
            holder,
            unit_price,
            tickets: seats.into_iter().map(|seat| (TicketId::for_seat(reservation_id, seat), seat)).collect(),
            issued_at: now,
        })
        .collect())
}

/// Every command but `IssueTickets`: at most one event.
fn decide_one(
    state: &TicketsState,
    command: TicketsAction,
    now: DateTime<Utc>,
) -> Result<Option<TicketsAction>, TicketsError> {
    let Some(reservation_id) = command.reservation_id() else { return Ok(None) };
    let order = state.order.as_ref().ok_or(TicketsError::NotIssued { reservation_id })?;
    let unknown = |ticket_id, serial| TicketsError::UnknownTicket { reservation_id, ticket_id, serial };
    match command {
        TicketsAction::ScanTicket { ticket_id, serial, gate, scan_id, direction, scanned_at, .. } => {
            if let Some(earlier) = state.scans.get(&scan_id) {
                return if earlier.ticket_id == ticket_id {
                    Ok(None)
                } else {
                    Err(TicketsError::ScanIdReused { scan_id, ticket_id: earlier.ticket_id })
                };
            }
            let ticket = order.ticket(ticket_id).filter(|t| serial <= t.serial).ok_or(unknown(ticket_id, serial))?;
            let answer = match (&ticket.status, direction, &ticket.inside) {
                (TicketStatus::Revoked { reason, .. }, _, _) => ScanAnswer::Revoked { reason: *reason },
                _ if serial < ticket.serial => ScanAnswer::Revoked { reason: RevocationReason::Transferred },
                (TicketStatus::Valid, Direction::Entry, Some(inside)) => {
                    ScanAnswer::AlreadyAdmitted { gate: inside.gate.clone(), at: inside.at }
                }
                (TicketStatus::Valid, Direction::Entry, None) => ScanAnswer::Admitted,
                (TicketStatus::Valid, Direction::Exit, Some(_)) => ScanAnswer::Exited,
                (TicketStatus::Valid, Direction::Exit, None) => ScanAnswer::NotInside,
            };
            Ok(Some(TicketsAction::TicketScanned {
                reservation_id,
                ticket_id,
                scan_id,
                gate,
                direction,
                at: scanned_at.unwrap_or(now),
                offline: scanned_at.is_some(),
                answer,
            }))
        }
        TicketsAction::RevokeTickets { tickets, reason, .. } => {
            let mut codes = Vec::with_capacity(tickets.len());
            for ticket_id in tickets {
                let ticket = order.ticket(ticket_id).ok_or(unknown(ticket_id, 0))?;
                if ticket.status == TicketStatus::Valid {
                    codes.push(RevokedCode { ticket_id, serial: ticket.serial });
                }
            }
            Ok((!codes.is_empty()).then_some(TicketsAction::TicketsRevoked {
                reservation_id,
                codes,
                reason,
                revoked_at: now,
            }))
        }
        TicketsAction::TransferTicket { ticket_id, to, until, .. } => {
            let ticket = order.ticket(ticket_id).ok_or(unknown(ticket_id, 0))?;
            if let TicketStatus::Revoked { reason, .. } = ticket.status {
                return Err(TicketsError::Revoked { ticket_id, reason });
            }
            if ticket.holder == to {
                return Ok(None);
            }
            if now >= until {
                return Err(TicketsError::TransferClosed { ticket_id, until, now });
            }
            Ok(Some(TicketsAction::TicketTransferred {
                reservation_id,
                ticket_id,
                from: ticket.holder,
                to,
                serial: ticket.serial.saturating_add(1),
                transferred_at: now,
            }))
        }
        _ => Ok(None),
    }
}

fn apply(state: &mut TicketsState, event: &TicketsAction) {
    if let TicketsAction::TicketsIssued { reservation_id, event_id, section, holder, unit_price, tickets, .. } = event {
        // The first line's event starts the order; a further line's adds its tickets.
        let order = state.order.get_or_insert_with(|| OrderTickets {
            reservation_id: *reservation_id,
            event_id: *event_id,
            section: section.clone(),
            tickets: Vec::new(),
        });
        let own_section = (order.section != *section).then(|| section.clone());
        order.tickets.extend(tickets.iter().map(|(ticket_id, seat_id)| Ticket {
            ticket_id: *ticket_id,
            seat_id: *seat_id,
            section: own_section.clone(),
            holder: *holder,
            price: *unit_price,
            serial: 0,
            status: TicketStatus::Valid,
            inside: None,
        }));
        return;
    }
    let Some(order) = state.order.as_mut() else { return };
    match event {
        TicketsAction::TicketScanned { ticket_id, scan_id, gate, at, answer, .. } => {
            if let Some(ticket) = order.ticket_mut(*ticket_id) {
                match answer {
                    ScanAnswer::Admitted => ticket.inside = Some(Admission { gate: gate.clone(), at: *at }),
                    ScanAnswer::Exited => ticket.inside = None,
                    _ => {}
                }
            }
            state.scans.insert(*scan_id, ScanRecord { ticket_id: *ticket_id, answer: answer.clone() });
        }
        TicketsAction::TicketsRevoked { codes, reason, revoked_at, .. } => {
            for code in codes {
                if let Some(ticket) = order.ticket_mut(code.ticket_id) {
                    ticket.status = TicketStatus::Revoked { reason: *reason, at: *revoked_at };
                }
            }
            state.revoked.extend(codes.iter().copied());
        }
        TicketsAction::TicketTransferred { ticket_id, to, serial, .. } => {
            if let Some(ticket) = order.ticket_mut(*ticket_id) {
                state.revoked.push(RevokedCode { ticket_id: *ticket_id, serial: ticket.serial });
                ticket.holder = *to;
                ticket.serial = *serial;
                ticket.inside = None;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::domain::Currency;
    use crate::framework::Effect;
    use crate::framework::FixedClock;
    use chrono::TimeZone;

    /// The reducer over one state: what a command persisted, or why it was refused.
    struct Stream {
        state: TicketsState,
        env: TicketsEnv,
    }

    impl Stream {
        fn when(&mut self, command: TicketsAction) -> Result<Vec<TicketsAction>, TicketsError> {
            let before = self.state.clone();
            match TicketsReducer.reduce(&mut self.state, command, &self.env).into_vec().as_slice() {
                [] => Ok(Vec::new()),
                [Effect::Persist(events)] => Ok(events.to_vec()),
                [Effect::Reject(rejection)] => {
                    assert_eq!(self.state, before, "a refusal changes nothing");
                    match rejection.as_ref() {
                        TicketsAction::Rejected(error) => Err(error.clone()),
                        other => panic!("not a rejection: {other:?}"),
                    }
                }
                other => panic!("unexpected effects {other:?}"),
            }
        }
        fn state(&self) -> &TicketsState {
            &self.state
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 19, 0, 0).unwrap()
    }
    fn rid() -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(1))
    }
    fn seats() -> Vec<SeatId> {
        (0..2).map(|i| SeatId::derive(EventId::from_uuid(uuid::Uuid::from_u128(2)), "Stalls", i)).collect()
    }
    fn ticket(i: usize) -> TicketId {
        TicketId::for_seat(rid(), seats()[i])
    }
    fn buyer() -> CustomerId {
        CustomerId::from_uuid(uuid::Uuid::from_u128(3))
    }
    fn gate(name: &str) -> GateName {
        GateName::new(name).unwrap()
    }
    fn issue() -> TicketsAction {
        TicketsAction::IssueTickets {
            reservation_id: rid(),
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(2)),
            holder: buyer(),
            lines: vec![LineSeats {
                section: SectionName::new("Stalls").unwrap(),
                unit_price: Money::new(2_500, Currency::EUR),
                seats: seats(),
            }],
        }
    }
    fn scan(i: usize, serial: u32, scan: u128, direction: Direction) -> TicketsAction {
        TicketsAction::ScanTicket {
            reservation_id: rid(),
            ticket_id: ticket(i),
            serial,
            gate: gate("North"),
            scan_id: ScanId::from_uuid(uuid::Uuid::from_u128(scan)),
            direction,
            scanned_at: None,
        }
    }
    fn answer(test: &Stream, scan: u128) -> ScanAnswer {
        test.state().scans[&ScanId::from_uuid(uuid::Uuid::from_u128(scan))].answer.clone()
    }
    fn issued() -> Stream {
        let mut test =
            Stream { state: TicketsState::default(), env: TicketsEnv::new(Arc::new(FixedClock::new(now()))) };
        test.when(issue()).unwrap();
        test
    }

    #[test]
    fn tickets_are_at_rest_once_issued() {
        assert!(!TicketsReducer::at_rest(&TicketsState::default()));
        let mut test = issued();
        assert!(TicketsReducer::at_rest(test.state()));
        test.when(scan(0, 0, 10, Direction::Entry)).unwrap();
        assert!(TicketsReducer::at_rest(test.state()), "a scan leaves nothing pending");
    }

    #[test]
    fn tickets_are_issued_once_per_seat_and_a_redelivery_changes_nothing() {
        let mut test = issued();
        let order = test.state().order.clone().unwrap();
        assert_eq!(order.tickets.len(), 2);
        assert_eq!(order.tickets[1].ticket_id, ticket(1));
        assert!(test.when(issue()).unwrap().is_empty());
    }

    #[test]
    fn entry_exit_and_reentry_with_a_retried_scan_answered_the_same() {
        let mut test = issued();
        test.when(scan(0, 0, 10, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 10), ScanAnswer::Admitted);
        assert!(test.when(scan(0, 0, 10, Direction::Entry)).unwrap().is_empty(), "a retried scan is not scanned again");
        assert_eq!(answer(&test, 10), ScanAnswer::Admitted);
        test.when(scan(0, 0, 11, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 11), ScanAnswer::AlreadyAdmitted { gate: gate("North"), at: now() });
        test.when(scan(1, 0, 12, Direction::Exit)).unwrap();
        assert_eq!(answer(&test, 12), ScanAnswer::NotInside);
        test.when(scan(0, 0, 13, Direction::Exit)).unwrap();
        assert_eq!(answer(&test, 13), ScanAnswer::Exited);
        test.when(scan(0, 0, 14, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 14), ScanAnswer::Admitted);
        assert!(matches!(test.when(scan(1, 0, 14, Direction::Entry)), Err(TicketsError::ScanIdReused { .. })));
    }

    #[test]
    fn a_transfer_revokes_the_old_code_and_a_revoked_ticket_does_not_admit() {
        let mut test = issued();
        let later = now() + chrono::Duration::hours(1);
        let to = CustomerId::from_uuid(uuid::Uuid::from_u128(4));
        test.when(TicketsAction::TransferTicket { reservation_id: rid(), ticket_id: ticket(0), to, until: later })
            .unwrap();
        assert_eq!(test.state().order.as_ref().unwrap().tickets[0].holder, to);
        test.when(scan(0, 0, 20, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 20), ScanAnswer::Revoked { reason: RevocationReason::Transferred });
        test.when(scan(0, 1, 21, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 21), ScanAnswer::Admitted);
        assert!(test.when(scan(0, 2, 22, Direction::Entry)).is_err(), "a serial never issued is unknown");
        assert_eq!(test.state().revoked, vec![RevokedCode { ticket_id: ticket(0), serial: 0 }]);

        let revoke = TicketsAction::RevokeTickets {
            reservation_id: rid(),
            tickets: vec![ticket(1)],
            reason: RevocationReason::Refunded,
        };
        test.when(revoke.clone()).unwrap();
        assert!(test.when(revoke).unwrap().is_empty(), "revoking twice changes nothing");
        test.when(scan(1, 0, 23, Direction::Entry)).unwrap();
        assert_eq!(answer(&test, 23), ScanAnswer::Revoked { reason: RevocationReason::Refunded });
        let transfer_revoked =
            TicketsAction::TransferTicket { reservation_id: rid(), ticket_id: ticket(1), to, until: later };
        assert!(test.when(transfer_revoked).is_err());
        let too_late =
            TicketsAction::TransferTicket { reservation_id: rid(), ticket_id: ticket(0), to: buyer(), until: now() };
        assert!(test.when(too_late).is_err(), "after the cut-off");
    }
}
