//! [`SagaDriver`]: the six reducers and the saga run synchronously, with no runtime, no store and
//! no clock of their own. It exists for tests and baselines (generating a log, measuring the bare
//! cost of the reducers); applications run the [`TicketingSystem`](crate::system::TicketingSystem),
//! which executes the same reducers and the same [`reactions`](super::reactions).

use std::collections::{HashMap, VecDeque};

use smallvec::SmallVec;

use super::saga::{Charge, Reaction, reactions, rejection_reactions};
use super::{AllowanceReducer, AllowanceState};
use super::{
    EventReducer, EventState, GatewayOutcome, InventoryReducer, InventoryState, PaymentReducer, PaymentState,
    PaymentStatus, ReservationAction, ReservationError, ReservationReducer, ReservationState, TicketingAction,
    TicketingEnv, TicketsReducer, TicketsState,
};
use crate::domain::{CustomerId, EventId, PaymentId, ReservationId, SectionName};
use crate::framework::{Effect, Effects, Reducer};

/// Every aggregate instance the driver holds, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketingState {
    /// Events.
    pub events: HashMap<EventId, EventState>,
    /// Inventories, one per (event, section).
    pub inventories: HashMap<(EventId, SectionName), InventoryState>,
    /// Reservations.
    pub reservations: HashMap<ReservationId, ReservationState>,
    /// Payments.
    pub payments: HashMap<PaymentId, PaymentState>,
    /// The tickets of purchases, by reservation.
    pub tickets: HashMap<ReservationId, TicketsState>,
    /// Customers' allowances of limited events.
    pub allowances: HashMap<(EventId, CustomerId), AllowanceState>,
}

impl TicketingState {
    /// The inventory of `section` of `event`.
    #[must_use]
    pub fn inventory(&self, event: EventId, section: &SectionName) -> Option<&InventoryState> {
        self.inventories.get(&(event, section.clone()))
    }

    /// The reservation `id`.
    #[must_use]
    pub fn reservation(&self, id: ReservationId) -> Option<&super::Reservation> {
        self.reservations.get(&id)?.reservation.as_ref()
    }
}

/// Runs commands through the reducers and their saga follow-ups to the end, in order.
///
/// Charges are parked until [`answer`](Self::answer)ed, unless the driver was built
/// [`answering`](Self::answering) every charge at once. Holds expire only when sent
/// `ExpireReservation` (after moving the environment's clock).
///
/// ```
/// use std::sync::Arc;
/// use boxoffice::aggregates::{EventAction, GatewayOutcome, OrderLine, SagaDriver, Section, TicketingEnv};
/// use boxoffice::prelude::*;
/// use chrono::{TimeZone, Utc};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
/// let mut driver = SagaDriver::new(TicketingEnv::new(Arc::new(clock.clone()))).answering(GatewayOutcome::Approved);
/// let (event_id, stalls) = (EventId::new_v4(), SectionName::new("Stalls")?);
/// let price = Money::new(2_500, Currency::EUR);
/// driver.send(EventAction::CreateEvent {
///     event_id,
///     name: "Rust Fest".into(),
///     venue: Venue::new(VenueId::new_v4(), "Hall")?,
///     date: clock.now() + chrono::Duration::days(30),
///     sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(100)? }],
///     pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls.clone(), price, None)?],
///     policy: boxoffice::aggregates::SalesPolicy::default(),
/// }.into()).map_err(|r| format!("{r:?}"))?;
/// driver.send(EventAction::PublishEvent { event_id }.into()).map_err(|r| format!("{r:?}"))?;
/// driver.send(EventAction::OpenSales { event_id }.into()).map_err(|r| format!("{r:?}"))?;
///
/// let reservation_id = ReservationId::new_v4();
/// let customer_id = CustomerId::new_v4();
/// let line = OrderLine { section: stalls.clone(), quantity: 2, unit_price: price, tier: None };
/// let reserve = ReservationAction::InitiateReservation { reservation_id, event_id, lines: vec![line], customer_id, policy: boxoffice::aggregates::SalesPolicy::default() };
/// driver.send(reserve.into()).map_err(|r| format!("{r:?}"))?;
/// let pay = ReservationAction::RequestPayment { reservation_id };
/// driver.send(pay.into()).map_err(|r| format!("{r:?}"))?;
///
/// assert_eq!(driver.state().reservation(reservation_id).map(|r| r.status), Some(ReservationStatus::Completed));
/// assert_eq!(driver.state().inventory(event_id, &stalls).map(|i| i.sold()), Some(2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SagaDriver {
    env: TicketingEnv,
    state: TicketingState,
    log: Vec<TicketingAction>,
    parked: VecDeque<Charge>,
    answer_all: Option<GatewayOutcome>,
}

impl SagaDriver {
    /// A driver with no instances that parks every charge.
    #[must_use]
    pub fn new(env: TicketingEnv) -> Self {
        Self { env, state: TicketingState::default(), log: Vec::new(), parked: VecDeque::new(), answer_all: None }
    }

    /// Answers every charge with `outcome` as soon as its intent is recorded.
    #[must_use]
    pub fn answering(mut self, outcome: GatewayOutcome) -> Self {
        self.answer_all = Some(outcome);
        self
    }

    /// Handles `command` and every follow-up it leads to; returns the events the command itself
    /// persisted (its follow-ups' events are in [`log`](Self::log)).
    ///
    /// # Errors
    /// The rejection, when the command was refused (its refusal's own follow-ups, such as a seat
    /// shortage ending a reservation, still run).
    #[allow(clippy::result_large_err)] // the rejection is the answer, returned by value once
    pub fn send(&mut self, command: TicketingAction) -> Result<SmallVec<[TicketingAction; 4]>, TicketingAction> {
        let mut queue = VecDeque::new();
        let first = self.step(command, &mut queue);
        while let Some(reaction) = queue.pop_front() {
            match reaction {
                Reaction::Command(command) => drop(self.step(command, &mut queue)),
                Reaction::Charge(charge) => self.charge(charge, &mut queue),
                // The driver's provider gives every refund back.
                Reaction::Refund(refund) => drop(self.step(refund.outcome(GatewayOutcome::Approved), &mut queue)),
            }
        }
        first
    }

    /// Charges waiting for an answer, oldest first.
    pub fn parked_charges(&self) -> impl Iterator<Item = &Charge> {
        self.parked.iter()
    }

    /// Answers the parked charge of `payment_id` and runs what follows; false if none is parked.
    pub fn answer(&mut self, payment_id: PaymentId, outcome: GatewayOutcome) -> bool {
        let Some(index) = self.parked.iter().position(|c| c.payment_id == payment_id) else { return false };
        let Some(charge) = self.parked.remove(index) else { return false };
        drop(self.send(charge.outcome(outcome)));
        true
    }

    /// Every event persisted so far, in order.
    #[must_use]
    pub fn log(&self) -> &[TicketingAction] {
        &self.log
    }

    /// Every instance.
    #[must_use]
    pub fn state(&self) -> &TicketingState {
        &self.state
    }

    fn charge(&mut self, charge: Charge, queue: &mut VecDeque<Reaction>) {
        if self.step(charge.intent(), queue).is_err() {
            return;
        }
        let pending = self.state.payments.get(&charge.payment_id).and_then(|p| p.payment.as_ref()).map(|p| p.status);
        if pending != Some(PaymentStatus::Pending) {
            return;
        }
        match self.answer_all.clone() {
            Some(outcome) => drop(self.step(charge.outcome(outcome), queue)),
            None => self.parked.push_back(charge),
        }
    }

    #[allow(clippy::result_large_err)]
    fn step(
        &mut self,
        command: TicketingAction,
        queue: &mut VecDeque<Reaction>,
    ) -> Result<SmallVec<[TicketingAction; 4]>, TicketingAction> {
        let mut persisted = SmallVec::new();
        for effect in self.route(command) {
            match effect {
                Effect::Persist(events) => persisted.extend(events),
                Effect::Reject(rejection) => {
                    queue.extend(rejection_reactions(&rejection).into_iter().map(Reaction::Command));
                    return Err(*rejection);
                }
            }
        }
        for event in &persisted {
            queue.extend(reactions(event));
        }
        self.log.extend(persisted.iter().cloned());
        Ok(persisted)
    }

    fn route(&mut self, action: TicketingAction) -> Effects<TicketingAction> {
        let (state, env) = (&mut self.state, &self.env);
        match action {
            TicketingAction::Event(a) => {
                let Some(id) = a.event_id() else { return Effects::new() };
                lift(on_child(&mut state.events, id, |c| EventReducer.reduce(c, a, &env.event)), TicketingAction::Event)
            }
            TicketingAction::Inventory(a) => {
                let Some((event, section)) = a.key() else { return Effects::new() };
                let key = (event, section.clone());
                let effects = on_child(&mut state.inventories, key, |c| InventoryReducer.reduce(c, a, &env.inventory));
                lift(effects, TicketingAction::Inventory)
            }
            TicketingAction::Reservation(a) => {
                let Some(id) = a.reservation_id() else { return Effects::new() };
                if let ReservationAction::InitiateReservation { event_id, lines, .. } = &a
                    && !state.reservations.contains_key(&id)
                    && let Some(line) = lines.iter().find(|line| {
                        !state
                            .events
                            .get(event_id)
                            .is_some_and(|e| e.is_on_sale() && e.section(&line.section).is_some())
                    })
                {
                    let error = ReservationError::NotOnSale { event_id: *event_id, section: line.section.clone() };
                    let rejection = TicketingAction::Reservation(ReservationAction::Rejected(error));
                    return smallvec::smallvec![Effect::Reject(Box::new(rejection))];
                }
                let effects =
                    on_child(&mut state.reservations, id, |c| ReservationReducer.reduce(c, a, &env.reservation));
                lift(effects, TicketingAction::Reservation)
            }
            TicketingAction::Payment(a) => {
                let Some(id) = a.payment_id() else { return Effects::new() };
                let effects = on_child(&mut state.payments, id, |c| PaymentReducer.reduce(c, a, &env.payment));
                lift(effects, TicketingAction::Payment)
            }
            TicketingAction::Tickets(a) => {
                let Some(id) = a.reservation_id() else { return Effects::new() };
                let effects = on_child(&mut state.tickets, id, |c| TicketsReducer.reduce(c, a, &env.tickets));
                lift(effects, TicketingAction::Tickets)
            }
            TicketingAction::Allowance(a) => {
                let Some(key) = a.key() else { return Effects::new() };
                let effects = on_child(&mut state.allowances, key, |c| AllowanceReducer.reduce(c, a, &()));
                lift(effects, TicketingAction::Allowance)
            }
        }
    }
}

/// Runs `reduce` on the instance at `key`. An instance that does not exist yet is only added
/// when the reduction changed it, so a refused command for an unknown id adds nothing (I9).
fn on_child<K, S, A>(map: &mut HashMap<K, S>, key: K, reduce: impl FnOnce(&mut S) -> Effects<A>) -> Effects<A>
where
    K: std::hash::Hash + Eq,
    S: Default + PartialEq,
{
    if let Some(child) = map.get_mut(&key) {
        return reduce(child);
    }
    let mut child = S::default();
    let effects = reduce(&mut child);
    if child != S::default() {
        map.insert(key, child);
    }
    effects
}

fn lift<A>(effects: Effects<A>, wrap: fn(A) -> TicketingAction) -> Effects<TicketingAction> {
    effects.into_iter().map(|e| e.map(wrap)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregates::{InventoryAction, InventoryError, PaymentAction};
    use crate::domain::{Currency, Money};
    use crate::framework::{Clock, FixedClock, Message, MessageKind};
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;

    /// An event on sale with Stalls (10 seats at 25.00) and Balcony (`balcony` seats at 40.00).
    fn two_sections(balcony: u32) -> (SagaDriver, EventId, [SectionName; 2]) {
        use crate::aggregates::{EventAction, Section};
        use crate::domain::{Capacity, PricingTier, TierKind, Venue, VenueId};
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
        let mut driver =
            SagaDriver::new(TicketingEnv::new(Arc::new(clock.clone()))).answering(GatewayOutcome::Approved);
        let event_id = EventId::new_v4();
        let names = [SectionName::new("Stalls").unwrap(), SectionName::new("Balcony").unwrap()];
        let tier =
            |s: &SectionName, p| PricingTier::new(TierKind::Regular, s.clone(), Money::new(p, Currency::EUR), None);
        driver
            .send(
                EventAction::CreateEvent {
                    event_id,
                    name: "Rust Fest".into(),
                    venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
                    date: clock.now() + chrono::Duration::days(30),
                    sections: vec![
                        Section { name: names[0].clone(), capacity: Capacity::new(10).unwrap() },
                        Section { name: names[1].clone(), capacity: Capacity::new(balcony).unwrap() },
                    ],
                    pricing_tiers: vec![tier(&names[0], 2_500).unwrap(), tier(&names[1], 4_000).unwrap()],
                    policy: crate::aggregates::SalesPolicy::default(),
                }
                .into(),
            )
            .unwrap();
        driver.send(EventAction::PublishEvent { event_id }.into()).unwrap();
        driver.send(EventAction::OpenSales { event_id }.into()).unwrap();
        (driver, event_id, names)
    }

    fn basket(event_id: EventId, names: &[SectionName; 2], quantities: [u32; 2]) -> (ReservationId, TicketingAction) {
        let reservation_id = ReservationId::new_v4();
        let lines = names
            .iter()
            .zip(quantities)
            .zip([2_500, 4_000])
            .map(|((section, quantity), price)| crate::aggregates::OrderLine {
                section: section.clone(),
                quantity,
                unit_price: Money::new(price, Currency::EUR),
                tier: None,
            })
            .collect();
        let initiate = ReservationAction::InitiateReservation {
            reservation_id,
            event_id,
            lines,
            customer_id: crate::domain::CustomerId::new_v4(),
            policy: crate::aggregates::SalesPolicy::default(),
        };
        (reservation_id, initiate.into())
    }

    #[test]
    fn a_basket_holds_every_section_pays_its_total_once_and_sells_both() {
        let (mut driver, event_id, names) = two_sections(5);
        let (reservation_id, initiate) = basket(event_id, &names, [2, 1]);
        driver.send(initiate).unwrap();
        let held = driver.state().reservation(reservation_id).unwrap();
        assert_eq!(held.status, crate::aggregates::ReservationStatus::SeatsAllocated, "{:#?}", driver.log());
        assert_eq!(held.seats.len(), 3);
        driver.send(ReservationAction::RequestPayment { reservation_id }.into()).unwrap();
        let done = driver.state().reservation(reservation_id).unwrap();
        assert_eq!(done.status, crate::aggregates::ReservationStatus::Completed);
        let charges = driver.log().iter().filter(|a| a.name() == "PaymentProcessed").count();
        assert_eq!(charges, 1);
        assert_eq!(driver.state().inventory(event_id, &names[0]).unwrap().sold(), 2);
        assert_eq!(driver.state().inventory(event_id, &names[1]).unwrap().sold(), 1);
        let issued = driver.log().iter().filter(|a| a.name() == "TicketsIssued").count();
        assert_eq!(issued, 2, "one TicketsIssued per section");
    }

    #[test]
    fn a_ticket_refund_decided_before_a_goodwill_refund_still_gives_back_what_is_left() {
        let (mut driver, event_id, names) = two_sections(5);
        let (reservation_id, initiate) = basket(event_id, &names, [2, 1]);
        driver.send(initiate).unwrap();
        driver.send(ReservationAction::RequestPayment { reservation_id }.into()).unwrap();
        let payment_id = PaymentId::for_reservation(reservation_id);
        let eur = |m| Money::new(m, Currency::EUR);
        let goodwill = PaymentAction::RefundPayment {
            payment_id,
            refund_id: crate::domain::RefundId::for_payment(payment_id, "goodwill"),
            amount: eur(8_000),
            reason: "late start".into(),
            at_most: false,
        };
        driver.send(goodwill.into()).unwrap();
        // The Balcony ticket's refund was priced (40.00) before the goodwill refund landed.
        let held = &driver.state().reservation(reservation_id).unwrap().held;
        let balcony = held.iter().find(|l| l.section == names[1]).unwrap().seats[0];
        let refund_id = crate::domain::RefundId::for_payment(payment_id, "balcony");
        let seats = ReservationAction::RefundSeats {
            reservation_id,
            seats: vec![balcony],
            refund_id,
            amount: eur(4_000),
            reason: "cannot come".into(),
        };
        driver.send(seats.into()).unwrap();
        let payment = driver.state().payments[&payment_id].payment.clone().unwrap();
        assert_eq!(payment.refund(refund_id).map(|r| r.amount), Some(eur(1_000)), "what was left goes back");
        assert_eq!(payment.refunded, eur(9_000));
        assert_eq!(driver.state().inventory(event_id, &names[1]).unwrap().available(), 5, "the seat is back");
    }

    #[test]
    fn a_basket_one_section_cannot_fill_releases_the_others() {
        let (mut driver, event_id, names) = two_sections(1);
        let (reservation_id, initiate) = basket(event_id, &names, [3, 2]);
        driver.send(initiate).unwrap();
        let ended = driver.state().reservation(reservation_id).unwrap();
        assert_eq!(ended.status, crate::aggregates::ReservationStatus::Compensated, "{:#?}", driver.log());
        assert_eq!(driver.state().inventory(event_id, &names[0]).unwrap().available(), 10);
        assert_eq!(driver.state().inventory(event_id, &names[1]).unwrap().available(), 1);
    }

    #[test]
    fn refused_commands_for_unknown_instances_create_nothing() {
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
        let mut driver = SagaDriver::new(TicketingEnv::new(Arc::new(clock)));
        let reservation_id = ReservationId::new_v4();
        let confirm = InventoryAction::ConfirmReservation {
            event_id: EventId::new_v4(),
            section: SectionName::new("Stalls").unwrap(),
            reservation_id,
        };
        let refused = driver.send(confirm.into()).unwrap_err();
        assert!(matches!(
            refused,
            TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::NotInitialized { .. }))
        ));
        let refund = PaymentAction::RefundPayment {
            at_most: false,
            payment_id: PaymentId::for_reservation(reservation_id),
            refund_id: crate::domain::RefundId::for_payment(PaymentId::for_reservation(reservation_id), "r"),
            amount: Money::new(1, Currency::EUR),
            reason: String::new(),
        };
        assert_eq!(driver.send(refund.into()).unwrap_err().kind(), MessageKind::Rejection);
        assert_eq!(driver.state(), &TicketingState::default());
        assert!(driver.log().is_empty());
    }
}
