//! The Allowance aggregate: how many tickets of one event one customer holds or is buying, so an
//! event's [`SalesPolicy::max_tickets_per_customer`](super::SalesPolicy::max_tickets_per_customer)
//! holds across all of the customer's orders, however many are made at once.
//!
//! One stream per (event, customer). A reservation of a limited event claims its seats here
//! before it asks the inventory for them; the claim is given back when the reservation ends
//! without a sale or its tickets are refunded. Claims of one customer are decided one after the
//! other on this stream (in another process, the append's expected version makes the second
//! decide again), so two concurrent orders can never both pass the limit.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::order_line::OrderLine;
use crate::domain::{CustomerId, EventId, RefundId, ReservationId, SectionName};
use crate::framework::{Effects, Message, MessageKind, Reducer, event_sourced};

/// What a `ReleaseClaim` gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimRelease {
    /// The whole claim, for good: the reservation ended without a sale (a claim for it that
    /// comes later is not taken).
    Ended,
    /// The tickets of one refund (given back once, however often the refund is reported).
    Refunded {
        /// The refund.
        refund_id: RefundId,
        /// Tickets refunded.
        tickets: u32,
    },
}

/// State of one Allowance stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllowanceState {
    /// The event and customer, set by the first claim.
    pub key: Option<(EventId, CustomerId)>,
    /// Tickets claimed per reservation (held, being paid, or sold and not refunded).
    pub claims: BTreeMap<ReservationId, u32>,
    /// Reservations whose claim was given back whole (they ended): a claim that arrives for one
    /// afterwards (the saga runs steps of different events concurrently) is not taken.
    #[serde(default)]
    pub ended: BTreeSet<ReservationId>,
    /// Refunds whose tickets were given back.
    #[serde(default)]
    pub refunds: BTreeSet<RefundId>,
}

impl AllowanceState {
    /// Tickets the customer holds or is buying for the event.
    #[must_use]
    pub fn claimed(&self) -> u32 {
        self.claims.values().fold(0_u32, |total, n| total.saturating_add(*n))
    }
}

/// Why an Allowance command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AllowanceError {
    /// The customer would hold more tickets of the event than it allows.
    #[error(
        "customer {customer_id} holds or is buying {held} tickets of event {event_id}; {requested} more would pass its limit of {limit}"
    )]
    LimitReached {
        /// The event.
        event_id: EventId,
        /// The customer.
        customer_id: CustomerId,
        /// The reservation that asked.
        reservation_id: ReservationId,
        /// Tickets asked for.
        requested: u32,
        /// Tickets already claimed.
        held: u32,
        /// The event's limit.
        limit: u32,
    },
}

/// Commands, events and the rejection of the Allowance aggregate (all from the saga).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowanceAction {
    /// Claim `quantity` tickets for a reservation, within `limit`. A redelivery is a no-op.
    ClaimTickets {
        /// The event.
        event_id: EventId,
        /// The customer.
        customer_id: CustomerId,
        /// The reservation.
        reservation_id: ReservationId,
        /// Tickets wanted.
        quantity: u32,
        /// The event's limit.
        limit: u32,
        /// The section the seats are for (passed on to the inventory; the first line's, for an
        /// order of several sections).
        section: SectionName,
        /// The reservation's hold deadline (passed on to the inventory).
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
        /// The order's lines, for an order of several sections (passed on to the inventories).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<OrderLine>,
    },
    /// Give back tickets of a reservation's claim. A redelivery is a no-op.
    ReleaseClaim {
        /// The event.
        event_id: EventId,
        /// The customer.
        customer_id: CustomerId,
        /// The reservation.
        reservation_id: ReservationId,
        /// What is given back.
        release: ClaimRelease,
    },
    /// Tickets are claimed; the seats are to be asked for.
    #[serde(rename = "TicketsClaimed")]
    TicketsClaimed {
        /// The event.
        event_id: EventId,
        /// The customer.
        customer_id: CustomerId,
        /// The reservation.
        reservation_id: ReservationId,
        /// Tickets claimed.
        quantity: u32,
        /// The section (the first line's, for an order of several sections).
        section: SectionName,
        /// The hold deadline.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        expires_at: DateTime<Utc>,
        /// The order's lines, for an order of several sections.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<OrderLine>,
    },
    /// Tickets of a claim are given back.
    #[serde(rename = "ClaimReleased")]
    ClaimReleased {
        /// The event.
        event_id: EventId,
        /// The customer.
        customer_id: CustomerId,
        /// The reservation.
        reservation_id: ReservationId,
        /// Tickets given back.
        quantity: u32,
        /// Why.
        release: ClaimRelease,
    },
    /// A command was refused.
    Rejected(AllowanceError),
}

impl AllowanceAction {
    /// The (event, customer) stream this action addresses (`None` for a rejection).
    #[must_use]
    pub fn key(&self) -> Option<(EventId, CustomerId)> {
        match self {
            Self::ClaimTickets { event_id, customer_id, .. }
            | Self::ReleaseClaim { event_id, customer_id, .. }
            | Self::TicketsClaimed { event_id, customer_id, .. }
            | Self::ClaimReleased { event_id, customer_id, .. } => Some((*event_id, *customer_id)),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for AllowanceAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::ClaimTickets { .. } | Self::ReleaseClaim { .. } => MessageKind::Command,
            Self::TicketsClaimed { .. } | Self::ClaimReleased { .. } => MessageKind::Event,
            Self::Rejected(_) => MessageKind::Rejection,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::ClaimTickets { .. } => "ClaimTickets",
            Self::ReleaseClaim { .. } => "ReleaseClaim",
            Self::TicketsClaimed { .. } => "TicketsClaimed",
            Self::ClaimReleased { .. } => "ClaimReleased",
            Self::Rejected(_) => "AllowanceRejected",
        }
    }
}

/// The Allowance reducer (no environment: its decisions depend on no clock).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowanceReducer;

impl Reducer for AllowanceReducer {
    type State = AllowanceState;
    type Action = AllowanceAction;
    type Env = ();

    fn reduce(&self, state: &mut AllowanceState, action: AllowanceAction, _env: &()) -> Effects<AllowanceAction> {
        event_sourced(state, action, decide, apply, AllowanceAction::Rejected)
    }
}

fn decide(state: &AllowanceState, command: AllowanceAction) -> Result<Option<AllowanceAction>, AllowanceError> {
    match command {
        AllowanceAction::ClaimTickets {
            event_id,
            customer_id,
            reservation_id,
            quantity,
            limit,
            section,
            expires_at,
            lines,
        } => {
            if state.claims.contains_key(&reservation_id) || state.ended.contains(&reservation_id) {
                return Ok(None);
            }
            let held = state.claimed();
            if held.saturating_add(quantity) > limit {
                return Err(AllowanceError::LimitReached {
                    event_id,
                    customer_id,
                    reservation_id,
                    requested: quantity,
                    held,
                    limit,
                });
            }
            Ok(Some(AllowanceAction::TicketsClaimed {
                event_id,
                customer_id,
                reservation_id,
                quantity,
                section,
                expires_at,
                lines,
            }))
        }
        AllowanceAction::ReleaseClaim { event_id, customer_id, reservation_id, release } => {
            let claimed = state.claims.get(&reservation_id).copied().unwrap_or(0);
            let quantity = match release {
                ClaimRelease::Ended if state.ended.contains(&reservation_id) => return Ok(None),
                ClaimRelease::Ended => claimed,
                ClaimRelease::Refunded { refund_id, .. } if state.refunds.contains(&refund_id) => return Ok(None),
                ClaimRelease::Refunded { tickets, .. } => tickets.min(claimed),
            };
            Ok(Some(AllowanceAction::ClaimReleased { event_id, customer_id, reservation_id, quantity, release }))
        }
        _ => Ok(None),
    }
}

fn apply(state: &mut AllowanceState, event: &AllowanceAction) {
    match event {
        AllowanceAction::TicketsClaimed { event_id, customer_id, reservation_id, quantity, .. } => {
            state.key = Some((*event_id, *customer_id));
            state.claims.insert(*reservation_id, *quantity);
        }
        AllowanceAction::ClaimReleased { event_id, customer_id, reservation_id, quantity, release } => {
            state.key = Some((*event_id, *customer_id));
            if let Some(claim) = state.claims.get_mut(reservation_id) {
                *claim = claim.saturating_sub(*quantity);
                if *claim == 0 {
                    state.claims.remove(reservation_id);
                }
            }
            match release {
                ClaimRelease::Ended => {
                    state.claims.remove(reservation_id);
                    state.ended.insert(*reservation_id);
                }
                ClaimRelease::Refunded { refund_id, .. } => {
                    state.refunds.insert(*refund_id);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::Effect;
    use chrono::TimeZone;

    fn claim(reservation: u128, quantity: u32) -> AllowanceAction {
        AllowanceAction::ClaimTickets {
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(1)),
            customer_id: CustomerId::from_uuid(uuid::Uuid::from_u128(2)),
            reservation_id: ReservationId::from_uuid(uuid::Uuid::from_u128(reservation)),
            quantity,
            limit: 4,
            section: SectionName::new("Stalls").unwrap(),
            expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 12, 5, 0).unwrap(),
            lines: Vec::new(),
        }
    }

    fn release(reservation: u128, quantity: Option<u32>) -> AllowanceAction {
        let release = quantity.map_or(ClaimRelease::Ended, |tickets| ClaimRelease::Refunded {
            refund_id: RefundId::from_uuid(uuid::Uuid::from_u128(u128::from(tickets) << 64 | reservation)),
            tickets,
        });
        AllowanceAction::ReleaseClaim {
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(1)),
            customer_id: CustomerId::from_uuid(uuid::Uuid::from_u128(2)),
            reservation_id: ReservationId::from_uuid(uuid::Uuid::from_u128(reservation)),
            release,
        }
    }

    fn persisted(effects: &Effects<AllowanceAction>) -> usize {
        effects.iter().filter(|e| matches!(e, Effect::Persist(_))).count()
    }

    #[test]
    fn claims_stop_at_the_limit_and_releases_make_room_again() {
        let mut state = AllowanceState::default();
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, claim(10, 3), &())), 1);
        assert!(AllowanceReducer.reduce(&mut state, claim(10, 3), &()).is_empty(), "a redelivery");
        let before = state.clone();
        let refused = AllowanceReducer.reduce(&mut state, claim(11, 2), &());
        assert!(matches!(
            refused.as_slice(),
            [Effect::Reject(r)] if matches!(**r, AllowanceAction::Rejected(AllowanceError::LimitReached { held: 3, limit: 4, .. }))
        ));
        assert_eq!(state, before, "a refusal changes nothing");
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, claim(12, 1), &())), 1);
        assert_eq!(state.claimed(), 4);
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, release(10, Some(2)), &())), 1);
        assert!(AllowanceReducer.reduce(&mut state, release(10, Some(2)), &()).is_empty(), "one refund, once");
        assert_eq!(state.claimed(), 2);
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, claim(11, 2), &())), 1);
        assert_eq!(
            persisted(&AllowanceReducer.reduce(&mut state, release(10, Some(5)), &())),
            1,
            "at most what is claimed"
        );
        assert_eq!(state.claimed(), 3);
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, release(11, None), &())), 1);
        assert_eq!(state.claimed(), 1);
        assert!(AllowanceReducer.reduce(&mut state, release(11, None), &()).is_empty());
    }

    #[test]
    fn a_claim_that_arrives_after_its_reservation_ended_is_not_taken() {
        let mut state = AllowanceState::default();
        assert_eq!(persisted(&AllowanceReducer.reduce(&mut state, release(10, None), &())), 1);
        assert!(AllowanceReducer.reduce(&mut state, claim(10, 3), &()).is_empty());
        assert_eq!(state.claimed(), 0);
    }
}
