//! Property tests for the invariants of DESIGN.md over random command sequences, run on the
//! `Ticketing` composite with a synchronous driver: follow-up actions wait in an inbox and are
//! delivered in random order (and redelivered), timers fire when the test moves the clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{
    HoldStatus, InventoryAction, PaymentAction, PaymentStatus, ReservationAction, ReservationStatus, Section,
    SimulatedGateway, Ticketing, TicketingAction, TicketingEnv, TicketingState,
};
use boxoffice::domain::{
    Capacity, Currency, CustomerId, EventId, Money, PaymentId, PricingTier, ReservationId, SectionName, TierKind,
    Venue, VenueId,
};
use boxoffice::framework::{Clock, Effect, FixedClock, Message, Reducer};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

const CAPACITIES: [u32; 2] = [3, 5];
const RESERVATION_SLOTS: u128 = 6;

#[derive(Debug, Clone)]
enum Op {
    Initiate { slot: u128, section: usize, quantity: u32 },
    Cancel { slot: u128 },
    Expire { slot: u128 },
    FailPayment { slot: u128 },
    Refund { slot: u128, minor_units: i64 },
    Advance { seconds: u64 },
    Deliver { pick: usize },
    Redeliver { pick: usize },
    DeliverAll,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..RESERVATION_SLOTS;
    prop_oneof![
        3 => (slot.clone(), 0..CAPACITIES.len(), 1..=4u32).prop_map(|(slot, section, quantity)| Op::Initiate { slot, section, quantity }),
        1 => slot.clone().prop_map(|slot| Op::Cancel { slot }),
        1 => slot.clone().prop_map(|slot| Op::Expire { slot }),
        1 => slot.clone().prop_map(|slot| Op::FailPayment { slot }),
        1 => (slot, 1..20_000i64).prop_map(|(slot, minor_units)| Op::Refund { slot, minor_units }),
        1 => (0..400u64).prop_map(|seconds| Op::Advance { seconds }),
        6 => any::<usize>().prop_map(|pick| Op::Deliver { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Redeliver { pick }),
        1 => Just(Op::DeliverAll),
    ]
}

fn scenario() -> impl Strategy<Value = (u32, Vec<Op>)> {
    (0..3u32, prop::collection::vec(op(), 1..40))
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().expect("valid date")
}
fn event() -> EventId {
    EventId::from_uuid(uuid::Uuid::from_u128(1))
}
fn section(i: usize) -> SectionName {
    SectionName::new(["Stalls", "Box"][i]).unwrap()
}
fn reservation(slot: u128) -> ReservationId {
    ReservationId::from_uuid(uuid::Uuid::from_u128(1_000 + slot))
}
fn price(i: usize) -> Money {
    Money::new([2_500, 10_000][i], Currency::EUR)
}

/// What one step did.
struct Step {
    rejected: bool,
    persisted: usize,
    before: TicketingState,
}

struct Harness {
    env: TicketingEnv,
    clock: FixedClock,
    state: TicketingState,
    log: Vec<TicketingAction>,
    inbox: Vec<TicketingAction>,
    delivered: Vec<TicketingAction>,
    timers: Vec<(DateTime<Utc>, TicketingAction)>,
    manual_refunds: Vec<PaymentId>,
}

impl Harness {
    fn new(gateway_failures: u32) -> Self {
        let clock = FixedClock::new(start());
        let env = TicketingEnv::new(Arc::new(clock.clone()), Arc::new(SimulatedGateway::fail_next(gateway_failures)));
        let mut h = Self {
            env,
            clock,
            state: TicketingState::default(),
            log: Vec::new(),
            inbox: Vec::new(),
            delivered: Vec::new(),
            timers: Vec::new(),
            manual_refunds: Vec::new(),
        };
        let tiers = (0..2).map(|i| PricingTier::new(TierKind::Regular, section(i), price(i), None).unwrap()).collect();
        let create = boxoffice::aggregates::EventAction::CreateEvent {
            event_id: event(),
            name: "Property Fest".into(),
            venue: Venue::new(VenueId::from_uuid(uuid::Uuid::from_u128(2)), "Hall").unwrap(),
            date: start() + chrono::Duration::days(10),
            sections: (0..2)
                .map(|i| Section { name: section(i), capacity: Capacity::new(CAPACITIES[i]).unwrap() })
                .collect(),
            pricing_tiers: tiers,
        };
        for command in [
            create,
            boxoffice::aggregates::EventAction::PublishEvent { event_id: event() },
            boxoffice::aggregates::EventAction::OpenSales { event_id: event() },
        ] {
            assert!(!h.send(TicketingAction::Event(command)).rejected);
        }
        h.deliver_all();
        h
    }

    fn send(&mut self, action: TicketingAction) -> Step {
        let before = self.state.clone();
        let effects = Ticketing.reduce(&mut self.state, action, &self.env);
        let logged = self.log.len();
        let mut rejected = false;
        for effect in effects {
            self.run(effect, &mut rejected);
        }
        Step { rejected, persisted: self.log.len() - logged, before }
    }

    fn run(&mut self, effect: Effect<TicketingAction>, rejected: &mut bool) {
        match effect {
            Effect::None => {}
            Effect::Persist(events) => self.log.extend(events),
            Effect::Reject(_) => *rejected = true,
            Effect::Future(future) => self.inbox.extend(futures::executor::block_on(future)),
            Effect::Delay { duration, action } => {
                let due = self.clock.now() + chrono::Duration::from_std(duration).unwrap();
                self.timers.push((due, *action));
            }
            Effect::Parallel(effects) | Effect::Sequential(effects) => {
                for effect in effects {
                    self.run(effect, rejected);
                }
            }
        }
    }

    fn deliver(&mut self, pick: usize) -> Option<Step> {
        if self.inbox.is_empty() {
            return None;
        }
        let action = self.inbox.remove(pick % self.inbox.len());
        self.delivered.push(action.clone());
        Some(self.send(action))
    }

    fn deliver_all(&mut self) {
        while !self.inbox.is_empty() {
            self.deliver(0);
        }
    }

    fn advance(&mut self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
        let now = self.clock.now();
        let (due, waiting): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|(at, _)| *at <= now);
        self.timers = waiting;
        self.inbox.extend(due.into_iter().map(|(_, action)| action));
    }

    fn apply(&mut self, op: &Op) -> Option<Step> {
        let command = match *op {
            Op::Initiate { slot, section: s, quantity } => ReservationAction::InitiateReservation {
                reservation_id: reservation(slot),
                event_id: event(),
                section: section(s),
                quantity,
                customer_id: CustomerId::from_uuid(uuid::Uuid::from_u128(7)),
                unit_price: price(s),
            }
            .into(),
            Op::Cancel { slot } => ReservationAction::CancelReservation { reservation_id: reservation(slot) }.into(),
            Op::Expire { slot } => ReservationAction::ExpireReservation { reservation_id: reservation(slot) }.into(),
            Op::FailPayment { slot } => TicketingAction::Payment(PaymentAction::SimulatePaymentFailure {
                payment_id: PaymentId::for_reservation(reservation(slot)),
                reason: "simulated".into(),
            }),
            Op::Refund { slot, minor_units } => {
                let payment_id = PaymentId::for_reservation(reservation(slot));
                self.manual_refunds.push(payment_id);
                TicketingAction::Payment(PaymentAction::RefundPayment {
                    payment_id,
                    amount: Money::new(minor_units, Currency::EUR),
                    reason: "goodwill".into(),
                })
            }
            Op::Advance { seconds } => {
                self.advance(seconds);
                return None;
            }
            Op::Deliver { pick } => return self.deliver(pick),
            Op::Redeliver { pick } => {
                let action = self.delivered.get(pick % self.delivered.len().max(1))?.clone();
                return Some(self.send(action));
            }
            Op::DeliverAll => {
                self.deliver_all();
                return None;
            }
        };
        Some(self.send(command))
    }

    /// Lets everything in flight finish and every hold run out, as a system left alone would.
    fn quiesce(&mut self) {
        self.deliver_all();
        self.advance(3_600);
        self.deliver_all();
    }

    fn check_no_oversell(&self) -> Result<(), TestCaseError> {
        for ((_, name), inventory) in &self.state.inventories {
            prop_assert!(inventory.reserved() + inventory.sold() <= inventory.capacity(), "oversold {name}");
            let mut seats: Vec<_> = inventory
                .holds()
                .filter(|(_, h)| h.status != HoldStatus::Released)
                .flat_map(|(_, h)| h.seats.iter().map(|s| s.seat_id))
                .collect();
            let live = seats.len();
            seats.sort();
            seats.dedup();
            prop_assert_eq!(seats.len(), live, "a seat is in two live holds in {}", name);
            prop_assert_eq!(u32::try_from(live).unwrap(), inventory.reserved() + inventory.sold());
        }
        Ok(())
    }
}

fn run(
    failures: u32,
    ops: &[Op],
    mut after_step: impl FnMut(&Harness, &Step) -> Result<(), TestCaseError>,
) -> Result<Harness, TestCaseError> {
    let mut h = Harness::new(failures);
    for op in ops {
        if let Some(step) = h.apply(op) {
            after_step(&h, &step)?;
        }
    }
    h.quiesce();
    Ok(h)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// I1 (and I2): reserved + sold never exceeds capacity, and no seat is in two live holds.
    #[test]
    fn i1_no_oversell_after_any_step((failures, ops) in scenario()) {
        let h = run(failures, &ops, |h, _| h.check_no_oversell())?;
        h.check_no_oversell()?;
    }

    /// I3: every reservation ends in exactly one terminal state; its seats are released exactly
    /// once unless it completed, in which case they are sold.
    #[test]
    fn i3_every_reservation_ends_once((failures, ops) in scenario()) {
        let h = run(failures, &ops, |_, _| Ok(()))?;
        let mut terminal_events: HashMap<ReservationId, usize> = HashMap::new();
        let mut releases: HashMap<ReservationId, usize> = HashMap::new();
        for event in &h.log {
            match event {
                TicketingAction::Reservation(
                    ReservationAction::ReservationCompleted { reservation_id, .. }
                    | ReservationAction::ReservationExpired { reservation_id, .. }
                    | ReservationAction::ReservationCancelled { reservation_id, .. }
                    | ReservationAction::ReservationCompensated { reservation_id, .. },
                ) => *terminal_events.entry(*reservation_id).or_default() += 1,
                TicketingAction::Inventory(InventoryAction::SeatsReleased { reservation_id, .. }) => {
                    *releases.entry(*reservation_id).or_default() += 1;
                }
                _ => {}
            }
        }
        for (id, state) in &h.state.reservations {
            let r = state.reservation.as_ref().unwrap();
            prop_assert!(r.status.is_terminal(), "{id} stuck in {:?}", r.status);
            prop_assert_eq!(terminal_events.get(id).copied(), Some(1));
            let inventory = h.state.inventory(r.event_id, &r.section).unwrap();
            let released = releases.get(id).copied().unwrap_or(0);
            match inventory.hold(*id).map(|hold| hold.status) {
                Some(HoldStatus::Confirmed) => {
                    prop_assert_eq!(r.status, ReservationStatus::Completed);
                    prop_assert_eq!(released, 0);
                }
                Some(HoldStatus::Released) => {
                    prop_assert_ne!(r.status, ReservationStatus::Completed);
                    prop_assert_eq!(released, 1);
                }
                Some(HoldStatus::Reserved) => prop_assert!(false, "{id} still holds seats"),
                None => {
                    prop_assert_ne!(r.status, ReservationStatus::Completed);
                    prop_assert_eq!(released, 0);
                }
            }
        }
        for inventory in h.state.inventories.values() {
            prop_assert_eq!(inventory.reserved(), 0);
        }
    }

    /// I4: revenue equals successful payments minus refunds, refunds never exceed what was
    /// paid, money owed back after a late payment is refunded, and nothing overflows.
    #[test]
    fn i4_money_adds_up((failures, ops) in scenario()) {
        let h = run(failures, &ops, |_, _| Ok(()))?;
        let mut ledger = Money::zero(Currency::EUR);
        let mut paid: HashMap<PaymentId, i64> = HashMap::new();
        let mut refunded: HashMap<PaymentId, i64> = HashMap::new();
        for event in &h.log {
            match event {
                TicketingAction::Payment(PaymentAction::PaymentSucceeded { payment_id, amount, .. }) => {
                    ledger = ledger.checked_add(*amount).unwrap();
                    *paid.entry(*payment_id).or_default() += amount.minor_units();
                }
                TicketingAction::Payment(PaymentAction::PaymentRefunded { payment_id, amount, .. }) => {
                    ledger = ledger.checked_sub(*amount).unwrap();
                    *refunded.entry(*payment_id).or_default() += amount.minor_units();
                    prop_assert!(refunded[payment_id] <= paid.get(payment_id).copied().unwrap_or(0));
                }
                _ => {}
            }
        }
        let mut revenue = 0i64;
        for state in h.state.payments.values() {
            let p = state.payment.as_ref().unwrap();
            prop_assert!(p.refunded.minor_units() >= 0 && p.refunded.minor_units() <= p.amount.minor_units());
            if p.status == PaymentStatus::Succeeded {
                revenue += p.amount.minor_units() - p.refunded.minor_units();
            } else {
                prop_assert_eq!(p.refunded.minor_units(), 0);
            }
        }
        prop_assert_eq!(ledger.minor_units(), revenue);
        for state in h.state.reservations.values() {
            let r = state.reservation.as_ref().unwrap();
            let payment = r.payment_id.and_then(|id| h.state.payments.get(&id)?.payment.clone());
            if let (Some(owed), Some(p)) = (r.refund_owed, payment.as_ref()) {
                if !h.manual_refunds.contains(&p.payment_id) {
                    prop_assert_eq!(p.refunded, owed);
                }
            }
            if r.status == ReservationStatus::Completed {
                prop_assert_eq!(payment.map(|p| (p.status, p.amount)), Some((PaymentStatus::Succeeded, r.total)));
            }
        }
    }

    /// I5: folding the persisted events, stored as JSON, through a fresh reducer rebuilds the live
    /// state. Also checks that every stored event's JSON tag is its stable `Message::name`.
    #[test]
    fn i5_replay_rebuilds_live_state((failures, ops) in scenario()) {
        let h = run(failures, &ops, |_, _| Ok(()))?;
        let mut replayed = TicketingState::default();
        for event in &h.log {
            prop_assert!(event.is_event());
            let json = serde_json::to_value(event).unwrap();
            let inner = json.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_object()).unwrap();
            prop_assert_eq!(inner.keys().next().map(String::as_str), Some(event.name()));
            let stored: TicketingAction = serde_json::from_value(json).unwrap();
            let effects = Ticketing.reduce(&mut replayed, stored, &h.env);
            prop_assert!(effects.is_empty());
        }
        prop_assert_eq!(replayed, h.state.clone());
    }

    /// I9: a rejected command changes nothing and persists nothing.
    #[test]
    fn i9_rejections_change_nothing((failures, ops) in scenario()) {
        run(failures, &ops, |h, step| {
            if step.rejected {
                prop_assert_eq!(step.persisted, 0);
                prop_assert_eq!(&step.before, &h.state);
            }
            Ok(())
        })?;
    }

    /// I4: checked money arithmetic agrees with exact arithmetic or reports overflow; it never
    /// panics or wraps.
    #[test]
    fn i4_money_arithmetic_is_exact_or_an_error(a in any::<i64>(), b in any::<i64>(), q in any::<u32>()) {
        let (x, y) = (Money::new(a, Currency::EUR), Money::new(b, Currency::EUR));
        let exact = |v: i128| i64::try_from(v).ok();
        prop_assert_eq!(x.checked_add(y).ok().map(|m| m.minor_units()), exact(i128::from(a) + i128::from(b)));
        prop_assert_eq!(x.checked_sub(y).ok().map(|m| m.minor_units()), exact(i128::from(a) - i128::from(b)));
        prop_assert_eq!(x.checked_mul(q).ok().map(|m| m.minor_units()), exact(i128::from(a) * i128::from(q)));
        prop_assert!(x.checked_add(Money::new(b, Currency::USD)).is_err());
    }
}
