//! The assembled system's end-to-end scenarios, written once and run against each storage:
//! `tests/system.rs` (memory) and `tests/system_postgres.rs` (`PostgreSQL` event store, checkpoints
//! and read models). Read models are queried through the storage-neutral query traits the system
//! hands out.
#![allow(dead_code)] // each test binary runs the scenarios for its own backend

pub mod health;
pub mod nodes;
pub mod orders;
pub mod payments;
pub mod read_models_tickets;
pub mod tickets;

use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{EventError, PaymentError, ReservationStatus, Section, TicketingAction};
use boxoffice::event_store::{CheckpointStore, EventStore, MemoryCheckpointStore, MemoryEventStore};
use boxoffice::prelude::*;
use boxoffice::projections::SalesMetrics;
use boxoffice::system::{
    EventSpec, PaymentDetails, ReadModelStorage, RefundRequest, ReserveRequest, SystemError, TicketingSystem,
};
use chrono::{TimeZone, Utc};

/// Where a scenario's systems keep their log, checkpoints and read models.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// Storage that outlives a system, so another system can start over it (a restart).
#[derive(Clone)]
pub struct Storage {
    pub store: Arc<dyn EventStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    pub read_models: ReadModelStorage,
}

impl Backend {
    #[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))] // the PostgreSQL backend awaits its schema
    pub async fn storage(self) -> Storage {
        match self {
            Backend::Memory => Storage {
                store: Arc::new(MemoryEventStore::new()),
                checkpoints: Arc::new(MemoryCheckpointStore::new()),
                read_models: ReadModelStorage::Memory,
            },
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let store = Arc::new(postgres::fresh_store().await);
                let models = boxoffice::projections::PostgresReadModels::new(store.pool().clone());
                Storage { store: store.clone(), checkpoints: store, read_models: ReadModelStorage::Postgres(models) }
            }
        }
    }
}

#[cfg(feature = "postgres")]
pub mod postgres {
    use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
    use sqlx::{Connection, Executor, PgConnection};

    pub fn database_url() -> String {
        std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set: the PostgreSQL system tests need a database (run scripts/test-services.sh)"
            )
        })
    }

    /// An event store (and checkpoint store) in a fresh schema of `DATABASE_URL`'s database.
    pub async fn fresh_store() -> PostgresEventStore {
        let store = unmigrated_store().await;
        store.migrate().await.unwrap();
        store
    }

    /// A store on a fresh, empty schema of `DATABASE_URL`'s database: `migrate()` not run.
    pub async fn unmigrated_store() -> PostgresEventStore {
        let url = database_url();
        let schema = format!("sys_{}", uuid::Uuid::new_v4().simple());
        let mut admin =
            PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
        admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
        admin.close().await.unwrap();
        let config = PostgresConfig { schema: Some(schema), max_connections: 8, ..PostgresConfig::default() };
        PostgresEventStore::connect(&url, config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"))
    }
}

pub fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

pub fn spec(clock: &FixedClock, sections: &[(&str, u32)]) -> EventSpec {
    spec_priced(clock, sections, Money::new(2_500, Currency::EUR))
}

fn spec_priced(clock: &FixedClock, sections: &[(&str, u32)], price: Money) -> EventSpec {
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
                PricingTier::new(TierKind::Regular, SectionName::new(*name).unwrap(), price, None).unwrap()
            })
            .collect(),
        policy: SalesPolicy::default(),
    }
}

pub struct Fixture {
    pub clock: FixedClock,
    pub storage: Storage,
    pub gateway: Arc<SimulatedGateway>,
    pub system: TicketingSystem,
    pub event: EventId,
}

/// A system over `storage`; several may share it (one after another, or at once).
pub async fn system_with(storage: &Storage, clock: &FixedClock, gateway: Arc<SimulatedGateway>) -> TicketingSystem {
    TicketingSystem::builder()
        .event_store(Arc::clone(&storage.store))
        .checkpoints(Arc::clone(&storage.checkpoints))
        .read_models(storage.read_models.clone())
        .clock(Arc::new(clock.clone()))
        .payment_gateway(gateway)
        .ticket_keys(tickets::keys())
        .build()
        .await
        .unwrap()
}

pub async fn on_sale(backend: Backend, sections: &[(&str, u32)]) -> Fixture {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let event = open_sale_on(&system, &clock, sections).await;
    Fixture { clock, storage, gateway, system, event }
}

/// Creates an event with `sections` (2,500 EUR a seat) and opens its sales.
pub async fn open_sale_on(system: &TicketingSystem, clock: &FixedClock, sections: &[(&str, u32)]) -> EventId {
    let event = system.create_event(spec(clock, sections)).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    event
}

pub fn request(f: &Fixture, section: &str, quantity: u32) -> ReserveRequest {
    ReserveRequest {
        event_id: f.event,
        section: SectionName::new(section).unwrap(),
        quantity,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    }
}

pub fn card() -> PaymentDetails {
    PaymentDetails { token: "tok_visa".into() }
}

pub async fn available(f: &Fixture, section: &'static str) -> u32 {
    f.system.settled().await.unwrap();
    f.system.available_seats().unwrap().get_availability(f.event, section).await.unwrap().unwrap().available
}

pub async fn metrics(system: &TicketingSystem, event: EventId) -> SalesMetrics {
    system.sales_analytics().unwrap().get_metrics(event).await.unwrap().unwrap()
}

/// Sums of legal sales past the range of one amount are counted exactly: two events, each with
/// one seat at EUR 60 quadrillion (each event's revenue fits an `i64`, as `create_event`
/// checks), bought by one customer. Her total and the revenue over all events are
/// 120 quadrillion, beyond `i64::MAX` (before: the customer model overflowed at the second payment
/// and stopped counting anything).
pub async fn sums_past_one_amount_are_counted_exactly(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let price = Money::new(6_000_000_000_000_000_000, Currency::EUR);
    let customer = CustomerId::new_v4();
    for _ in 0..2 {
        let event = system.create_event(spec_priced(&clock, &[("Box", 1)], price)).await.unwrap();
        system.publish_event(event).await.unwrap();
        system.open_sales(event).await.unwrap();
        let request = ReserveRequest {
            event_id: event,
            section: SectionName::new("Box").unwrap(),
            quantity: 1,
            customer_id: customer,
            idempotency_key: None,
        };
        let hold = system.reserve(request).await.unwrap();
        system.pay(hold.reservation_id, card()).await.unwrap();
        system.settled().await.unwrap();
        assert_eq!(metrics(&system, event).await.total_revenue, MoneyTotal::from(price));
    }
    let expected = MoneyTotal::new(2 * i128::from(price.minor_units()), Currency::EUR);
    assert!(expected.minor_units() > i128::from(i64::MAX));
    let all = system.sales_analytics().unwrap().get_total_revenue_all_events().await.unwrap();
    assert_eq!(all, vec![expected]);
    let profile = system.customer_history().unwrap().get_customer_profile(customer).await.unwrap().unwrap();
    assert_eq!(profile.total_spent.get(&Currency::EUR), Some(&expected));
    let top = system.customer_history().unwrap().get_top_spenders(Currency::EUR, 1).await.unwrap();
    assert_eq!(top, vec![(customer, expected)]);
    assert!(system.health().await.unwrap().consumers.iter().all(|c| c.quarantined.is_empty()), "nothing was skipped");
}

pub async fn purchase_sells_seats_and_books_revenue(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    assert_eq!(hold.seats.len(), 2);
    assert_eq!(hold.total, Money::new(5_000, Currency::EUR));
    assert_eq!(hold.expires_at, start() + chrono::Duration::minutes(5));
    let purchase = f.system.pay(hold.reservation_id, card()).await.unwrap();
    assert_eq!(purchase.seats, hold.seats);
    assert_eq!(available(&f, "Stalls").await, 8);
    let metrics = metrics(&f.system, f.event).await;
    assert_eq!(metrics.tickets_sold, 2);
    assert_eq!(metrics.total_revenue, Money::new(5_000, Currency::EUR));
}

pub async fn declined_payment_releases_the_seats(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    f.gateway.add_failures(1);
    let hold = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    let declined = f.system.pay(hold.reservation_id, card()).await;
    assert!(matches!(declined, Err(SystemError::PaymentDeclined { .. })), "{declined:?}");
    assert_eq!(available(&f, "Stalls").await, 10);
}

pub async fn unpaid_hold_expires_on_the_clock_and_late_payment_is_refused(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
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

pub async fn customer_cancellation_releases_the_seats(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.cancel_reservation(hold.reservation_id).await.unwrap();
    assert_eq!(available(&f, "Stalls").await, 10);
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Cancelled);
}

pub async fn last_seat_goes_to_exactly_one_of_many_concurrent_buyers(backend: Backend) {
    let f = on_sale(backend, &[("Box", 1)]).await;
    let attempts: Vec<_> = (0..16).map(|_| f.system.reserve(request(&f, "Box", 1))).collect();
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let short = results.iter().filter(|r| matches!(r, Err(SystemError::InsufficientInventory { .. }))).count();
    assert_eq!((won, short), (1, 15), "{results:?}");
}

pub async fn retried_reserve_with_the_same_key_returns_the_original_hold(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let mut req = request(&f, "Stalls", 2);
    req.idempotency_key = Some("checkout-7".into());
    let first = f.system.reserve(req.clone()).await.unwrap();
    let again = f.system.reserve(req).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(available(&f, "Stalls").await, 8, "seats held once");
    let paid = f.system.pay(first.reservation_id, card()).await.unwrap();
    assert_eq!(f.system.pay(first.reservation_id, card()).await.unwrap(), paid, "paying twice charges once");
}

pub async fn bad_input_gets_a_typed_error_and_appends_nothing(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    f.system.settled().await.unwrap();
    let head = f.storage.store.head_position().await.unwrap();
    let zero = f.system.reserve(request(&f, "Stalls", 0)).await;
    assert!(matches!(zero, Err(SystemError::Reservation(_))), "{zero:?}");
    let unknown_section = f.system.reserve(request(&f, "Balcony", 1)).await;
    assert!(matches!(unknown_section, Err(SystemError::Event(_))), "{unknown_section:?}");
    // More seats than the section has can never be held: refused up front, nothing recorded.
    let too_many = f.system.reserve(request(&f, "Stalls", 11)).await;
    assert!(
        matches!(too_many, Err(SystemError::InsufficientInventory { requested: 11, available: 10, .. })),
        "{too_many:?}"
    );
    let mut keyed = request(&f, "Stalls", 11);
    keyed.idempotency_key = Some("too-many".into());
    let keyed_too_many = f.system.reserve(keyed).await;
    assert!(matches!(keyed_too_many, Err(SystemError::InsufficientInventory { .. })), "{keyed_too_many:?}");
    let not_open = f.system.publish_event(f.event).await;
    assert!(matches!(not_open, Err(SystemError::Event(_))), "{not_open:?}");
    let ghost = f.system.cancel_reservation(ReservationId::new_v4()).await;
    assert!(matches!(ghost, Err(SystemError::Reservation(_))), "{ghost:?}");
    f.system.settled().await.unwrap();
    let after: Vec<_> = f.storage.store.read_all(head, 100).await.unwrap();
    assert!(after.is_empty(), "bad input appended {after:?}");
    assert_eq!(f.storage.store.head_position().await.unwrap(), head);
    assert_eq!(available(&f, "Stalls").await, 10);
}

/// A request that fits the section but not what is free right now goes through the saga: its
/// reservation is recorded and ends Compensated (the record of losing the race for the seats).
pub async fn a_request_beyond_the_free_seats_is_recorded_as_compensated(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    f.system.reserve(request(&f, "Stalls", 8)).await.unwrap();
    f.system.settled().await.unwrap();
    let head = f.storage.store.head_position().await.unwrap();
    let short = f.system.reserve(request(&f, "Stalls", 5)).await;
    let Err(SystemError::InsufficientInventory { reservation_id, requested: 5, available: 2, section: Some(_) }) =
        short
    else {
        panic!("expected InsufficientInventory (5 asked, 2 free): {short:?}");
    };
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(reservation_id).await.unwrap().status, ReservationStatus::Compensated);
    let after = f.storage.store.read_all(head, 100).await.unwrap();
    assert!(!after.is_empty() && after.iter().all(|e| e.stream_id.as_str().starts_with("reservation-")), "{after:?}");
    assert_eq!(available(&f, "Stalls").await, 2);
}

/// Text with a NUL character (which `PostgreSQL` cannot store) is refused with a typed error
/// before anything is appended, on every backend alike: names, reasons and idempotency keys.
pub async fn text_the_store_cannot_hold_is_refused_before_anything_is_appended(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let paid = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.pay(paid.reservation_id, card()).await.unwrap();
    f.system.settled().await.unwrap();
    let head = f.storage.store.head_position().await.unwrap();

    let venue = Venue::new(VenueId::new_v4(), "Royal\0Hall");
    assert!(matches!(venue, Err(DomainError::InvalidText { .. })), "{venue:?}");
    let section = SectionName::new("Stalls\0");
    assert!(matches!(section, Err(DomainError::InvalidSectionName { .. })), "{section:?}");

    let mut named = spec(&f.clock, &[("Stalls", 10)]);
    named.name = "Rust\0Fest".into();
    let created = f.system.create_event(named).await;
    assert!(matches!(created, Err(SystemError::Event(EventError::InvalidText { .. }))), "{created:?}");

    let cancelled = f.system.cancel_event(f.event, "storm\0").await;
    assert!(matches!(cancelled, Err(SystemError::Event(EventError::InvalidText { .. }))), "{cancelled:?}");

    let mut keyed = request(&f, "Stalls", 1);
    keyed.idempotency_key = Some("checkout\0-1".into());
    let reserved = f.system.reserve(keyed).await;
    assert!(matches!(reserved, Err(SystemError::Invalid(DomainError::InvalidText { .. }))), "{reserved:?}");

    let refund = |reason: &str, key: Option<&str>| RefundRequest {
        reservation_id: paid.reservation_id,
        amount: None,
        reason: reason.into(),
        idempotency_key: key.map(Into::into),
    };
    let bad_reason = f.system.refund(refund("good\0will", None)).await;
    assert!(matches!(bad_reason, Err(SystemError::Payment(PaymentError::InvalidText { .. }))), "{bad_reason:?}");
    let bad_key = f.system.refund(refund("goodwill", Some("refund\0-1"))).await;
    assert!(matches!(bad_key, Err(SystemError::Invalid(DomainError::InvalidText { .. }))), "{bad_key:?}");

    f.system.settled().await.unwrap();
    assert_eq!(f.storage.store.head_position().await.unwrap(), head, "refused text appended something");
    // Nothing was changed: the event is still on sale and the purchase still fully refundable.
    f.system.reserve(request(&f, "Stalls", 1)).await.unwrap();
    let refunded = f.system.refund(refund("goodwill", Some("refund-1"))).await.unwrap();
    assert_eq!(refunded.amount, paid.total);
}

pub async fn a_restarted_system_expires_holds_taken_before_the_restart(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.system.settled().await.unwrap();
    f.system.shutdown().await;
    drop(f.system);

    // Same log, same saga checkpoint (past the hold): the deadline must come back from the log.
    let restarted = system_with(&f.storage, &f.clock, Arc::clone(&f.gateway)).await;
    f.clock.advance(Duration::from_secs(301));
    restarted.settled().await.unwrap();
    let left = restarted.available_seats().unwrap().get_availability(f.event, "Stalls").await.unwrap().unwrap();
    assert_eq!((left.available, left.reserved), (10, 0));
    restarted.shutdown().await;
}

pub async fn cancelling_the_event_refunds_purchases_and_releases_holds(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let bought = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.pay(bought.reservation_id, card()).await.unwrap();
    let held = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.system.cancel_event(f.event, "storm").await.unwrap();
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(held.reservation_id).await.unwrap().status, ReservationStatus::Cancelled);
    let metrics = metrics(&f.system, f.event).await;
    assert_eq!(metrics.total_revenue, Money::new(0, Currency::EUR), "refund cancels the revenue");
    let seats = f.system.available_seats().unwrap().get_availability(f.event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.reserved, 0);
}

pub async fn two_systems_sharing_a_store_never_oversell(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let a = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let b = system_with(&storage, &clock, Arc::clone(&gateway)).await;
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
    let log = storage.store.read_all(0, 1_000_000).await.unwrap();
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

    // Both systems' read models (fed side by side; in PostgreSQL the same tables) count each sale once.
    for system in [&a, &b] {
        system.settled().await.unwrap();
        let metrics = metrics(system, event).await;
        assert_eq!((metrics.tickets_sold, metrics.completed_reservations), (20, 20));
        let seats = system.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
        assert_eq!((seats.available, seats.reserved, seats.sold), (0, 0, 20));
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Every answer the three read models give about `f`'s event and `customers`.
#[derive(Debug, PartialEq)]
pub struct Answers {
    sections: Vec<Option<boxoffice::projections::SectionAvailability>>,
    metrics: Option<SalesMetrics>,
    revenue: Vec<MoneyTotal>,
    popular: Option<(SectionName, u64)>,
    profiles: Vec<Option<boxoffice::projections::CustomerProfile>>,
    attendees: Vec<CustomerId>,
    top: Vec<(CustomerId, MoneyTotal)>,
}

pub async fn answers(system: &TicketingSystem, event: EventId, customers: &[CustomerId]) -> Answers {
    let (seats, sales, history) =
        (system.available_seats().unwrap(), system.sales_analytics().unwrap(), system.customer_history().unwrap());
    let mut sections = Vec::new();
    for section in ["Stalls", "Box"] {
        sections.push(seats.get_availability(event, section).await.unwrap());
    }
    let mut profiles = Vec::new();
    for customer in customers {
        profiles.push(history.get_customer_profile(*customer).await.unwrap());
    }
    let mut attendees = history.get_event_attendees(event).await.unwrap();
    attendees.sort();
    Answers {
        sections,
        metrics: sales.get_metrics(event).await.unwrap(),
        revenue: sales.get_total_revenue_all_events().await.unwrap(),
        popular: sales.get_most_popular_section(event).await.unwrap(),
        profiles,
        attendees,
        top: history.get_top_spenders(Currency::EUR, 10).await.unwrap(),
    }
}

pub async fn buy(system: &TicketingSystem, event: EventId, section: &str, quantity: u32, customer: CustomerId) {
    let request = ReserveRequest {
        event_id: event,
        section: SectionName::new(section).unwrap(),
        quantity,
        customer_id: customer,
        idempotency_key: None,
    };
    let hold = system.reserve(request).await.unwrap();
    system.pay(hold.reservation_id, card()).await.unwrap();
}

/// A system stops and a new one starts over the same storage: its read models give exactly the
/// answers the old one gave (nothing counted twice, nothing lost), then count what comes next
/// once. Returns the fixture with the restarted system, still running.
pub async fn a_restarted_system_counts_nothing_twice(backend: Backend) -> Fixture {
    let mut f = on_sale(backend, &[("Stalls", 10), ("Box", 4)]).await;
    let customers = [CustomerId::new_v4(), CustomerId::new_v4(), CustomerId::new_v4()];
    let [alice, bob, carol] = customers;
    buy(&f.system, f.event, "Stalls", 2, alice).await;
    buy(&f.system, f.event, "Box", 1, bob).await;
    let held = ReserveRequest { customer_id: carol, ..request(&f, "Stalls", 3) };
    f.system.reserve(held).await.unwrap();
    f.system.settled().await.unwrap();
    let before = answers(&f.system, f.event, &customers).await;
    assert_eq!(before.metrics.as_ref().map(|m| (m.tickets_sold, m.total_revenue)), Some((3, eur(7_500).into())));
    f.system.shutdown().await;

    f.system = system_with(&f.storage, &f.clock, Arc::clone(&f.gateway)).await;
    f.system.settled().await.unwrap();
    assert_eq!(answers(&f.system, f.event, &customers).await, before, "the restart changed an answer");

    buy(&f.system, f.event, "Box", 1, alice).await;
    f.system.settled().await.unwrap();
    let after = answers(&f.system, f.event, &customers).await;
    let sales = after.metrics.as_ref().unwrap();
    assert_eq!((sales.tickets_sold, sales.completed_reservations, sales.total_revenue), (4, 3, eur(10_000).into()));
    let alice_profile = after.profiles[0].as_ref().unwrap();
    assert_eq!((alice_profile.purchases.len(), alice_profile.total_tickets), (2, 3));
    assert_eq!(alice_profile.total_spent.get(&Currency::EUR), Some(&eur(7_500).into()));
    let boxes = after.sections[1].as_ref().unwrap();
    assert_eq!((boxes.available, boxes.reserved, boxes.sold), (2, 0, 2));
    let stalls = after.sections[0].as_ref().unwrap();
    assert_eq!((stalls.available, stalls.reserved, stalls.sold), (5, 3, 2));
    assert_eq!(after.attendees, {
        let mut v = vec![alice, bob];
        v.sort();
        v
    });
    f
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}
