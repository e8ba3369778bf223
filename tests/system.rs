//! The assembled system end to end on the in-memory backend: the saga through the log, durable
//! expiry on an injected clock, idempotent commands, restarts, typed errors, and no oversell when
//! two systems share one store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{ReservationStatus, Section, TicketingAction};
use boxoffice::event_store::{EventStore, MemoryCheckpointStore, MemoryEventStore};
use boxoffice::prelude::*;
use boxoffice::system::{EventSpec, PaymentDetails, ReserveRequest, SystemError, TicketingSystem};
use chrono::{TimeZone, Utc};

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

fn spec(clock: &FixedClock, sections: &[(&str, u32)]) -> EventSpec {
    EventSpec {
        name: "Rust Fest".into(),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
        date: clock.now() + chrono::Duration::days(30),
        sections: sections
            .iter()
            .map(|(name, seats)| Section {
                name: SectionName::new(*name).unwrap(),
                capacity: Capacity::new(*seats).unwrap(),
            })
            .collect(),
        pricing_tiers: sections
            .iter()
            .map(|(name, _)| {
                PricingTier::new(
                    TierKind::Regular,
                    SectionName::new(*name).unwrap(),
                    Money::new(2_500, Currency::EUR),
                    None,
                )
                .unwrap()
            })
            .collect(),
    }
}

struct Fixture {
    clock: FixedClock,
    store: Arc<dyn EventStore>,
    gateway: Arc<SimulatedGateway>,
    system: TicketingSystem,
    event: EventId,
}

async fn system_on(store: Arc<dyn EventStore>, clock: &FixedClock, gateway: Arc<SimulatedGateway>) -> TicketingSystem {
    system_with(store, Arc::new(MemoryCheckpointStore::new()), clock, gateway).await
}

async fn system_with(
    store: Arc<dyn EventStore>,
    checkpoints: Arc<MemoryCheckpointStore>,
    clock: &FixedClock,
    gateway: Arc<SimulatedGateway>,
) -> TicketingSystem {
    TicketingSystem::builder()
        .event_store(store)
        .checkpoints(checkpoints)
        .clock(Arc::new(clock.clone()))
        .payment_gateway(gateway)
        .build()
        .await
        .unwrap()
}

async fn on_sale(sections: &[(&str, u32)]) -> Fixture {
    let clock = FixedClock::new(start());
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = system_on(Arc::clone(&store), &clock, Arc::clone(&gateway)).await;
    let event = system.create_event(spec(&clock, sections)).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    Fixture { clock, store, gateway, system, event }
}

fn request(f: &Fixture, section: &str, quantity: u32) -> ReserveRequest {
    ReserveRequest {
        event_id: f.event,
        section: SectionName::new(section).unwrap(),
        quantity,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    }
}

fn card() -> PaymentDetails {
    PaymentDetails { token: "tok_visa".into() }
}

async fn available(f: &Fixture, section: &'static str) -> u32 {
    f.system.settled().await.unwrap();
    f.system.available_seats().unwrap().read(|m| m.get_availability(f.event, section)).unwrap().available
}

#[tokio::test]
async fn purchase_sells_seats_and_books_revenue() {
    let f = on_sale(&[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    assert_eq!(hold.seats.len(), 2);
    assert_eq!(hold.total, Money::new(5_000, Currency::EUR));
    assert_eq!(hold.expires_at, start() + chrono::Duration::minutes(5));
    let purchase = f.system.pay(hold.reservation_id, card()).await.unwrap();
    assert_eq!(purchase.seats, hold.seats);
    assert_eq!(available(&f, "Stalls").await, 8);
    let metrics = f.system.sales_analytics().unwrap().read(|m| m.get_metrics(f.event)).unwrap();
    assert_eq!(metrics.tickets_sold, 2);
    assert_eq!(metrics.total_revenue, Money::new(5_000, Currency::EUR));
}

#[tokio::test]
async fn declined_payment_releases_the_seats() {
    let f = on_sale(&[("Stalls", 10)]).await;
    f.gateway.add_failures(1);
    let hold = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    let declined = f.system.pay(hold.reservation_id, card()).await;
    assert!(matches!(declined, Err(SystemError::PaymentDeclined { .. })), "{declined:?}");
    assert_eq!(available(&f, "Stalls").await, 10);
}

#[tokio::test]
async fn unpaid_hold_expires_on_the_clock_and_late_payment_is_refused() {
    let f = on_sale(&[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 4)).await.unwrap();
    assert_eq!(available(&f, "Stalls").await, 6);
    f.clock.advance(Duration::from_secs(299));
    assert_eq!(available(&f, "Stalls").await, 6, "not yet");
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(available(&f, "Stalls").await, 10);
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Expired);
    let late = f.system.pay(hold.reservation_id, card()).await;
    assert!(matches!(late, Err(SystemError::ReservationEnded { how: "expired", .. })), "{late:?}");
}

#[tokio::test]
async fn customer_cancellation_releases_the_seats() {
    let f = on_sale(&[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.cancel_reservation(hold.reservation_id).await.unwrap();
    assert_eq!(available(&f, "Stalls").await, 10);
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Cancelled);
}

#[tokio::test]
async fn last_seat_goes_to_exactly_one_of_many_concurrent_buyers() {
    let f = on_sale(&[("Box", 1)]).await;
    let attempts: Vec<_> = (0..16).map(|_| f.system.reserve(request(&f, "Box", 1))).collect();
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let short = results.iter().filter(|r| matches!(r, Err(SystemError::InsufficientInventory { .. }))).count();
    assert_eq!((won, short), (1, 15), "{results:?}");
}

#[tokio::test]
async fn retried_reserve_with_the_same_key_returns_the_original_hold() {
    let f = on_sale(&[("Stalls", 10)]).await;
    let mut req = request(&f, "Stalls", 2);
    req.idempotency_key = Some("checkout-7".into());
    let first = f.system.reserve(req.clone()).await.unwrap();
    let again = f.system.reserve(req).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(available(&f, "Stalls").await, 8, "seats held once");
    let paid = f.system.pay(first.reservation_id, card()).await.unwrap();
    assert_eq!(f.system.pay(first.reservation_id, card()).await.unwrap(), paid, "paying twice charges once");
}

#[tokio::test]
async fn bad_input_gets_a_typed_error_and_appends_nothing() {
    let f = on_sale(&[("Stalls", 10)]).await;
    f.system.settled().await.unwrap();
    let head = f.store.head_position().await.unwrap();
    let zero = f.system.reserve(request(&f, "Stalls", 0)).await;
    assert!(matches!(zero, Err(SystemError::Reservation(_))), "{zero:?}");
    let unknown_section = f.system.reserve(request(&f, "Balcony", 1)).await;
    assert!(matches!(unknown_section, Err(SystemError::Event(_))), "{unknown_section:?}");
    let too_many = f.system.reserve(request(&f, "Stalls", 11)).await;
    assert!(matches!(too_many, Err(SystemError::InsufficientInventory { .. })), "{too_many:?}");
    let not_open = f.system.publish_event(f.event).await;
    assert!(matches!(not_open, Err(SystemError::Event(_))), "{not_open:?}");
    let ghost = f.system.cancel_reservation(ReservationId::new_v4()).await;
    assert!(matches!(ghost, Err(SystemError::Reservation(_))), "{ghost:?}");
    f.system.settled().await.unwrap();
    // Only the over-sized request wrote anything: its reservation, which ended Compensated.
    let after: Vec<_> = f.store.read_all(head, 100).await.unwrap();
    assert!(after.iter().all(|e| e.stream_id.as_str().starts_with("reservation-")), "{after:?}");
    assert_eq!(available(&f, "Stalls").await, 10);
}

#[tokio::test]
async fn a_restarted_system_expires_holds_taken_before_the_restart() {
    let clock = FixedClock::new(start());
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = system_with(Arc::clone(&store), Arc::clone(&checkpoints), &clock, Arc::clone(&gateway)).await;
    let event = system.create_event(spec(&clock, &[("Stalls", 10)])).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    let f = Fixture { clock, store, gateway, system, event };
    f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.system.settled().await.unwrap();
    f.system.shutdown().await;
    drop(f.system);

    // Same log, same saga checkpoint (past the hold): the deadline must come back from the log.
    let restarted = system_with(Arc::clone(&f.store), checkpoints, &f.clock, Arc::clone(&f.gateway)).await;
    f.clock.advance(Duration::from_secs(301));
    restarted.settled().await.unwrap();
    let left = restarted.available_seats().unwrap().read(|m| m.get_availability(f.event, "Stalls")).unwrap();
    assert_eq!((left.available, left.reserved), (10, 0));
}

#[tokio::test]
async fn cancelling_the_event_refunds_purchases_and_releases_holds() {
    let f = on_sale(&[("Stalls", 10)]).await;
    let bought = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.pay(bought.reservation_id, card()).await.unwrap();
    let held = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.system.cancel_event(f.event, "storm").await.unwrap();
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(held.reservation_id).await.unwrap().status, ReservationStatus::Cancelled);
    let metrics = f.system.sales_analytics().unwrap().read(|m| m.get_metrics(f.event)).unwrap();
    assert_eq!(metrics.total_revenue, Money::new(0, Currency::EUR), "refund cancels the revenue");
    let seats = f.system.available_seats().unwrap().read(|m| m.get_availability(f.event, "Stalls")).unwrap();
    assert_eq!(seats.reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_systems_sharing_a_store_never_oversell() {
    let clock = FixedClock::new(start());
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let a = system_on(Arc::clone(&store), &clock, Arc::clone(&gateway)).await;
    let b = system_on(Arc::clone(&store), &clock, Arc::clone(&gateway)).await;
    let event = a.create_event(spec(&clock, &[("Stalls", 20)])).await.unwrap();
    a.publish_event(event).await.unwrap();
    a.open_sales(event).await.unwrap();
    a.settled().await.unwrap();
    b.settled().await.unwrap();

    let buy = |system: TicketingSystem| async move {
        let mut sold = 0;
        for _ in 0..15 {
            let req = ReserveRequest {
                event_id: event,
                section: SectionName::new("Stalls").unwrap(),
                quantity: 1,
                customer_id: CustomerId::new_v4(),
                idempotency_key: None,
            };
            if let Ok(hold) = system.reserve(req).await
                && system.pay(hold.reservation_id, card()).await.is_ok()
            {
                sold += 1;
            }
        }
        sold
    };
    let tasks: Vec<_> = [&a, &b, &a, &b].into_iter().map(|s| tokio::spawn(buy(s.clone()))).collect();
    let sold: u32 = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(sold, 20, "every seat sold once, 40 buyers refused");

    // Replay the log: reserved + sold never exceeds capacity, no seat sold twice.
    let log = store.read_all(0, 1_000_000).await.unwrap();
    let sold_seats: Vec<_> = log
        .iter()
        .filter_map(|e| match TicketingAction::decode(e).unwrap() {
            TicketingAction::Inventory(boxoffice::aggregates::InventoryAction::SeatsConfirmed { seats, .. }) => {
                Some(seats)
            }
            _ => None,
        })
        .flatten()
        .map(|seat| seat.seat_id)
        .collect();
    let unique: std::collections::HashSet<_> = sold_seats.iter().collect();
    assert_eq!((sold_seats.len(), unique.len()), (20, 20));
}

/// With an event bus the system relays its log: after a purchase every committed event is on
/// its category's topic, and `published_position` reaches the head.
#[tokio::test]
async fn an_event_bus_receives_every_committed_event() {
    use boxoffice::event_bus::{MemoryEventBus, TopicRouter};
    let clock = FixedClock::new(start());
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let bus = MemoryEventBus::new();
    let topics = TopicRouter::new("ticketing");
    let system = TicketingSystem::builder()
        .event_store(Arc::clone(&store))
        .clock(Arc::new(clock.clone()))
        .event_bus(Arc::new(bus.clone()), topics.clone())
        .build()
        .await
        .unwrap();
    let event = system.create_event(spec(&clock, &[("Stalls", 10)])).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    let request = ReserveRequest {
        event_id: event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let hold = system.reserve(request).await.unwrap();
    system.pay(hold.reservation_id, card()).await.unwrap();
    system.settled().await.unwrap();

    let head = store.head_position().await.unwrap();
    let mut published = system.published_position().expect("a bus is configured");
    tokio::time::timeout(Duration::from_secs(10), published.wait_for(|p| *p >= head)).await.unwrap().unwrap();
    let log = store.read_all(0, 10_000).await.unwrap();
    for category in ["event", "inventory", "reservation", "payment"] {
        let in_log = log.iter().filter(|e| TopicRouter::category(e.stream_id.as_str()) == category).count();
        assert!(in_log > 0, "the purchase wrote {category} events");
        assert_eq!(bus.message_count(&topics.topic_for_category(category)).unwrap(), in_log, "{category}");
    }
    system.shutdown().await;
}
