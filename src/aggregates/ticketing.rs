//! The four aggregates composed into one reducer for the in-process
//! [`Store`](crate::framework::Store), with the reservation saga wired between them.
//!
//! The saga is one pure function, [`saga_reactions`]: given a persisted event it names the
//! commands that must follow. [`Ticketing`] applies it to the events its children persist; the
//! system layer applies the same function to events read from a bus, so both paths run one saga.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use super::event::{EventAction, EventEnv, EventReducer, EventState};
use super::inventory::{
    InventoryAction, InventoryEnv, InventoryError, InventoryReducer, InventoryState, ReleaseReason,
};
use super::payment::{PaymentAction, PaymentEnv, PaymentGateway, PaymentReducer, PaymentState};
use super::reservation::{ReservationAction, ReservationEnv, ReservationError, ReservationReducer, ReservationState};
use crate::domain::{EventId, ReservationId, SectionName};
use crate::framework::{Clock, Effect, Effects, Message, MessageKind, Reducer};

/// An action for one of the four aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketingAction {
    /// For the Event aggregate.
    Event(EventAction),
    /// For an Inventory (event, section).
    Inventory(InventoryAction),
    /// For a Reservation.
    Reservation(ReservationAction),
    /// For a Payment.
    Payment(PaymentAction),
}

impl Message for TicketingAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::Event(a) => a.kind(),
            Self::Inventory(a) => a.kind(),
            Self::Reservation(a) => a.kind(),
            Self::Payment(a) => a.kind(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Event(a) => a.name(),
            Self::Inventory(a) => a.name(),
            Self::Reservation(a) => a.name(),
            Self::Payment(a) => a.name(),
        }
    }
}

impl From<EventAction> for TicketingAction {
    fn from(action: EventAction) -> Self {
        Self::Event(action)
    }
}

impl From<InventoryAction> for TicketingAction {
    fn from(action: InventoryAction) -> Self {
        Self::Inventory(action)
    }
}

impl From<ReservationAction> for TicketingAction {
    fn from(action: ReservationAction) -> Self {
        Self::Reservation(action)
    }
}

impl From<PaymentAction> for TicketingAction {
    fn from(action: PaymentAction) -> Self {
        Self::Payment(action)
    }
}

/// Every aggregate instance, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketingState {
    /// Events.
    pub events: HashMap<EventId, EventState>,
    /// Inventories, one per (event, section).
    pub inventories: HashMap<(EventId, SectionName), InventoryState>,
    /// Reservations.
    pub reservations: HashMap<ReservationId, ReservationState>,
    /// Payments.
    pub payments: HashMap<crate::domain::PaymentId, PaymentState>,
}

impl TicketingState {
    /// The inventory of `section` of `event`.
    #[must_use]
    pub fn inventory(&self, event: EventId, section: &SectionName) -> Option<&InventoryState> {
        self.inventories.get(&(event, section.clone()))
    }

    /// The reservation `id`.
    #[must_use]
    pub fn reservation(&self, id: ReservationId) -> Option<&super::reservation::Reservation> {
        self.reservations.get(&id)?.reservation.as_ref()
    }

    /// Seat holds of every inventory whose deadline is before `t`: the reservations a sweeper
    /// must expire, e.g. after a restart when in-memory timers are gone.
    pub fn holds_expiring_before(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> impl Iterator<Item = (ReservationId, chrono::DateTime<chrono::Utc>)> + '_ {
        self.inventories.values().flat_map(move |inventory| inventory.holds_expiring_before(t))
    }
}

/// The environments of the four reducers.
#[derive(Debug, Clone)]
pub struct TicketingEnv {
    /// Event.
    pub event: EventEnv,
    /// Inventory.
    pub inventory: InventoryEnv,
    /// Reservation.
    pub reservation: ReservationEnv,
    /// Payment.
    pub payment: PaymentEnv,
}

impl TicketingEnv {
    /// All four reading `clock`, payments through `gateway`, default hold duration.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self {
            event: EventEnv::new(Arc::clone(&clock)),
            inventory: InventoryEnv::new(Arc::clone(&clock)),
            reservation: ReservationEnv::new(Arc::clone(&clock)),
            payment: PaymentEnv::new(clock, gateway),
        }
    }
}

/// The composite reducer: routes each action to the instance it addresses and turns persisted
/// events into the saga's next commands.
///
/// Two additions to the child reducers' behaviour, both because only the composite sees more
/// than one aggregate:
/// - `InitiateReservation` is refused with [`ReservationError::NotOnSale`] unless the event exists,
///   is on sale and has the section;
/// - when Inventory refuses `ReserveSeats` with `InsufficientInventory`, the rejection is returned
///   as usual (nothing changes) together with a follow-up `RecordSeatShortage` for the
///   reservation, which then ends Compensated.
///
/// ```
/// use std::sync::Arc;
/// use boxoffice::prelude::*;
/// use chrono::{TimeZone, Utc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap());
/// let env = TicketingEnv::new(Arc::new(clock.clone()), Arc::new(SimulatedGateway::always_succeed()));
/// let store = Store::new(Ticketing, TicketingState::default(), env, Arc::new(clock.clone()));
///
/// let event_id = EventId::new_v4();
/// let stalls = SectionName::new("Stalls")?;
/// let price = Money::new(2_500, Currency::EUR);
/// store.send(EventAction::CreateEvent {
///     event_id,
///     name: "Rust Fest".into(),
///     venue: Venue::new(VenueId::new_v4(), "Hall")?,
///     date: clock.now() + chrono::Duration::days(30),
///     sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(100)? }],
///     pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls.clone(), price, None)?],
/// }.into()).await?;
/// store.send(EventAction::PublishEvent { event_id }.into()).await?;
/// store.send(EventAction::OpenSales { event_id }.into()).await?;
///
/// let reservation_id = ReservationId::new_v4();
/// store.send(ReservationAction::InitiateReservation {
///     reservation_id,
///     event_id,
///     section: stalls.clone(),
///     quantity: 2,
///     customer_id: CustomerId::new_v4(),
///     unit_price: price,
/// }.into()).await?;
/// store.settled().await; // seats held
/// store.send(ReservationAction::RequestPayment { reservation_id, payment_token: "tok_visa".into() }.into()).await?;
/// store.settled().await; // paid, seats sold
///
/// let (status, available) = store.with_state(|s| {
///     (s.reservation(reservation_id).map(|r| r.status), s.inventory(event_id, &stalls).map(|i| i.available()))
/// }).await;
/// assert_eq!(status, Some(ReservationStatus::Completed));
/// assert_eq!(available, Some(98));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticketing;

impl Reducer for Ticketing {
    type State = TicketingState;
    type Action = TicketingAction;
    type Env = TicketingEnv;

    fn reduce(
        &self,
        state: &mut TicketingState,
        action: TicketingAction,
        env: &TicketingEnv,
    ) -> Effects<TicketingAction> {
        let is_command = action.is_command();
        let mut effects = route(state, action, env);
        if !is_command {
            return effects;
        }
        let follow_ups: SmallVec<[TicketingAction; 4]> = effects
            .iter()
            .flat_map(|effect| match effect {
                Effect::Persist(events) => events.iter().flat_map(saga_reactions).collect(),
                Effect::Reject(rejection) => rejection_reactions(rejection),
                _ => SmallVec::new(),
            })
            .collect();
        let deadlines: SmallVec<[Effect<TicketingAction>; 1]> = effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Persist(events) => Some(events.iter().filter_map(|event| hold_timer(event, env))),
                _ => None,
            })
            .flatten()
            .collect();
        effects.extend(follow_ups.into_iter().map(Effect::send));
        effects.extend(deadlines);
        effects
    }
}

/// In-process, a hold is enforced by a timer that sends `ExpireReservation` at `expires_at`.
/// (The assembled system uses a durable sweep over the log instead, which survives restarts.)
fn hold_timer(event: &TicketingAction, env: &TicketingEnv) -> Option<Effect<TicketingAction>> {
    let TicketingAction::Reservation(ReservationAction::ReservationInitiated { reservation_id, expires_at, .. }) =
        event
    else {
        return None;
    };
    let duration = (*expires_at - env.reservation.clock.now()).to_std().unwrap_or_default();
    Some(Effect::Delay {
        duration,
        action: Box::new(TicketingAction::Reservation(ReservationAction::ExpireReservation {
            reservation_id: *reservation_id,
        })),
    })
}

/// The saga's answer to a refused command, for the refusals it must hear about although
/// nothing was persisted: `InsufficientInventory` becomes `RecordSeatShortage`, which ends the
/// reservation Compensated. Every other rejection yields nothing. Like [`saga_reactions`] it is
/// pure, so the system layer reuses it.
#[must_use]
pub fn rejection_reactions(rejection: &TicketingAction) -> SmallVec<[TicketingAction; 2]> {
    match rejection {
        TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::InsufficientInventory {
            reservation_id,
            requested,
            available,
        })) => smallvec![TicketingAction::Reservation(ReservationAction::RecordSeatShortage {
            reservation_id: *reservation_id,
            requested: *requested,
            available: *available,
        })],
        _ => smallvec![],
    }
}

fn route(state: &mut TicketingState, action: TicketingAction, env: &TicketingEnv) -> Effects<TicketingAction> {
    match action {
        TicketingAction::Event(a) => {
            let Some(id) = a.event_id() else { return smallvec![] };
            let effects = on_child(&mut state.events, id, |child| EventReducer.reduce(child, a, &env.event));
            lift(effects, TicketingAction::Event)
        }
        TicketingAction::Inventory(a) => {
            let Some((event, section)) = a.key() else { return smallvec![] };
            let key = (event, section.clone());
            let effects =
                on_child(&mut state.inventories, key, |child| InventoryReducer.reduce(child, a, &env.inventory));
            lift(effects, TicketingAction::Inventory)
        }
        TicketingAction::Reservation(a) => {
            let Some(id) = a.reservation_id() else { return smallvec![] };
            if let ReservationAction::InitiateReservation { event_id, section, .. } = &a
                && !state.reservations.contains_key(&id)
                && !state.events.get(event_id).is_some_and(|e| e.is_on_sale() && e.section(section).is_some())
            {
                let error = ReservationError::NotOnSale { event_id: *event_id, section: section.clone() };
                return smallvec![Effect::Reject(Box::new(TicketingAction::Reservation(ReservationAction::Rejected(
                    error
                ))))];
            }
            let effects =
                on_child(&mut state.reservations, id, |child| ReservationReducer.reduce(child, a, &env.reservation));
            lift(effects, TicketingAction::Reservation)
        }
        TicketingAction::Payment(a) => {
            let Some(id) = a.payment_id() else { return smallvec![] };
            let effects = on_child(&mut state.payments, id, |child| PaymentReducer.reduce(child, a, &env.payment));
            lift(effects, TicketingAction::Payment)
        }
    }
}

/// Runs `reduce` on the instance at `key`. An instance that does not exist yet is only added
/// when the reduction changed it, so a refused command for an unknown id leaves the maps as
/// they were (I9).
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

fn lift<A: Send + 'static>(effects: Effects<A>, wrap: fn(A) -> TicketingAction) -> Effects<TicketingAction> {
    effects.into_iter().map(|e| e.map(wrap)).collect()
}

/// The reservation saga as a pure function: the commands that must follow a persisted `event`.
/// Anything that is not a persisted event yields nothing.
///
/// | Persisted event | Follow-up command |
/// |---|---|
/// | `EventCreated` | `InitializeInventory` for each section |
/// | `ReservationInitiated` | `ReserveSeats` |
/// | `SeatsReserved` | `AllocateSeats` |
/// | `PaymentRequested` | `ProcessPayment` |
/// | Payment `PaymentSucceeded` | `CompletePayment` |
/// | Payment `PaymentFailed` | `FailPayment` |
/// | `ReservationCompleted` | `ConfirmReservation` |
/// | `ReservationExpired` / `Cancelled` / `Compensated` with seats, `SeatsReturned` | `ReleaseReservation` |
/// | Reservation `PaymentSucceeded` with `refund_owed` | `RefundPayment` of the whole amount |
///
/// Commands it produces are idempotent, so feeding it a redelivered event is harmless.
#[must_use]
pub fn saga_reactions(event: &TicketingAction) -> SmallVec<[TicketingAction; 2]> {
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
                T::Inventory(InventoryAction::InitializeInventory {
                    event_id: details.event_id,
                    section: s.name.clone(),
                    capacity: s.capacity,
                })
            })
            .collect(),
        T::Reservation(ReservationAction::ReservationInitiated {
            reservation_id,
            event_id,
            section,
            quantity,
            expires_at,
            ..
        }) => smallvec![T::Inventory(InventoryAction::ReserveSeats {
            event_id: *event_id,
            section: section.clone(),
            reservation_id: *reservation_id,
            quantity: *quantity,
            expires_at: *expires_at,
        })],
        T::Inventory(InventoryAction::SeatsReserved { reservation_id, seats, .. }) => {
            smallvec![T::Reservation(ReservationAction::AllocateSeats {
                reservation_id: *reservation_id,
                seats: seats.iter().map(|s| s.seat_id).collect(),
            })]
        }
        T::Reservation(ReservationAction::PaymentRequested { reservation_id, payment_id, amount, payment_token }) => {
            smallvec![T::Payment(PaymentAction::ProcessPayment {
                payment_id: *payment_id,
                reservation_id: *reservation_id,
                amount: *amount,
                payment_token: payment_token.clone(),
            })]
        }
        T::Payment(PaymentAction::PaymentSucceeded { payment_id, reservation_id, amount, .. }) => {
            smallvec![T::Reservation(ReservationAction::CompletePayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                amount: *amount,
            })]
        }
        T::Payment(PaymentAction::PaymentFailed { payment_id, reservation_id, reason, .. }) => {
            smallvec![T::Reservation(ReservationAction::FailPayment {
                reservation_id: *reservation_id,
                payment_id: *payment_id,
                reason: reason.clone(),
            })]
        }
        T::Reservation(ReservationAction::ReservationCompleted { reservation_id, event_id, section, .. }) => {
            smallvec![T::Inventory(InventoryAction::ConfirmReservation {
                event_id: *event_id,
                section: section.clone(),
                reservation_id: *reservation_id,
            })]
        }
        T::Reservation(ReservationAction::ReservationExpired { reservation_id, event_id, section, seats, .. })
            if !seats.is_empty() =>
        {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::Expired)]
        }
        T::Reservation(ReservationAction::ReservationCancelled {
            reservation_id, event_id, section, seats, ..
        }) if !seats.is_empty() => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::Cancelled)]
        }
        T::Reservation(ReservationAction::ReservationCompensated {
            reservation_id, event_id, section, seats, ..
        }) if !seats.is_empty() => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::PaymentFailed)]
        }
        T::Reservation(ReservationAction::SeatsReturned { reservation_id, event_id, section, .. }) => {
            smallvec![release(event_id, section, reservation_id, ReleaseReason::ReservationEnded)]
        }
        T::Reservation(ReservationAction::PaymentSucceeded { payment_id, amount, refund_owed: true, .. }) => {
            smallvec![T::Payment(PaymentAction::RefundPayment {
                payment_id: *payment_id,
                amount: *amount,
                reason: "payment arrived after the reservation ended".into(),
            })]
        }
        _ => smallvec![],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]
    use super::*;
    use crate::aggregates::event::Section;
    use crate::aggregates::payment::{GatewayOutcome, PaymentStatus, SimulatedGateway};
    use crate::aggregates::reservation::{CompensationReason, ReservationStatus};
    use crate::domain::{Capacity, Currency, CustomerId, Money, PaymentId, PricingTier, TierKind, Venue, VenueId};
    use crate::framework::{FixedClock, Store, StoreError};
    use async_trait::async_trait;
    use chrono::{DateTime, TimeZone, Utc};
    use std::time::Duration;
    use tokio::sync::{Notify, watch};

    /// A gateway that answers only when the test says so, to hold a payment in flight.
    #[derive(Debug)]
    struct GatedGateway {
        started: Notify,
        outcome: watch::Sender<Option<GatewayOutcome>>,
    }

    impl GatedGateway {
        fn new() -> Arc<Self> {
            Arc::new(Self { started: Notify::new(), outcome: watch::Sender::new(None) })
        }
        fn answer(&self, outcome: GatewayOutcome) {
            self.outcome.send_replace(Some(outcome));
        }
    }

    #[async_trait]
    impl PaymentGateway for GatedGateway {
        async fn charge(&self, _: PaymentId, _: Money, _: &str) -> GatewayOutcome {
            self.started.notify_one();
            let mut rx = self.outcome.subscribe();
            let outcome = rx.wait_for(Option::is_some).await.map(|o| o.clone());
            outcome.ok().flatten().unwrap_or(GatewayOutcome::Declined { reason: "gateway gone".into() })
        }
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }
    fn event() -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(42))
    }
    fn stalls() -> SectionName {
        SectionName::new("Stalls").unwrap()
    }
    fn boxes() -> SectionName {
        SectionName::new("Box").unwrap()
    }

    struct Fixture {
        clock: FixedClock,
        store: Store<Ticketing>,
    }

    async fn on_sale(gateway: Arc<dyn PaymentGateway>) -> Fixture {
        let clock = FixedClock::new(start());
        let env = TicketingEnv::new(Arc::new(clock.clone()), gateway);
        let store = Store::new(Ticketing, TicketingState::default(), env, Arc::new(clock.clone()));
        let tier =
            |kind, section, price| PricingTier::new(kind, section, Money::new(price, Currency::EUR), None).unwrap();
        let create = EventAction::CreateEvent {
            event_id: event(),
            name: "Rust Fest".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
            date: start() + chrono::Duration::days(30),
            sections: vec![
                Section { name: stalls(), capacity: Capacity::new(10).unwrap() },
                Section { name: boxes(), capacity: Capacity::new(1).unwrap() },
            ],
            pricing_tiers: vec![tier(TierKind::Regular, stalls(), 2_500), tier(TierKind::Vip, boxes(), 10_000)],
        };
        for command in
            [create, EventAction::PublishEvent { event_id: event() }, EventAction::OpenSales { event_id: event() }]
        {
            store.send(TicketingAction::Event(command)).await.unwrap();
        }
        store.settled().await;
        Fixture { clock, store }
    }

    async fn reserve(
        f: &Fixture,
        section: SectionName,
        quantity: u32,
    ) -> Result<ReservationId, StoreError<TicketingAction>> {
        let reservation_id = ReservationId::new_v4();
        let unit_price = f.store.with_state(|s| s.events[&event()].price_at(&section, start())).await.unwrap();
        f.store
            .send(TicketingAction::Reservation(ReservationAction::InitiateReservation {
                reservation_id,
                event_id: event(),
                section,
                quantity,
                customer_id: CustomerId::new_v4(),
                unit_price,
            }))
            .await?;
        // The customer pays as soon as the seats are held.
        f.store.settled().await;
        if status(f, reservation_id).await == Some(ReservationStatus::SeatsAllocated) {
            let pay = ReservationAction::RequestPayment { reservation_id, payment_token: "tok_test".into() };
            f.store.send(TicketingAction::Reservation(pay)).await?;
        }
        Ok(reservation_id)
    }

    async fn status(f: &Fixture, id: ReservationId) -> Option<ReservationStatus> {
        f.store.with_state(|s| s.reservation(id).map(|r| r.status)).await
    }

    async fn counts(f: &Fixture, section: SectionName) -> (u32, u32, u32) {
        f.store
            .with_state(|s| s.inventory(event(), &section).map(|i| (i.available(), i.reserved(), i.sold())))
            .await
            .unwrap()
    }

    async fn payment(f: &Fixture, id: ReservationId) -> Option<(PaymentStatus, i64)> {
        f.store
            .with_state(|s| {
                let p = s.payments.get(&PaymentId::for_reservation(id))?.payment.as_ref()?;
                Some((p.status, p.refunded.minor_units()))
            })
            .await
    }

    /// Lets spawned effects run until `done` holds; bounded so a broken saga fails instead of
    /// hanging. Used only while a gated payment keeps the store busy, where `settled` cannot help.
    async fn run_until(f: &Fixture, done: impl Fn(&TicketingState) -> bool) {
        for _ in 0..10_000 {
            if f.store.with_state(&done).await {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition not reached");
    }

    async fn names(f: &Fixture) -> Vec<&'static str> {
        f.store.history().await.unwrap().iter().map(Message::name).collect()
    }

    #[tokio::test]
    async fn purchase_completes_and_sells_seats() {
        let f = on_sale(Arc::new(SimulatedGateway::always_succeed())).await;
        assert_eq!(counts(&f, stalls()).await, (10, 0, 0));
        let id = reserve(&f, stalls(), 2).await.unwrap();
        f.store.settled().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Completed));
        assert_eq!(counts(&f, stalls()).await, (8, 0, 2));
        assert_eq!(payment(&f, id).await, Some((PaymentStatus::Succeeded, 0)));
        let total = f.store.with_state(|s| s.reservation(id).map(|r| r.total)).await;
        assert_eq!(total, Some(Money::new(5_000, Currency::EUR)));
        let names = names(&f).await;
        let flow = [
            "ReservationInitiated",
            "SeatsReserved",
            "SeatsAllocated",
            "PaymentRequested",
            "PaymentProcessed",
            "PaymentSucceeded",
            "PaymentSucceeded",
            "ReservationCompleted",
            "SeatsConfirmed",
        ];
        assert_eq!(&names[names.len() - flow.len()..], &flow);
    }

    #[tokio::test]
    async fn payment_failure_compensates_and_releases_seats() {
        let f = on_sale(Arc::new(SimulatedGateway::fail_next(1))).await;
        let id = reserve(&f, stalls(), 3).await.unwrap();
        f.store.settled().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Compensated));
        assert_eq!(counts(&f, stalls()).await, (10, 0, 0));
        assert_eq!(payment(&f, id).await, Some((PaymentStatus::Failed, 0)));
        assert!(names(&f).await.ends_with(&["ReservationCompensated", "SeatsReleased"]));
    }

    #[tokio::test]
    async fn hold_expires_after_five_minutes_and_a_late_decline_changes_nothing() {
        let gateway = GatedGateway::new();
        let f = on_sale(gateway.clone()).await;
        let id = reserve(&f, stalls(), 2).await.unwrap();
        gateway.started.notified().await;
        assert_eq!(counts(&f, stalls()).await, (8, 2, 0));
        let deadline = start() + chrono::Duration::minutes(5);
        let overdue = |t| f.store.with_state(move |s| s.holds_expiring_before(t).collect::<Vec<_>>());
        assert_eq!(overdue(deadline).await, vec![]);
        assert_eq!(overdue(deadline + chrono::Duration::seconds(1)).await, vec![(id, deadline)]);
        f.clock.advance(Duration::from_secs(299));
        tokio::task::yield_now().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::PaymentPending));
        f.clock.advance(Duration::from_secs(1));
        run_until(&f, |s| s.inventory(event(), &stalls()).is_some_and(|i| i.available() == 10)).await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Expired));
        gateway.answer(GatewayOutcome::Declined { reason: "late".into() });
        f.store.settled().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Expired));
        assert_eq!(counts(&f, stalls()).await, (10, 0, 0));
    }

    #[tokio::test]
    async fn late_payment_after_expiry_is_refunded() {
        let gateway = GatedGateway::new();
        let f = on_sale(gateway.clone()).await;
        let id = reserve(&f, stalls(), 2).await.unwrap();
        gateway.started.notified().await;
        f.clock.advance(Duration::from_secs(301));
        run_until(&f, |s| s.reservation(id).is_some_and(|r| r.status == ReservationStatus::Expired)).await;
        gateway.answer(GatewayOutcome::Approved);
        f.store.settled().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Expired));
        assert_eq!(payment(&f, id).await, Some((PaymentStatus::Succeeded, 5_000)));
        assert_eq!(counts(&f, stalls()).await, (10, 0, 0));
        assert!(names(&f).await.ends_with(&["PaymentSucceeded", "PaymentSucceeded", "PaymentRefunded"]));
    }

    #[tokio::test]
    async fn customer_cancellation_releases_seats() {
        let gateway = GatedGateway::new();
        let f = on_sale(gateway.clone()).await;
        let id = reserve(&f, boxes(), 1).await.unwrap();
        gateway.started.notified().await;
        let cancel = TicketingAction::Reservation(ReservationAction::CancelReservation { reservation_id: id });
        f.store.send(cancel).await.unwrap();
        gateway.answer(GatewayOutcome::Declined { reason: "abandoned".into() });
        f.store.settled().await;
        assert_eq!(status(&f, id).await, Some(ReservationStatus::Cancelled));
        assert_eq!(counts(&f, boxes()).await, (1, 0, 0));
        let released = f.store.history().await.unwrap().iter().filter(|e| e.name() == "SeatsReleased").count();
        assert_eq!(released, 1);
    }

    #[tokio::test]
    async fn last_seat_race_has_exactly_one_winner() {
        let f = on_sale(Arc::new(SimulatedGateway::always_succeed())).await;
        let (a, b) = tokio::join!(reserve(&f, boxes(), 1), reserve(&f, boxes(), 1));
        let (a, b) = (a.unwrap(), b.unwrap());
        f.store.settled().await;
        let mut outcomes = [status(&f, a).await.unwrap(), status(&f, b).await.unwrap()];
        outcomes.sort_by_key(|s| *s as u8);
        assert_eq!(outcomes, [ReservationStatus::Completed, ReservationStatus::Compensated]);
        assert_eq!(counts(&f, boxes()).await, (0, 0, 1));
        let loser = if status(&f, a).await == Some(ReservationStatus::Compensated) { a } else { b };
        let reason = f
            .store
            .with_state(|s| s.reservations[&loser].reservation.clone())
            .await
            .map(|r| (r.seats.len(), r.refund_owed));
        assert_eq!(reason, Some((0, None)));
        let compensated = f.store.history().await.unwrap().into_iter().find_map(|e| match e {
            TicketingAction::Reservation(ReservationAction::ReservationCompensated { reason, .. }) => Some(reason),
            _ => None,
        });
        assert_eq!(compensated, Some(CompensationReason::InsufficientInventory { requested: 1, available: 0 }));
    }

    #[tokio::test]
    async fn reservations_need_an_event_on_sale() {
        let f = on_sale(Arc::new(SimulatedGateway::always_succeed())).await;
        f.store.send(TicketingAction::Event(EventAction::CloseSales { event_id: event() })).await.unwrap();
        let refused = reserve(&f, stalls(), 1).await;
        assert!(matches!(
            refused,
            Err(StoreError::Rejected(TicketingAction::Reservation(ReservationAction::Rejected(
                ReservationError::NotOnSale { .. }
            ))))
        ));
        assert!(f.store.with_state(|s| s.reservations.is_empty()).await);
    }

    #[test]
    fn refused_commands_for_unknown_instances_create_nothing() -> Result<(), crate::framework::ReducerTestError> {
        let env = TicketingEnv::new(Arc::new(FixedClock::new(start())), Arc::new(SimulatedGateway::always_succeed()));
        let reservation_id = ReservationId::new_v4();
        let confirm = InventoryAction::ConfirmReservation { event_id: event(), section: stalls(), reservation_id };
        crate::framework::ReducerTest::new(Ticketing, env.clone()).when(confirm.into()).then_rejected(
            "no inventory",
            |a| {
                matches!(
                    a,
                    TicketingAction::Inventory(InventoryAction::Rejected(InventoryError::NotInitialized { .. }))
                )
            },
        )?;
        let refund = PaymentAction::RefundPayment {
            payment_id: PaymentId::for_reservation(reservation_id),
            amount: Money::new(1, Currency::EUR),
            reason: String::new(),
        };
        crate::framework::ReducerTest::new(Ticketing, env)
            .when(refund.into())
            .then_rejected("no payment", |a| a.kind() == MessageKind::Rejection)?
            .then_state("no instance", |s| s.payments.is_empty())?;
        Ok(())
    }

    #[test]
    fn saga_ignores_commands_and_initialises_every_section() {
        let cancel = TicketingAction::Reservation(ReservationAction::CancelReservation {
            reservation_id: ReservationId::new_v4(),
        });
        assert!(saga_reactions(&cancel).is_empty());
        let details = crate::aggregates::event::EventDetails {
            event_id: event(),
            name: "x".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
            date: start(),
            sections: vec![
                Section { name: stalls(), capacity: Capacity::new(10).unwrap() },
                Section { name: boxes(), capacity: Capacity::new(1).unwrap() },
            ],
            pricing_tiers: Vec::new(),
        };
        let created = TicketingAction::Event(EventAction::EventCreated { details, created_at: start() });
        let reactions = saga_reactions(&created);
        assert_eq!(reactions.len(), 2);
        assert!(reactions.iter().all(|r| r.name() == "InitializeInventory"));
    }

    #[test]
    fn composite_names_and_serde_delegate_to_the_child() {
        let action = TicketingAction::Reservation(ReservationAction::ExpireReservation {
            reservation_id: ReservationId::new_v4(),
        });
        assert_eq!(action.name(), "ExpireReservation");
        assert!(action.is_command());
        let json = serde_json::to_string(&action).unwrap();
        assert_eq!(serde_json::from_str::<TicketingAction>(&json).unwrap(), action);
    }
}
