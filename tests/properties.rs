//! Property tests for the invariants of DESIGN.md (I1-I5, I9), run on the engine users run: a
//! fresh [`TicketingSystem`] per case (in-memory store, [`FixedClock`], a scripted payment
//! gateway), driven through its public API only by random op sequences: single calls, concurrent
//! bursts of calls, clock advances followed by `settled()` (holds expire through the durable
//! sweep), retried reserves with the same idempotency key, declines, cancellations, refunds and
//! bad input. After the last op the clock passes every deadline and the system settles; the
//! properties then read the log (`event_store().read_all`), decode it with
//! [`TicketingAction::decode`] and fold it through the public reducers.
//!
//! Every case builds its own system on one shared multi-thread runtime (two workers), so the
//! engine's per-stream workers, group commit and conflict retry run truly in parallel with the
//! log follower, the expiry sweeper and the read models.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod property_support;

use std::collections::{HashMap, HashSet};

use boxoffice::aggregates::{
    AllowanceReducer, AllowanceState, EventReducer, EventState, EventStatus, HoldStatus, InventoryAction,
    InventoryReducer, InventoryState, PaymentAction, PaymentReducer, PaymentState, PaymentStatus, ReservationAction,
    ReservationReducer, ReservationState, ReservationStatus, TicketingAction, TicketsReducer, TicketsState,
    inventory_stream,
};
use boxoffice::domain::{Currency, Money, ReservationId, SeatId};
use boxoffice::event_store::StreamId;
use boxoffice::framework::{Message, MessageKind, Reducer};
use proptest::prelude::*;

use property_support::{CAPACITIES, Call, Outcome, Record, Trace, run_case, scenario, section};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() }
}

/// I1 and I2 over the whole log: folding every inventory stream event by event (every prefix of
/// the log), reserved + sold never exceeds the section's capacity, no seat is in two live holds,
/// every seat index is inside the section, and no reservation ever gets seats twice from one
/// section (a basket gets them once from each of its sections). Retried
/// reserves with the same idempotency key return the same hold.
fn check_no_oversell(trace: &Trace) -> Result<(), TestCaseError> {
    let capacity: HashMap<StreamId, u32> =
        (0..CAPACITIES.len()).map(|i| (inventory_stream(trace.event, &section(i)).unwrap(), CAPACITIES[i])).collect();
    let mut states: HashMap<StreamId, InventoryState> = HashMap::new();
    let mut live: HashMap<StreamId, HashMap<SeatId, ReservationId>> = HashMap::new();
    let mut held_once: HashSet<(StreamId, ReservationId)> = HashSet::new();
    for (envelope, action) in &trace.log {
        let TicketingAction::Inventory(event) = action else { continue };
        let stream = &envelope.stream_id;
        let state = states.entry(stream.clone()).or_default();
        let effects = InventoryReducer.reduce(state, event.clone(), &trace.env.inventory);
        prop_assert!(effects.is_empty(), "folding {} produced effects", event.name());
        let seats = live.entry(stream.clone()).or_default();
        match event {
            InventoryAction::SeatsReserved { reservation_id, seats: taken, .. } => {
                let once = held_once.insert((stream.clone(), *reservation_id));
                prop_assert!(once, "{} was given seats twice in {}", reservation_id, stream);
                for seat in taken {
                    if let Some(cap) = capacity.get(stream) {
                        prop_assert!(seat.index < *cap, "seat index {} outside a section of {}", seat.index, cap);
                    }
                    let before = seats.insert(seat.seat_id, *reservation_id);
                    prop_assert!(before.is_none(), "seat {} held by {:?} and {}", seat.seat_id, before, reservation_id);
                }
            }
            InventoryAction::SeatsReleased { reservation_id, seats: freed, .. } => {
                for seat in freed {
                    prop_assert_eq!(seats.remove(&seat.seat_id), Some(*reservation_id), "released a seat not held");
                }
            }
            InventoryAction::SeatsConfirmed { reservation_id, seats: sold, .. } => {
                for seat in sold {
                    prop_assert_eq!(seats.get(&seat.seat_id), Some(reservation_id), "sold a seat not held");
                }
            }
            InventoryAction::SoldSeatsReturned { reservation_id, seats: returned, .. } => {
                for seat in returned {
                    prop_assert_eq!(seats.remove(&seat.seat_id), Some(*reservation_id), "returned a seat not sold");
                }
            }
            _ => {}
        }
        let taken = u32::try_from(seats.len()).unwrap();
        prop_assert!(
            state.reserved() + state.sold() <= state.capacity(),
            "oversold {} at {}",
            stream,
            envelope.global_position
        );
        prop_assert_eq!(taken, state.reserved() + state.sold(), "seat count and counters disagree in {}", stream);
        if let Some(cap) = capacity.get(stream) {
            // Free + held + sold = capacity at every point, refunds included.
            prop_assert_eq!(state.available() + taken, *cap, "free seats and taken seats miss capacity in {}", stream);
        }
        if let Some(cap) = capacity.get(stream) {
            prop_assert!(
                taken <= *cap,
                "{} seats taken in a section of {} at position {}",
                taken,
                cap,
                envelope.global_position
            );
        }
    }
    check_retries_return_the_same_hold(trace)
}

/// Redelivery: every reserve with the same customer and idempotency key addresses the same
/// reservation, and every one that returned a hold returned the same seats.
fn check_retries_return_the_same_hold(trace: &Trace) -> Result<(), TestCaseError> {
    let mut first_hold: HashMap<ReservationId, Vec<SeatId>> = HashMap::new();
    for record in &trace.records {
        let (Call::Reserve { keyed: true, .. }, Outcome::Held(held)) = (&record.call, &record.outcome) else {
            continue;
        };
        prop_assert_eq!(Some(held.reservation_id), record.target, "a keyed reserve answered for another reservation");
        let seats = first_hold.entry(held.reservation_id).or_insert_with(|| held.seats.clone());
        prop_assert_eq!(&*seats, &held.seats, "a retried reserve returned other seats");
    }
    Ok(())
}

/// I3: once every deadline has passed and the system settled, every reservation has exactly one
/// terminal event and a terminal status; in each section it held, its seats were confirmed once
/// if it completed (and a completed one held in every section of its order), else released
/// exactly once if it ever got any; no seat is still held.
fn check_every_reservation_ends_once(trace: &Trace) -> Result<(), TestCaseError> {
    #[derive(Default)]
    struct Count {
        initiated: usize,
        terminal: usize,
        reserved: usize,
        released: usize,
        confirmed: usize,
    }
    let mut counts: HashMap<ReservationId, Count> = HashMap::new();
    let mut holds: HashMap<ReservationId, HashMap<StreamId, Count>> = HashMap::new();
    let mut inventories: HashMap<StreamId, InventoryState> = HashMap::new();
    for (envelope, action) in &trace.log {
        match action {
            TicketingAction::Reservation(event) => {
                let Some(id) = event.reservation_id() else { continue };
                let count = counts.entry(id).or_default();
                if matches!(event, ReservationAction::ReservationInitiated { .. }) {
                    count.initiated += 1;
                }
                if event.is_ending() {
                    count.terminal += 1;
                }
            }
            TicketingAction::Inventory(event) => {
                let state = inventories.entry(envelope.stream_id.clone()).or_default();
                InventoryReducer.reduce(state, event.clone(), &trace.env.inventory);
                let (id, field) = match event {
                    InventoryAction::SeatsReserved { reservation_id, .. } => (*reservation_id, 0),
                    InventoryAction::SeatsReleased { reservation_id, .. } => (*reservation_id, 1),
                    InventoryAction::SeatsConfirmed { reservation_id, .. } => (*reservation_id, 2),
                    _ => continue,
                };
                counts.entry(id).or_default();
                let count = holds.entry(id).or_default().entry(envelope.stream_id.clone()).or_default();
                *[&mut count.reserved, &mut count.released, &mut count.confirmed][field] += 1;
            }
            _ => {}
        }
    }
    for (id, count) in &counts {
        prop_assert_eq!(count.initiated, 1, "{} initiated {} times", id, count.initiated);
        prop_assert_eq!(count.terminal, 1, "{} has {} terminal events", id, count.terminal);
        let reservation = trace.reservations.get(id);
        let status = reservation.map(|r| r.status);
        prop_assert!(status.is_some_and(ReservationStatus::is_terminal), "{} stuck in {:?}", id, status);
        let held = holds.get(id).map_or(0, HashMap::len);
        if status == Some(ReservationStatus::Completed) {
            let lines = reservation.map_or(0, |r| r.order_lines().len());
            prop_assert_eq!(held, lines, "completed {} held in {} of its {} sections", id, held, lines);
        }
        for (stream, count) in holds.get(id).into_iter().flatten() {
            prop_assert!(count.reserved <= 1, "{} held seats {} times in {}", id, count.reserved, stream);
            if status == Some(ReservationStatus::Completed) {
                prop_assert_eq!((count.reserved, count.confirmed, count.released), (1, 1, 0), "completed {}", id);
            } else {
                prop_assert_eq!(count.confirmed, 0, "{} ended {:?} but its seats were sold", id, status);
                prop_assert_eq!(count.released, count.reserved, "{} ended {:?}: seats held/released", id, status);
            }
        }
    }
    for (stream, inventory) in &inventories {
        prop_assert_eq!(inventory.reserved(), 0, "seats still held in {} after every deadline", stream);
    }
    // Every reservation the API answered for is in the log.
    for record in &trace.records {
        if let Outcome::Held(held) = &record.outcome {
            prop_assert!(counts.contains_key(&held.reservation_id));
        }
    }
    Ok(())
}

/// I4: the Payment streams' successes minus refunds equal the `SalesAnalytics` revenue, a
/// payment's refunds never exceed it at any prefix (checked arithmetic), a completed purchase was
/// paid its total, money taken after a reservation ended went back, the gateway's answers are all
/// recorded, and the refund API refunds once, in full, only completed purchases.
fn check_money_adds_up(trace: &Trace) -> Result<(), TestCaseError> {
    let mut ledger = Money::zero(Currency::EUR);
    let mut paid: HashMap<ReservationId, Money> = HashMap::new();
    let mut failed: HashSet<ReservationId> = HashSet::new();
    let mut refunded: HashMap<ReservationId, Money> = HashMap::new();
    let mut owed: HashMap<ReservationId, Money> = HashMap::new();
    for (_, action) in &trace.log {
        match action {
            TicketingAction::Payment(PaymentAction::PaymentSucceeded { reservation_id, amount, .. }) => {
                prop_assert!(paid.insert(*reservation_id, *amount).is_none(), "{} paid twice", reservation_id);
                ledger = ledger.checked_add(*amount).unwrap();
            }
            TicketingAction::Payment(PaymentAction::PaymentFailed { reservation_id, .. }) => {
                prop_assert!(failed.insert(*reservation_id), "{} failed twice", reservation_id);
            }
            TicketingAction::Payment(PaymentAction::PaymentRefunded { reservation_id, amount, .. }) => {
                prop_assert!(amount.is_positive());
                ledger = ledger.checked_sub(*amount).unwrap();
                let total = refunded.entry(*reservation_id).or_insert_with(|| Money::zero(Currency::EUR));
                *total = total.checked_add(*amount).unwrap();
                let taken = paid.get(reservation_id).copied().unwrap_or_else(|| Money::zero(Currency::EUR));
                prop_assert!(
                    total.minor_units() <= taken.minor_units(),
                    "{} refunded {} of {}",
                    reservation_id,
                    total,
                    taken
                );
            }
            TicketingAction::Reservation(ReservationAction::PaymentSucceeded {
                reservation_id,
                amount,
                refund_owed: true,
                ..
            }) => {
                owed.insert(*reservation_id, *amount);
            }
            _ => {}
        }
    }
    prop_assert!(paid.keys().all(|id| !failed.contains(id)), "a payment both succeeded and failed");
    let revenue = trace.revenue.map_or(0, |m| m.minor_units());
    prop_assert_eq!(i128::from(ledger.minor_units()), revenue, "log ledger vs SalesAnalytics revenue");
    for (id, amount) in &owed {
        prop_assert_eq!(refunded.get(id), Some(amount), "late payment of {} not refunded", id);
    }
    for (id, r) in &trace.reservations {
        if r.status == ReservationStatus::Completed {
            prop_assert_eq!(paid.get(id), Some(&r.total), "completed {} without its payment", id);
        } else if let Some(amount) = paid.get(id) {
            prop_assert_eq!(owed.get(id), Some(amount), "{} ended {:?} yet kept a payment", id, r.status);
        }
    }
    // The gateway's answers: every approval and every decline is in the log.
    for (payment, approved) in &trace.charges {
        let reservation = trace.reservation_of_payment(*payment);
        let recorded =
            reservation.is_some_and(|id| if *approved { paid.contains_key(&id) } else { failed.contains(&id) });
        prop_assert!(recorded, "gateway answer for {} (approved: {}) not recorded", payment, approved);
    }
    // The refund APIs: only money taken is refundable through them (a completed purchase, or a
    // payment that arrived after its reservation ended, which the saga refunds too; only one of
    // them wins); `refund` gives back all that is left, so at most one of those succeeds per
    // reservation; `refund_tickets` gives back their price or what is left; together they never
    // give back more than was paid.
    let mut api_refunds: HashMap<ReservationId, Money> = HashMap::new();
    let mut whole_refunds: HashSet<ReservationId> = HashSet::new();
    for record in &trace.records {
        let (amount, id) = match (&record.call, &record.outcome, record.target) {
            (Call::Refund { .. }, Outcome::Refunded(amount), Some(id)) => {
                prop_assert!(whole_refunds.insert(id), "{} refunded twice through the API", id);
                (amount, id)
            }
            (Call::RefundTickets { .. }, Outcome::TicketsRefunded(amount), Some(id)) => (amount, id),
            _ => continue,
        };
        let total = api_refunds.entry(id).or_insert_with(|| Money::zero(Currency::EUR));
        *total = total.checked_add(*amount).unwrap();
        let taken = paid.get(&id).map_or(0, Money::minor_units);
        prop_assert!(total.minor_units() <= taken, "{} refunded {} of {} through the API", id, total, taken);
        let r = trace.reservations.get(&id);
        let refundable = r.is_some_and(|r| r.status == ReservationStatus::Completed || r.refund_owed.is_some());
        prop_assert!(refundable, "refunded {} although it is {:?}", id, r.map(|r| r.status));
    }
    for id in &whole_refunds {
        prop_assert_eq!(api_refunds.get(id), paid.get(id), "{} refunded in whole, yet not all of it", id);
    }
    api_refunds.retain(|_, amount| amount.is_positive());
    for (id, amount) in &refunded {
        let expected = api_refunds.get(id).or_else(|| owed.get(id));
        prop_assert_eq!(expected, Some(amount), "{} refunded by nobody's request", id);
    }
    Ok(())
}

/// I5: folding each stream's stored events through a fresh reducer (events only: no effects)
/// reproduces what the system reports: the reservation as `system.reservation(id)` returns it and
/// as `reserve` answered it, the availability read model per section, the `SalesAnalytics`
/// revenue, and the event's status.
fn check_replay_rebuilds_live_state(trace: &Trace) -> Result<(), TestCaseError> {
    let env = &trace.env;
    let mut events: HashMap<StreamId, EventState> = HashMap::new();
    let mut inventories: HashMap<StreamId, InventoryState> = HashMap::new();
    let mut reservations: HashMap<StreamId, ReservationState> = HashMap::new();
    let mut payments: HashMap<StreamId, PaymentState> = HashMap::new();
    let mut tickets: HashMap<StreamId, TicketsState> = HashMap::new();
    let mut allowances: HashMap<StreamId, AllowanceState> = HashMap::new();
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    for (envelope, action) in &trace.log {
        prop_assert_eq!(action.kind(), MessageKind::Event, "a stored {} is not an event", action.name());
        prop_assert_eq!(&*envelope.event_type, action.name());
        let version = versions.entry(envelope.stream_id.clone()).or_default();
        *version += 1;
        prop_assert_eq!(envelope.stream_version, *version, "gap or reorder in {}", envelope.stream_id);
        let stream = envelope.stream_id.clone();
        let no_effects = match action.clone() {
            TicketingAction::Event(a) => {
                EventReducer.reduce(events.entry(stream).or_default(), a, &env.event).is_empty()
            }
            TicketingAction::Inventory(a) => {
                InventoryReducer.reduce(inventories.entry(stream).or_default(), a, &env.inventory).is_empty()
            }
            TicketingAction::Reservation(a) => {
                ReservationReducer.reduce(reservations.entry(stream).or_default(), a, &env.reservation).is_empty()
            }
            TicketingAction::Payment(a) => {
                PaymentReducer.reduce(payments.entry(stream).or_default(), a, &env.payment).is_empty()
            }
            TicketingAction::Tickets(a) => {
                TicketsReducer.reduce(tickets.entry(stream).or_default(), a, &env.tickets).is_empty()
            }
            TicketingAction::Allowance(a) => {
                AllowanceReducer.reduce(allowances.entry(stream).or_default(), a, &()).is_empty()
            }
        };
        prop_assert!(no_effects, "replaying {} produced effects", action.name());
    }
    let folded: HashMap<ReservationId, _> =
        reservations.values().filter_map(|s| s.reservation.clone()).map(|r| (r.reservation_id, r)).collect();
    prop_assert_eq!(folded.len(), trace.reservations.len());
    for (id, live) in &trace.reservations {
        prop_assert_eq!(folded.get(id), Some(live), "replayed reservation {} differs from the API's", id);
    }
    for record in &trace.records {
        if let Outcome::Held(held) = &record.outcome {
            let r = folded.get(&held.reservation_id).unwrap();
            prop_assert_eq!((&r.seats, r.total, r.expires_at), (&held.seats, held.total, held.expires_at));
        }
        if let Outcome::Paid(receipt) = &record.outcome {
            let r = folded.get(&receipt.reservation_id).unwrap();
            prop_assert_eq!(r.status, ReservationStatus::Completed);
            prop_assert_eq!((&r.seats, r.total), (&receipt.seats, receipt.amount));
        }
    }
    for (i, availability) in trace.availability.iter().enumerate() {
        let stream = inventory_stream(trace.event, &section(i)).unwrap();
        let state = inventories.get(&stream).unwrap();
        let availability = availability.as_ref().unwrap();
        prop_assert_eq!(
            (availability.total_capacity, availability.reserved, availability.sold, availability.available),
            (state.capacity(), state.reserved(), state.sold(), state.available()),
            "availability of {} differs from the replayed inventory",
            section(i)
        );
        let seats = |status| {
            let mut seats: Vec<SeatId> = state
                .holds()
                .filter(|(_, h)| h.status == status)
                .flat_map(|(_, h)| h.seats.iter().map(|s| s.seat_id))
                .collect();
            seats.sort();
            seats
        };
        prop_assert_eq!(&availability.reserved_seats, &seats(HoldStatus::Reserved));
        prop_assert_eq!(&availability.sold_seats, &seats(HoldStatus::Confirmed));
    }
    let mut revenue = 0i64;
    for state in payments.values() {
        let p = state.payment.as_ref().unwrap();
        prop_assert!(p.refunded.minor_units() <= p.amount.minor_units());
        if p.status == PaymentStatus::Succeeded {
            revenue += p.amount.minor_units() - p.refunded.minor_units();
        }
        let r = folded.get(&p.reservation_id).unwrap();
        prop_assert_eq!(
            r.status == ReservationStatus::Completed,
            p.status == PaymentStatus::Succeeded && r.refund_owed.is_none()
        );
    }
    prop_assert_eq!(i128::from(revenue), trace.revenue.map_or(0, |m| m.minor_units()));
    let status_of = |event| events.get(&boxoffice::aggregates::event_stream(event).unwrap()).map(|s| s.status);
    prop_assert_eq!(status_of(trace.event), Some(EventStatus::SalesOpen));
    prop_assert_eq!(status_of(trace.draft_event), Some(EventStatus::Draft));
    Ok(())
}

/// I9: a call made alone (nothing else in flight: the system settled first) that returns a
/// domain error appends nothing and leaves the reservation it named as it was; and bad input is
/// refused: zero seats, a reserve for an event not on sale, an unknown reservation, a refund of a
/// purchase that did not complete or was refunded already, a keyed retry with other details; and
/// a reserve for more seats than the section has is answered short of seats and appends nothing.
fn check_rejections_change_nothing(trace: &Trace) -> Result<(), TestCaseError> {
    let mut refunded: HashSet<ReservationId> = HashSet::new();
    for record in &trace.records {
        let already_refunded = record.target.is_some_and(|id| refunded.contains(&id));
        if let Outcome::Refunded(_) = record.outcome {
            refunded.insert(record.target.unwrap());
        }
        let Some(alone) = &record.alone else { continue };
        let before = alone.reservation_before.as_ref().map(|r| r.status);
        let must_refuse = match &record.call {
            Call::Reserve { quantity: 0, .. } | Call::ReserveDraft { .. } => true,
            Call::Pay { .. } | Call::Cancel { .. } | Call::Refund { .. } if before.is_none() => true,
            Call::Refund { .. } => before != Some(ReservationStatus::Completed) || already_refunded,
            Call::Pay { .. } => before.is_some_and(|s| s.is_terminal() && s != ReservationStatus::Completed),
            Call::Reserve { keyed: true, .. } => record.conflicting_retry,
            _ => false,
        };
        // Redelivered commands that were already carried out answer as before and append nothing.
        let idempotent = match &record.call {
            Call::Pay { .. } => before == Some(ReservationStatus::Completed),
            Call::Cancel { .. } => before == Some(ReservationStatus::Cancelled),
            Call::Reserve { keyed: true, .. } => before.is_some() && !record.conflicting_retry,
            _ => false,
        };
        if idempotent {
            prop_assert_eq!(alone.head_after, alone.head_before, "repeating {:?} appended", record.call);
            prop_assert_eq!(
                &alone.reservation_after,
                &alone.reservation_before,
                "repeating {:?} changed state",
                record.call
            );
            if before == Some(ReservationStatus::Completed) && matches!(record.call, Call::Pay { .. }) {
                prop_assert!(matches!(record.outcome, Outcome::Paid(_)), "paying twice: {:?}", record.outcome);
            }
        }
        if must_refuse {
            prop_assert!(
                matches!(record.outcome, Outcome::Refused(_)),
                "{:?} was not refused: {:?}",
                record.call,
                record.outcome
            );
        }
        if let Outcome::Refused(error) = &record.outcome {
            prop_assert_eq!(
                alone.head_after,
                alone.head_before,
                "{:?} was refused ({}) but appended",
                record.call,
                error
            );
            prop_assert_eq!(
                &alone.reservation_after,
                &alone.reservation_before,
                "{:?} refused but changed state",
                record.call
            );
        }
        // More seats than the section has: answered short of seats up front, nothing recorded
        // (a keyed retry with other details is still refused as such, checked above).
        if let Call::Reserve { section: s, quantity, .. } = &record.call
            && *quantity > CAPACITIES[*s]
            && !record.conflicting_retry
        {
            prop_assert!(
                matches!(record.outcome, Outcome::Short(_)),
                "over-capacity {:?} answered {:?}",
                record.call,
                record.outcome
            );
            prop_assert_eq!(alone.head_after, alone.head_before, "over-capacity {:?} appended", record.call);
        }
        if let (Call::Reserve { quantity: 0, .. }, Outcome::Refused(error), false) =
            (&record.call, &record.outcome, record.conflicting_retry)
        {
            prop_assert!(error.contains("quantity"), "zero seats refused for another reason: {}", error);
        }
    }
    Ok(())
}

fn check(
    scenario: &property_support::Scenario,
    checker: fn(&Trace) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let trace = run_case(scenario)?;
    checker(&trace).map_err(|e| {
        TestCaseError::fail(format!("{e}\nrecords: {:#?}", trace.records.iter().map(Record::brief).collect::<Vec<_>>()))
    })
}

proptest! {
    #![proptest_config(config())]

    /// I1 (and I2): reserved + sold never exceeds capacity at any prefix of the log, and no seat
    /// is in two live holds, under concurrent bursts and retries.
    #[test]
    fn i1_no_oversell_at_any_prefix_of_the_log(scenario in scenario()) {
        check(&scenario, check_no_oversell)?;
    }

    /// I3: every reservation ends exactly once; seats released exactly once unless it completed.
    #[test]
    fn i3_every_reservation_ends_exactly_once(scenario in scenario()) {
        check(&scenario, check_every_reservation_ends_once)?;
    }

    /// I4: revenue equals successful payments minus refunds; refunds never exceed payments.
    #[test]
    fn i4_money_adds_up(scenario in scenario()) {
        check(&scenario, check_money_adds_up)?;
    }

    /// I5: replaying each stream's stored events rebuilds what the API and read models report.
    #[test]
    fn i5_replay_rebuilds_what_the_system_reports(scenario in scenario()) {
        check(&scenario, check_replay_rebuilds_live_state)?;
    }

    /// I9: refused calls append nothing and change nothing.
    #[test]
    fn i9_rejections_change_nothing(scenario in scenario()) {
        check(&scenario, check_rejections_change_nothing)?;
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
