//! The in-memory read models, the `Projection` contract and the runner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    clippy::items_after_statements,
    clippy::default_trait_access,
    clippy::cast_possible_truncation
)]

mod projections_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use boxoffice::aggregates::{HoldStatus, ReservationStatus, TicketingAction, TicketingState};
use boxoffice::domain::{Currency, CustomerId, EventId, MoneyTotal, SeatId};
use boxoffice::event_store::{
    CheckpointStore, Envelope, EventStore, FollowError, MemoryCheckpointStore, MemoryEventStore, RetryPolicy,
};
use boxoffice::projections::{
    AvailableSeatsProjection, CustomerHistoryProjection, Projection, ProjectionError, ProjectionHandle,
    ProjectionRunner, RunnerConfig, SalesAnalyticsProjection, replay,
};
use projections_support::{Driver, customer, envelopes, eur, ev, event, rid, seat_ids, section, usd};
use proptest::prelude::*;

fn fold<P: Projection>(mut model: P, log: &[Envelope]) -> P {
    for envelope in log {
        model.apply(envelope).unwrap();
    }
    model
}

fn seats_log() -> Vec<TicketingAction> {
    let e = event(0);
    vec![
        ev::inventory(e, "VIP", 5),
        ev::inventory(e, "GA", 10),
        ev::reserved(e, "VIP", rid(1), [0, 1]),
        ev::reserved(e, "VIP", rid(2), [2]),
        ev::confirmed(e, "VIP", rid(1), [0, 1]),
        ev::released(e, "VIP", rid(2), [2]),
        ev::reserved(e, "VIP", rid(3), [2, 3]),
        ev::reserved(e, "GA", rid(4), [0]),
    ]
}

#[test]
fn available_seats_answers_every_query() {
    let e = event(0);
    let seats = fold(AvailableSeatsProjection::new(), &envelopes(&seats_log()));
    let vip = seats.get_availability(e, "VIP").unwrap();
    assert_eq!((vip.total_capacity, vip.reserved, vip.sold, vip.available), (5, 2, 2, 1));
    let mut reserved = seat_ids(e, "VIP", [2, 3]);
    reserved.sort();
    let mut sold = seat_ids(e, "VIP", [0, 1]);
    sold.sort();
    assert_eq!((vip.reserved_seats, vip.sold_seats), (reserved, sold));
    assert_eq!(seats.available_seat_ids(e, "VIP", 10), seat_ids(e, "VIP", [4]));
    assert_eq!(seats.available_seat_ids(e, "GA", 2), seat_ids(e, "GA", [1, 2]));
    assert!(seats.has_availability(e, "VIP", 1));
    assert!(!seats.has_availability(e, "VIP", 2));
    assert!(seats.has_availability(e, "GA", 9));
    assert!(!seats.has_availability(e, "Balcony", 1));
    assert_eq!(seats.get_total_available(e), 1 + 9);
    assert_eq!(seats.get_total_available(event(7)), 0);
    assert!(seats.get_availability(e, "Balcony").is_none());
    assert_eq!(seats.position(), 8);
}

fn sales_log() -> Vec<TicketingAction> {
    let (e0, e1) = (event(0), event(1));
    vec![
        // Two VIP seats bought and paid.
        ev::initiated(rid(1), e0, "VIP", 2, customer(1), eur(5_000)),
        ev::paid(rid(1), eur(10_000)),
        ev::paid_reservation_side(rid(1), eur(10_000), false),
        ev::completed(rid(1), e0, "VIP"),
        // Three GA seats bought, then 10.00 refunded.
        ev::initiated(rid(2), e0, "GA", 3, customer(2), eur(2_001)),
        ev::paid(rid(2), eur(6_003)),
        ev::completed(rid(2), e0, "GA"),
        ev::refunded(rid(2), eur(1_000)),
        // Cancelled.
        ev::initiated(rid(3), e0, "GA", 1, customer(1), eur(2_001)),
        ev::cancelled(rid(3), e0, "GA"),
        // Expired; the late payment was refunded in full.
        ev::initiated(rid(4), e0, "GA", 1, customer(3), eur(2_001)),
        ev::expired(rid(4), e0, "GA"),
        ev::paid(rid(4), eur(2_001)),
        ev::paid_reservation_side(rid(4), eur(2_001), true),
        ev::refunded(rid(4), eur(2_001)),
        // Another event, another currency.
        ev::initiated(rid(5), e1, "Floor", 1, customer(1), usd(700)),
        ev::paid(rid(5), usd(700)),
        ev::completed(rid(5), e1, "Floor"),
    ]
}

#[test]
fn sales_analytics_answers_every_query() {
    let (e0, e1) = (event(0), event(1));
    let sales = fold(SalesAnalyticsProjection::new(), &envelopes(&sales_log()));
    let m = sales.get_metrics(e0).unwrap();
    assert_eq!(m.total_revenue, eur(10_000 + 6_003 - 1_000));
    assert_eq!(m.tickets_sold, 5);
    assert_eq!(
        (m.completed_reservations, m.cancelled_reservations, m.expired_reservations, m.compensated_reservations),
        (2, 1, 1, 0)
    );
    assert_eq!(
        m.revenue_by_section,
        BTreeMap::from([(section("GA"), eur(5_003).into()), (section("VIP"), eur(10_000).into())])
    );
    assert_eq!(m.tickets_by_section, BTreeMap::from([(section("GA"), 3), (section("VIP"), 2)]));
    // 15_003 / 5 = 3_000.6 -> 3_001 (half-up in minor units).
    assert_eq!(m.average_ticket_price, eur(3_001));
    assert_eq!(sales.get_most_popular_section(e0), Some((section("GA"), 3)));
    assert_eq!(sales.get_most_popular_section(e1), Some((section("Floor"), 1)));
    assert_eq!(sales.get_total_revenue_all_events(), vec![eur(15_003), usd(700)]);
    assert!(sales.get_metrics(event(9)).is_none());
    assert_eq!(sales.get_most_popular_section(event(9)), None);
}

#[test]
fn most_popular_section_ties_go_to_the_first_name() {
    let e = event(0);
    let log = vec![
        ev::initiated(rid(1), e, "B", 2, customer(1), eur(100)),
        ev::completed(rid(1), e, "B"),
        ev::initiated(rid(2), e, "A", 2, customer(1), eur(100)),
        ev::completed(rid(2), e, "A"),
    ];
    let sales = fold(SalesAnalyticsProjection::new(), &envelopes(&log));
    assert_eq!(sales.get_most_popular_section(e), Some((section("A"), 2)));
    let history = fold(CustomerHistoryProjection::new(), &envelopes(&log));
    assert_eq!(history.get_customer_profile(customer(1)).unwrap().favorite_section, Some(section("A")));
}

#[test]
fn customer_history_answers_every_query() {
    let (e0, e1) = (event(0), event(1));
    let history = fold(CustomerHistoryProjection::new(), &envelopes(&sales_log()));
    let one = history.get_customer_profile(customer(1)).unwrap();
    assert_eq!(one.purchases.len(), 2);
    assert_eq!(one.purchases[0].reservation_id, rid(1));
    assert_eq!(one.purchases[0].total, eur(10_000));
    assert_eq!(
        one.total_spent,
        BTreeMap::from([(Currency::EUR, eur(10_000).into()), (Currency::USD, usd(700).into())])
    );
    assert_eq!(one.total_tickets, 3);
    assert_eq!(one.events_attended, BTreeSet::from([e0, e1]));
    assert_eq!(one.favorite_section, Some(section("VIP")));
    let two = history.get_customer_profile(customer(2)).unwrap();
    assert_eq!(two.total_spent, BTreeMap::from([(Currency::EUR, eur(5_003).into())]));
    // Customer 3 paid late and got everything back: a profile with no purchases and zero spent.
    let three = history.get_customer_profile(customer(3)).unwrap();
    assert!(three.purchases.is_empty());
    assert_eq!(three.total_spent, BTreeMap::from([(Currency::EUR, eur(0).into())]));
    assert!(!history.has_attended_event(customer(3), e0));
    assert!(history.has_attended_event(customer(1), e1));
    assert!(!history.has_attended_event(customer(2), e1));
    let mut attendees = vec![customer(1), customer(2)];
    attendees.sort();
    assert_eq!(history.get_event_attendees(e0), attendees);
    assert_eq!(
        history.get_top_spenders(Currency::EUR, 2),
        vec![(customer(1), eur(10_000).into()), (customer(2), eur(5_003).into())]
    );
    assert_eq!(history.get_top_spenders(Currency::USD, 10), vec![(customer(1), usd(700).into())]);
    assert!(history.get_customer_profile(customer(9)).is_none());
}

#[test]
fn a_bad_event_changes_nothing_and_keeps_the_position() {
    let mut log = envelopes(&sales_log());
    log[1].payload = serde_json::json!({ "PaymentSucceeded": { "nonsense": true } }).into();
    let mut sales = fold(SalesAnalyticsProjection::new(), &log[..1]);
    let before = sales.clone();
    let error = sales.apply(&log[1]).unwrap_err();
    assert!(matches!(error, ProjectionError::Decode { .. }), "{error}");
    assert!(error.to_string().contains("sales-analytics"));
    assert_eq!(sales, before);
    assert_eq!(sales.position(), 1);
}

/// Applying every event twice in a row, or the whole log twice, gives the model of one pass.
fn check_idempotent(log: &[Envelope]) {
    fn twice<P: Projection + Clone + PartialEq + std::fmt::Debug>(fresh: P, log: &[Envelope]) {
        let once = fold(fresh.clone(), log);
        let mut doubled = fresh.clone();
        for envelope in log {
            assert!(doubled.apply(envelope).unwrap());
            assert!(!doubled.apply(envelope).unwrap());
        }
        assert_eq!(doubled, once);
        let replayed = fold(fold(once.clone(), log), log);
        assert_eq!(replayed, once);
        let mut reset = once.clone();
        reset.reset();
        assert_eq!(reset, fresh);
        assert_eq!(fold(reset, log), once);
    }
    twice(AvailableSeatsProjection::new(), log);
    twice(SalesAnalyticsProjection::new(), log);
    twice(CustomerHistoryProjection::new(), log);
}

#[test]
fn replay_and_redelivery_never_double_count() {
    check_idempotent(&envelopes(&sales_log()));
    check_idempotent(&envelopes(&seats_log()));
    check_idempotent(&envelopes(&projections_support::workload(200)));
}

/// The three models agree with the aggregates' own state, an independent computation over the
/// same log.
fn check_against_aggregates(state: &TicketingState, log: &[Envelope]) {
    let seats = fold(AvailableSeatsProjection::new(), log);
    let sales = fold(SalesAnalyticsProjection::new(), log);
    let history = fold(CustomerHistoryProjection::new(), log);

    assert_eq!(seats.sections().len(), state.inventories.len());
    for ((e, s), inventory) in &state.inventories {
        let a = seats.get_availability(*e, s.as_str()).unwrap();
        assert_eq!(
            (a.total_capacity, a.reserved, a.sold, a.available),
            (inventory.capacity(), inventory.reserved(), inventory.sold(), inventory.available())
        );
        let held = |status| {
            let mut ids: Vec<SeatId> = inventory
                .holds()
                .filter(|(_, h)| h.status == status)
                .flat_map(|(_, h)| h.seats.iter().map(|s| s.seat_id))
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(a.reserved_seats, held(HoldStatus::Reserved));
        assert_eq!(a.sold_seats, held(HoldStatus::Confirmed));
        assert!(seats.has_availability(*e, s.as_str(), inventory.available()));
        assert!(!seats.has_availability(*e, s.as_str(), inventory.available() + 1));
    }

    // Money per event and per customer: successful payments minus refunds.
    let mut revenue: BTreeMap<EventId, i64> = BTreeMap::new();
    let mut spent: BTreeMap<(CustomerId, Currency), i64> = BTreeMap::new();
    for payment in state.payments.values().filter_map(|p| p.payment.as_ref()) {
        if payment.status != boxoffice::aggregates::PaymentStatus::Succeeded {
            continue;
        }
        let r = state.reservation(payment.reservation_id).unwrap();
        let net = payment.amount.minor_units() - payment.refunded.minor_units();
        *revenue.entry(r.event_id).or_default() += net;
        *spent.entry((r.customer_id, payment.amount.currency())).or_default() += net;
    }
    let reservations: Vec<_> = state.reservations.values().filter_map(|r| r.reservation.as_ref()).collect();
    let count =
        |e: EventId, status| reservations.iter().filter(|r| r.event_id == e && r.status == status).count() as u64;
    let events: BTreeSet<EventId> = reservations.iter().map(|r| r.event_id).collect();
    assert_eq!(sales.events(), events.iter().copied().collect::<Vec<_>>());
    for e in &events {
        let m = sales.get_metrics(*e).unwrap();
        assert_eq!(m.total_revenue.minor_units(), i128::from(revenue.get(e).copied().unwrap_or(0)), "revenue of {e}");
        let sold: u64 = reservations
            .iter()
            .filter(|r| r.event_id == *e && r.status == ReservationStatus::Completed)
            .map(|r| u64::from(r.quantity))
            .sum();
        assert_eq!(m.tickets_sold, sold);
        assert_eq!(m.completed_reservations, count(*e, ReservationStatus::Completed));
        assert_eq!(m.cancelled_reservations, count(*e, ReservationStatus::Cancelled));
        assert_eq!(m.expired_reservations, count(*e, ReservationStatus::Expired));
        assert_eq!(m.compensated_reservations, count(*e, ReservationStatus::Compensated));
        let sold_seats: u64 =
            state.inventories.iter().filter(|((ev, _), _)| ev == e).map(|(_, inv)| u64::from(inv.sold())).sum();
        assert_eq!(m.tickets_sold, sold_seats, "tickets sold = seats sold in Inventory");
        let by_section: u64 = m.tickets_by_section.values().sum();
        assert_eq!(by_section, m.tickets_sold);
        let section_revenue: i128 = m.revenue_by_section.values().map(MoneyTotal::minor_units).sum();
        assert_eq!(section_revenue, m.total_revenue.minor_units());
        if m.tickets_sold > 0 {
            // |average * tickets - revenue| <= tickets / 2: the nearest integer, half-up.
            let avg = i128::from(m.average_ticket_price.minor_units());
            let (revenue, tickets) = (m.total_revenue.minor_units(), i128::from(m.tickets_sold));
            assert!(2 * (avg * tickets - revenue).abs() <= tickets, "average {avg} of {revenue} over {tickets}");
        }
    }

    for ((c, currency), amount) in &spent {
        let profile = history.get_customer_profile(*c).unwrap();
        assert_eq!(profile.total_spent[currency].minor_units(), i128::from(*amount));
    }
    for c in history.customers() {
        let profile = history.get_customer_profile(c).unwrap();
        let completed: Vec<_> =
            reservations.iter().filter(|r| r.customer_id == c && r.status == ReservationStatus::Completed).collect();
        assert_eq!(profile.purchases.len(), completed.len());
        assert_eq!(profile.total_tickets, completed.iter().map(|r| u64::from(r.quantity)).sum::<u64>());
        let attended: BTreeSet<EventId> = completed.iter().map(|r| r.event_id).collect();
        assert_eq!(profile.events_attended, attended);
        for e in &events {
            assert_eq!(history.has_attended_event(c, *e), attended.contains(e));
        }
    }
    for e in &events {
        let mut expected: Vec<CustomerId> = reservations
            .iter()
            .filter(|r| r.event_id == *e && r.status == ReservationStatus::Completed)
            .map(|r| r.customer_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        expected.sort();
        assert_eq!(history.get_event_attendees(*e), expected);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { event: u128, section: usize, quantity: u32, customer: u128 },
    Approve(usize),
    Decline(usize),
    Cancel(usize),
    Expire(usize),
    Refund(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u128, 0..2usize, 1..4u32, 0..4u128)
            .prop_map(|(event, section, quantity, customer)| Op::Reserve { event, section, quantity, customer }),
        3 => any::<usize>().prop_map(Op::Approve),
        1 => any::<usize>().prop_map(Op::Decline),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Expire),
        1 => (any::<usize>(), 1..=100i64).prop_map(|(k, p)| Op::Refund(k, p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn projections_agree_with_the_aggregates(ops in prop::collection::vec(op(), 1..40)) {
        let mut d = Driver::new();
        for op in ops {
            match op {
                Op::Reserve { event, section, quantity, customer } => d.reserve(event, section, quantity, customer),
                Op::Approve(k) => d.answer_payment(k, true),
                Op::Decline(k) => d.answer_payment(k, false),
                Op::Cancel(k) => d.cancel(k),
                Op::Expire(k) => d.expire(k),
                Op::Refund(k, percent) => d.refund(k, percent),
            }
        }
        let log = envelopes(d.log());
        check_against_aggregates(d.state(), &log);
        check_idempotent(&log);
    }
}

#[test]
fn the_workload_exercises_every_outcome() {
    let mut d = Driver::new();
    d.reserve(0, 0, 2, 1);
    d.answer_payment(0, true);
    d.refund(0, 10);
    d.reserve(0, 1, 1, 2);
    d.answer_payment(1, false);
    d.reserve(1, 0, 1, 1);
    d.cancel(2);
    d.reserve(1, 1, 1, 3);
    d.expire(3);
    d.answer_payment(3, true);
    d.reserve(0, 1, 3, 2);
    d.reserve(0, 1, 1, 2);
    let statuses: Vec<_> = d.reservations.iter().map(|r| d.status(*r).unwrap()).collect();
    use ReservationStatus::*;
    assert_eq!(statuses, [Completed, Compensated, Cancelled, Expired, PaymentPending, Compensated]);
    let names: BTreeSet<&str> = d.log().iter().map(boxoffice::framework::Message::name).collect();
    for name in ["PaymentRefunded", "SeatsReleased", "SeatsConfirmed", "ReservationExpired", "ReservationCancelled"] {
        assert!(names.contains(name), "{name} missing");
    }
    check_against_aggregates(d.state(), &envelopes(d.log()));
}

async fn memory_log(actions: &[TicketingAction]) -> Arc<MemoryEventStore> {
    let store = Arc::new(MemoryEventStore::new());
    projections_support::append_all(&*store, actions, 64).await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_follows_the_log_and_reads_its_writes() {
    let store = memory_log(&[]).await;
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let handle = ProjectionHandle::new(SalesAnalyticsProjection::new());
    let runner = ProjectionRunner::start(store.clone(), checkpoints.clone(), handle.clone(), RunnerConfig::default())
        .await
        .unwrap();
    let log = sales_log();
    projections_support::append_all(&*store, &log, 5).await;
    let head = store.head_position().await.unwrap();
    handle.wait_for_position(head, Duration::from_secs(10)).await.unwrap();
    assert_eq!(handle.read(|s| s.get_metrics(event(0)).unwrap().total_revenue), eur(15_003));
    let timeout = handle.wait_for_position(head + 1, Duration::from_millis(20)).await.unwrap_err();
    assert!(matches!(timeout, ProjectionError::Timeout { reached, .. } if reached == head), "{timeout}");
    runner.stop().await.unwrap();
    assert_eq!(checkpoints.load_checkpoint(SalesAnalyticsProjection::NAME).await.unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_checkpoint_does_not_double_count() {
    let log = sales_log();
    let store = memory_log(&log[..8]).await;
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let handle = ProjectionHandle::new(CustomerHistoryProjection::new());
    let runner = ProjectionRunner::start(store.clone(), checkpoints.clone(), handle.clone(), RunnerConfig::default())
        .await
        .unwrap();
    handle.wait_for_position(8, Duration::from_secs(10)).await.unwrap();
    runner.stop().await.unwrap();

    // A crash between applying and saving: the checkpoint lags, so events 5..=8 come again.
    checkpoints.save_checkpoint(CustomerHistoryProjection::NAME, 4).await.unwrap();
    projections_support::append_all(&*store, &log[8..], 3).await;
    let runner = ProjectionRunner::start(store.clone(), checkpoints.clone(), handle.clone(), RunnerConfig::default())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    handle.wait_for_position(head, Duration::from_secs(10)).await.unwrap();
    runner.stop().await.unwrap();
    let expected = fold(CustomerHistoryProjection::new(), &store.read_all(0, 1_000).await.unwrap());
    assert_eq!(handle.snapshot(), expected);

    // A new process: the in-memory model starts empty although the checkpoint is at the head, so
    // the runner replays from the model's own position.
    let fresh = ProjectionHandle::new(CustomerHistoryProjection::new());
    let runner = ProjectionRunner::start(store.clone(), checkpoints.clone(), fresh.clone(), RunnerConfig::default())
        .await
        .unwrap();
    fresh.wait_for_position(head, Duration::from_secs(10)).await.unwrap();
    runner.stop().await.unwrap();
    assert_eq!(fresh.snapshot(), expected);
    assert_eq!(checkpoints.load_checkpoint(CustomerHistoryProjection::NAME).await.unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_in_a_fresh_copy_while_queries_are_served() {
    let log = projections_support::workload(400);
    let store = memory_log(&log).await;
    let head = store.head_position().await.unwrap();
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let handle = ProjectionHandle::new(AvailableSeatsProjection::new());
    let runner = ProjectionRunner::start(
        store.clone(),
        checkpoints,
        handle.clone(),
        RunnerConfig { batch_size: 64, ..RunnerConfig::default() },
    )
    .await
    .unwrap();
    handle.wait_for_position(head, Duration::from_secs(10)).await.unwrap();
    let before = handle.snapshot();
    let expected_available = before.get_total_available(event(0));

    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let reader = {
        let (handle, stop, queries) = (handle.clone(), stop.clone(), queries.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Never an empty or half-built model: the old copy until the swap, then the new one.
                assert_eq!(handle.read(|s| s.get_total_available(event(0))), expected_available);
                queries.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let rebuilt_to = runner.rebuild(AvailableSeatsProjection::new()).await.unwrap();
    assert_eq!(rebuilt_to, head);
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(queries.load(Ordering::Relaxed) > 0);
    assert_eq!(handle.snapshot(), before);

    // Live events after the rebuild still arrive once.
    let e = event(5);
    projections_support::append_all(&*store, &[ev::inventory(e, "Pit", 4), ev::reserved(e, "Pit", rid(99), [0])], 1)
        .await;
    handle.wait_for_position(head + 2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(handle.read(|s| s.get_total_available(e)), 3);
    runner.stop().await.unwrap();
}

#[tokio::test]
async fn replay_reads_the_whole_log() {
    let log = projections_support::workload(100);
    let store = memory_log(&log).await;
    let mut model = SalesAnalyticsProjection::new();
    let reached = replay(&*store, &mut model, 7).await.unwrap();
    assert_eq!(reached, store.head_position().await.unwrap());
    assert_eq!(model, fold(SalesAnalyticsProjection::new(), &envelopes(&log)));
}

/// A log with an inventory event of the wrong shape at position 1, then a real one.
async fn log_with_a_bad_event() -> Arc<MemoryEventStore> {
    let store = Arc::new(MemoryEventStore::new());
    let stream = boxoffice::event_store::StreamId::new("inventory-x").unwrap();
    let bad = boxoffice::event_store::NewEvent::new("SeatsReserved", 1, serde_json::json!({ "bad": 1 }));
    store
        .append(&stream, boxoffice::event_store::ExpectedVersion::Any, vec![bad], &Default::default(), None)
        .await
        .unwrap();
    store
}

fn fast_retry(bad_events: boxoffice::event_store::BadEventPolicy) -> RunnerConfig {
    RunnerConfig {
        retry: RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_attempts: None,
        },
        bad_events,
        ..RunnerConfig::default()
    }
}

/// By default a bad event is quarantined: reported with its position and cause, never retried,
/// and the model reads on (its position moves past it, so waits for later positions end).
#[tokio::test]
async fn runner_quarantines_a_bad_event_and_reads_on() {
    let store = log_with_a_bad_event().await;
    let handle = ProjectionHandle::new(AvailableSeatsProjection::new());
    let config = fast_retry(boxoffice::event_store::BadEventPolicy::Quarantine);
    let runner = ProjectionRunner::start(store.clone(), Arc::new(MemoryCheckpointStore::new()), handle.clone(), config)
        .await
        .unwrap();
    handle.wait_for_position(1, Duration::from_secs(30)).await.unwrap();
    let status = runner.status().borrow().clone();
    assert_eq!(status.retries, 0);
    assert!(status.failing.is_none());
    assert_eq!(status.quarantined.iter().map(|q| q.global_position).collect::<Vec<_>>(), [1]);
    let cause = &status.quarantined[0].cause;
    assert!(cause.to_string().contains("SeatsReserved"), "{cause}");
    runner.stop().await.unwrap();
}

/// Under `BadEventPolicy::Halt` a bad event stops the model at the event before it, loudly: the
/// failure shows in the status and `stop` returns it.
#[tokio::test]
async fn runner_halts_on_a_bad_event_under_the_halt_policy_and_reports_it() {
    let store = log_with_a_bad_event().await;
    let handle = ProjectionHandle::new(AvailableSeatsProjection::new());
    let config = fast_retry(boxoffice::event_store::BadEventPolicy::Halt);
    let runner =
        ProjectionRunner::start(store, Arc::new(MemoryCheckpointStore::new()), handle.clone(), config).await.unwrap();
    let mut status = runner.status();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.failing.is_some()))
        .await
        .expect("the failure is reported")
        .unwrap();
    assert_eq!(handle.position(), 0);
    let error = runner.stop().await.unwrap_err();
    let ProjectionError::Halted { source: FollowError::BadEvent { global_position: 1, source, .. }, .. } = &error
    else {
        panic!("{error}")
    };
    assert!(source.to_string().contains("SeatsReserved"), "{source}");
    assert_eq!(handle.position(), 0);
}

#[test]
fn revenue_in_another_currency_is_refused_and_changes_nothing() {
    let e = event(0);
    let log = envelopes(&[ev::initiated(rid(1), e, "VIP", 1, customer(1), eur(100)), ev::paid(rid(1), usd(100))]);
    let mut sales = fold(SalesAnalyticsProjection::new(), &log[..1]);
    let before = sales.clone();
    let error = sales.apply(&log[1]).unwrap_err();
    assert!(matches!(error, ProjectionError::Money { global_position: 2, .. }), "{error}");
    assert_eq!(sales, before);
}
