//! The reservation saga as pure functions: given a persisted event (or a refusal) they name what
//! must follow. The system runs them on every event it reads from the log, once per process; the
//! [`SagaDriver`](super::SagaDriver) runs them synchronously for tests and baselines. Both run
//! this one saga.

use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use super::allowance::{AllowanceAction, AllowanceError, ClaimRelease};
use super::inventory::{InventoryAction, InventoryError, ReleaseReason};
use super::order_line::LineSeats;
use super::payment::PaymentAction;
use super::reservation::ReservationAction;
use super::tickets::{RevocationReason, TicketsAction};
use super::{EventAction, TicketingAction};
use crate::domain::{CustomerId, EventId, Money, PaymentId, RefundId, ReservationId, SectionName, TicketId};

/// The key of the refund of a payment that arrived after its reservation ended.
pub(crate) const LATE_PAYMENT_REFUND: &str = "late-payment";
/// The key of the refund of a payment whose event was cancelled.
pub(crate) const EVENT_CANCELLED_REFUND: &str = "event-cancelled";

/// What must follow a persisted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Send this command to its aggregate.
    Command(TicketingAction),
    /// Charge the customer: a side effect outside the log.
    Charge(Charge),
    /// Give money back: a side effect outside the log.
    Refund(Refund),
}

/// A charge the saga asks for. Whoever carries it out first sends [`Charge::intent`]
/// (`ProcessPayment`, whose `PaymentProcessed` is the durable record that a charge is under way),
/// then calls the payment gateway with the payment id as the provider's idempotency key, then
/// records the answer with [`Charge::outcome`]. A charge re-driven after a crash repeats the same
/// steps: the intent is already recorded, the provider deduplicates the call by payment id, and
/// the outcome is recorded once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The payment, [`PaymentId::for_reservation`].
    pub payment_id: PaymentId,
    /// What it pays for.
    pub reservation_id: ReservationId,
    /// How much.
    pub amount: Money,
}

impl Charge {
    /// The `ProcessPayment` command that records the intent to charge.
    #[must_use]
    pub fn intent(&self) -> TicketingAction {
        TicketingAction::Payment(PaymentAction::ProcessPayment {
            payment_id: self.payment_id,
            reservation_id: self.reservation_id,
            amount: self.amount,
        })
    }

    /// The command that records the gateway's answer.
    #[must_use]
    pub fn outcome(&self, outcome: super::GatewayOutcome) -> TicketingAction {
        TicketingAction::Payment(PaymentAction::RecordGatewayOutcome { payment_id: self.payment_id, outcome })
    }
}

/// A refund the saga asks for, once its intent (`RefundRequested`) is in the log: call the
/// gateway with the refund id as the idempotency key, then record the answer with
/// [`Refund::outcome`]. An unknown answer leaves the refund requested, to be sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The payment.
    pub payment_id: PaymentId,
    /// The refund, the provider's idempotency key.
    pub refund_id: RefundId,
    /// How much.
    pub amount: Money,
}

impl Refund {
    /// The command that records the gateway's answer.
    #[must_use]
    pub fn outcome(&self, outcome: super::GatewayOutcome) -> TicketingAction {
        TicketingAction::Payment(PaymentAction::RecordRefundOutcome {
            payment_id: self.payment_id,
            refund_id: self.refund_id,
            outcome,
        })
    }
}

/// The saga's answer to a refused command, for the refusals it must hear about although
/// nothing was persisted: `InsufficientInventory` becomes `RecordSeatShortage`, which ends the
/// reservation Compensated. Every other rejection yields nothing. Pure, like [`reactions`].
#[must_use]
pub fn rejection_reactions(rejection: &TicketingAction) -> SmallVec<[TicketingAction; 2]> {
    match rejection {
        TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::InsufficientInventory {
            reservation_id,
            section,
            requested,
            available,
        })) => smallvec![TicketingAction::Reservation(ReservationAction::RecordSeatShortage {
            reservation_id: *reservation_id,
            requested: *requested,
            available: *available,
            section: Some(section.clone()),
        })],
        TicketingAction::Allowance(AllowanceAction::Rejected(AllowanceError::LimitReached {
            reservation_id,
            held,
            limit,
            ..
        })) => smallvec![TicketingAction::Reservation(ReservationAction::RecordLimitReached {
            reservation_id: *reservation_id,
            limit: *limit,
            held: *held,
        })],
        TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::LateSaleRefused {
            reservation_id,
            ..
        })) => smallvec![TicketingAction::Reservation(ReservationAction::RefuseLateSale {
            reservation_id: *reservation_id
        })],
        _ => smallvec![],
    }
}

/// The reservation saga as a pure function: the commands that must follow a persisted `event`.
/// Anything that is not a persisted event yields nothing.
///
/// | Persisted event | Follow-up command |
/// |---|---|
/// | `EventCreated` | `InitializeInventory` for each section |
/// | `ReservationInitiated` | `ReserveSeats`; under a per-customer limit `ClaimTickets` first (its refusal, `LimitReached`, becomes `RecordLimitReached`) |
/// | `TicketsClaimed` | `ReserveSeats` |
/// | `SeatsReserved` | `AllocateSeats` |
/// | `PaymentRequested` | [`Reaction::Charge`]: `ProcessPayment`, the gateway call, `RecordGatewayOutcome` |
/// | `RefundRequested` | [`Reaction::Refund`]: the gateway call, `RecordRefundOutcome` |
/// | Payment `PaymentSucceeded` | `CompletePayment` |
/// | Payment `PaymentFailed` | `FailPayment` |
/// | `ReservationCompleted` | `ConfirmReservation`, and `IssueTickets` (one per seat) |
/// | `SeatsRefunded` | `ReturnSeats`, `RevokeTickets`, `RefundPayment` of its amount when positive, `ReleaseClaim` of the seats under a limit |
/// | `ReservationExpired` / `Cancelled` / `Compensated` | `ReleaseReservation` if it held seats; `ReleaseClaim` (all) if it claimed an allowance |
/// | `SeatsReturned` | `ReleaseReservation` |
/// | `LatePaymentAccepted` | `SellLate` (its refusal, `LateSaleRefused`, becomes `RefuseLateSale`) |
/// | `LateSeatsSold` | `CompleteLateSale` |
/// | Reservation `PaymentSucceeded` with `refund_owed` | `RefundPayment` of the whole amount (refund id [`RefundId::for_payment`] of `"late-payment"`) |
///
/// Commands it produces are idempotent, so feeding it a redelivered event is harmless.
/// `EventCancelled` needs the event's holds and payments, so the system handles it, not this function.
#[must_use]
pub fn reactions(event: &TicketingAction) -> SmallVec<[Reaction; 2]> {
    use TicketingAction as T;
    let release = |event_id: &EventId, section: &SectionName, reservation_id: &ReservationId, reason| {
        T::Inventory(InventoryAction::ReleaseReservation {
            event_id: *event_id,
            section: section.clone(),
            reservation_id: *reservation_id,
            reason,
        })
    };
    match event {
        T::Event(EventAction::EventCreated { details, .. }) => details
            .sections
            .iter()
            .map(|s| {
                Reaction::Command(T::Inventory(InventoryAction::InitializeInventory {
                    event_id: details.event_id,
                    section: s.name.clone(),
                    capacity: s.capacity,
                }))
            })
            .collect(),
        T::Reservation(ReservationAction::ReservationInitiated { .. })
        | T::Allowance(AllowanceAction::TicketsClaimed { .. }) => hold_reactions(event),
        T::Inventory(InventoryAction::SeatsReserved { reservation_id, section, seats, .. }) => {
            smallvec![Reaction::Command(T::Reservation(ReservationAction::AllocateSeats {
                reservation_id: *reservation_id,
                seats: seats.iter().map(|s| s.seat_id).collect(),
                section: Some(section.clone()),
            }))]
        }
        T::Reservation(ReservationAction::PaymentRequested { reservation_id, payment_id, amount, .. }) => {
            smallvec![Reaction::Charge(Charge {
                payment_id: *payment_id,
                reservation_id: *reservation_id,
                amount: *amount
            })]
        }
        T::Payment(PaymentAction::RefundRequested { payment_id, refund_id, amount, .. }) => {
            smallvec![Reaction::Refund(Refund { payment_id: *payment_id, refund_id: *refund_id, amount: *amount })]
        }
        T::Payment(PaymentAction::PaymentSucceeded { payment_id, reservation_id, amount, .. }) => {
            smallvec![Reaction::Command(T::Reservation(ReservationAction::CompletePayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                amount: *amount,
            }))]
        }
        T::Payment(PaymentAction::PaymentFailed { payment_id, reservation_id, reason, .. }) => {
            smallvec![Reaction::Command(T::Reservation(ReservationAction::FailPayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                reason: reason.clone(),
            }))]
        }
        T::Reservation(
            completed @ (ReservationAction::ReservationCompleted { .. } | ReservationAction::SeatsRefunded { .. }),
        ) => sale_reactions(completed),
        T::Reservation(ending @ ReservationAction::ReservationExpired { reservation_id, event_id, claim, .. }) => {
            ending_reactions(*reservation_id, *event_id, ending, *claim, ReleaseReason::Expired)
        }
        T::Reservation(ending @ ReservationAction::ReservationCancelled { reservation_id, event_id, claim, .. }) => {
            ending_reactions(*reservation_id, *event_id, ending, *claim, ReleaseReason::Cancelled)
        }
        T::Reservation(ending @ ReservationAction::ReservationCompensated { reservation_id, event_id, claim, .. }) => {
            ending_reactions(*reservation_id, *event_id, ending, *claim, ReleaseReason::PaymentFailed)
        }
        T::Reservation(ReservationAction::SeatsReturned { reservation_id, event_id, section, .. }) => {
            smallvec![Reaction::Command(release(event_id, section, reservation_id, ReleaseReason::ReservationEnded))]
        }
        T::Reservation(ReservationAction::PaymentSucceeded { payment_id, amount, refund_owed: true, .. }) => {
            smallvec![Reaction::Command(T::Payment(PaymentAction::RefundPayment {
                at_most: false,
                payment_id: *payment_id,
                refund_id: RefundId::for_payment(*payment_id, LATE_PAYMENT_REFUND),
                amount: *amount,
                reason: "payment arrived after the reservation ended".into(),
            }))]
        }
        other => late_sale_reactions(other),
    }
}

/// The reactions that get a reservation its seats: to `ReservationInitiated`, ask the inventory,
/// or, under a per-customer ticket limit, claim them on the customer's allowance first; to
/// `TicketsClaimed`, ask the inventory.
fn hold_reactions(event: &TicketingAction) -> SmallVec<[Reaction; 2]> {
    use TicketingAction as T;
    // One `ReserveSeats` per (section, quantity) of the order.
    let reserve = |event_id: EventId, reservation_id: ReservationId, expires_at, lines: Vec<(SectionName, u32)>| {
        lines
            .into_iter()
            .map(|(section, quantity)| {
                Reaction::Command(T::Inventory(InventoryAction::ReserveSeats {
                    event_id,
                    section,
                    reservation_id,
                    quantity,
                    expires_at,
                }))
            })
            .collect()
    };
    match event {
        T::Reservation(
            initiated @ ReservationAction::ReservationInitiated {
                reservation_id,
                event_id,
                section,
                quantity,
                expires_at,
                customer_id,
                ticket_limit,
                lines,
                ..
            },
        ) => {
            if let Some(limit) = ticket_limit {
                smallvec![Reaction::Command(T::Allowance(AllowanceAction::ClaimTickets {
                    event_id: *event_id,
                    customer_id: *customer_id,
                    reservation_id: *reservation_id,
                    quantity: *quantity,
                    limit: *limit,
                    section: section.clone(),
                    expires_at: *expires_at,
                    lines: lines.clone(),
                }))]
            } else {
                let lines = initiated.order_lines().into_iter().map(|l| (l.section, l.quantity)).collect();
                reserve(*event_id, *reservation_id, *expires_at, lines)
            }
        }
        T::Allowance(AllowanceAction::TicketsClaimed {
            reservation_id,
            event_id,
            section,
            quantity,
            expires_at,
            lines,
            ..
        }) => {
            let lines = if lines.is_empty() {
                vec![(section.clone(), *quantity)]
            } else {
                lines.iter().map(|l| (l.section.clone(), l.quantity)).collect()
            };
            reserve(*event_id, *reservation_id, *expires_at, lines)
        }
        _ => smallvec![],
    }
}

/// The reactions to a reservation that ended without a sale: its seats, if it held any, are
/// released, and its claim on the customer's allowance, if it made one, is given back.
fn ending_reactions(
    reservation_id: ReservationId,
    event_id: EventId,
    ending: &ReservationAction,
    claim: Option<CustomerId>,
    reason: ReleaseReason,
) -> SmallVec<[Reaction; 2]> {
    use TicketingAction as T;
    let mut steps: SmallVec<[Reaction; 2]> = ending
        .seats_by_section()
        .into_iter()
        .map(|(section, _)| {
            Reaction::Command(T::Inventory(InventoryAction::ReleaseReservation {
                event_id,
                section: section.clone(),
                reservation_id,
                reason,
            }))
        })
        .collect();
    if let Some(customer_id) = claim {
        steps.push(Reaction::Command(T::Allowance(AllowanceAction::ReleaseClaim {
            event_id,
            customer_id,
            reservation_id,
            release: ClaimRelease::Ended,
        })));
    }
    steps
}

/// The reactions to a completed sale and to its refund ([`reactions`] for `ReservationCompleted`
/// and `SeatsRefunded`).
fn sale_reactions(event: &ReservationAction) -> SmallVec<[Reaction; 2]> {
    use TicketingAction as T;
    match event {
        ReservationAction::ReservationCompleted {
            reservation_id,
            event_id,
            section,
            seats,
            customer_id,
            unit_price,
            lines,
            ..
        } => {
            let mut steps: SmallVec<[Reaction; 2]> = event
                .seats_by_section()
                .into_iter()
                .map(|(section, _)| {
                    Reaction::Command(T::Inventory(InventoryAction::ConfirmReservation {
                        event_id: *event_id,
                        section: section.clone(),
                        reservation_id: *reservation_id,
                    }))
                })
                .collect();
            if let (Some(holder), Some(unit_price)) = (customer_id, unit_price) {
                let lines = if lines.is_empty() {
                    vec![LineSeats { section: section.clone(), unit_price: *unit_price, seats: seats.clone() }]
                } else {
                    lines.clone()
                };
                steps.push(Reaction::Command(T::Tickets(TicketsAction::IssueTickets {
                    reservation_id: *reservation_id,
                    event_id: *event_id,
                    holder: *holder,
                    lines,
                })));
            }
            steps
        }
        ReservationAction::SeatsRefunded {
            reservation_id,
            event_id,
            seats,
            payment_id,
            refund_id,
            amount,
            reason,
            claim,
            ..
        } => {
            let revocation = if *refund_id == RefundId::for_payment(*payment_id, EVENT_CANCELLED_REFUND) {
                RevocationReason::EventCancelled
            } else {
                RevocationReason::Refunded
            };
            let mut steps: SmallVec<[Reaction; 2]> =
                smallvec![Reaction::Command(T::Tickets(TicketsAction::RevokeTickets {
                    reservation_id: *reservation_id,
                    tickets: seats.iter().map(|seat| TicketId::for_seat(*reservation_id, *seat)).collect(),
                    reason: revocation,
                }))];
            steps.extend(event.seats_by_section().into_iter().map(|(section, seats)| {
                Reaction::Command(T::Inventory(InventoryAction::ReturnSeats {
                    event_id: *event_id,
                    section: section.clone(),
                    reservation_id: *reservation_id,
                    seats: seats.to_vec(),
                }))
            }));
            if let Some(customer_id) = claim {
                steps.push(Reaction::Command(T::Allowance(AllowanceAction::ReleaseClaim {
                    event_id: *event_id,
                    customer_id: *customer_id,
                    reservation_id: *reservation_id,
                    release: ClaimRelease::Refunded {
                        refund_id: *refund_id,
                        tickets: u32::try_from(seats.len()).unwrap_or(u32::MAX),
                    },
                })));
            }
            if amount.is_positive() {
                steps.push(Reaction::Command(T::Payment(PaymentAction::RefundPayment {
                    at_most: true,
                    payment_id: *payment_id,
                    refund_id: *refund_id,
                    amount: *amount,
                    reason: reason.clone(),
                })));
            }
            steps
        }
        _ => smallvec![],
    }
}

/// The reactions of a late sale ([`reactions`] for `LatePaymentAccepted` and `LateSeatsSold`).
fn late_sale_reactions(event: &TicketingAction) -> SmallVec<[Reaction; 2]> {
    use TicketingAction as T;
    match event {
        T::Reservation(ReservationAction::LatePaymentAccepted {
            reservation_id, event_id, section, quantity, ..
        }) => smallvec![Reaction::Command(T::Inventory(InventoryAction::SellLate {
            event_id: *event_id,
            section: section.clone(),
            reservation_id: *reservation_id,
            quantity: *quantity,
        }))],
        T::Inventory(InventoryAction::LateSeatsSold { reservation_id, seats, .. }) => {
            smallvec![Reaction::Command(T::Reservation(ReservationAction::CompleteLateSale {
                reservation_id: *reservation_id,
                seats: seats.iter().map(|s| s.seat_id).collect(),
            }))]
        }
        _ => smallvec![],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::Section;
    use crate::aggregates::event::EventDetails;
    use crate::domain::{Capacity, Venue, VenueId};
    use crate::framework::Message;
    use chrono::{TimeZone, Utc};

    #[test]
    fn saga_ignores_commands_and_initialises_every_section() {
        let cancel = TicketingAction::Reservation(ReservationAction::CancelReservation {
            reservation_id: ReservationId::new_v4(),
        });
        assert!(reactions(&cancel).is_empty());
        let start = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap();
        let details = EventDetails {
            event_id: EventId::new_v4(),
            name: "x".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
            date: start,
            sections: vec![
                Section { name: SectionName::new("Stalls").unwrap(), capacity: Capacity::new(10).unwrap() },
                Section { name: SectionName::new("Box").unwrap(), capacity: Capacity::new(1).unwrap() },
            ],
            pricing_tiers: Vec::new(),
            policy: crate::aggregates::SalesPolicy::default(),
        };
        let created = TicketingAction::Event(EventAction::EventCreated { details, created_at: start });
        let follow_ups = reactions(&created);
        assert_eq!(follow_ups.len(), 2);
        assert!(follow_ups.iter().all(|r| matches!(r, Reaction::Command(c) if c.name() == "InitializeInventory")));
    }

    #[test]
    fn a_payment_request_asks_for_one_charge_with_its_intent_first() {
        let reservation_id = ReservationId::new_v4();
        let payment_id = PaymentId::for_reservation(reservation_id);
        let amount = Money::new(1_000, crate::domain::Currency::EUR);
        let requested = TicketingAction::Reservation(ReservationAction::PaymentRequested {
            reservation_id,
            payment_id,
            amount,
            requested_at: Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap(),
        });
        let follow_ups = reactions(&requested);
        let [Reaction::Charge(charge)] = follow_ups.as_slice() else { unreachable!("one charge: {follow_ups:?}") };
        assert_eq!(charge.intent().name(), "ProcessPayment");
        assert_eq!(charge.outcome(crate::aggregates::GatewayOutcome::Approved).name(), "RecordGatewayOutcome");
    }
}
