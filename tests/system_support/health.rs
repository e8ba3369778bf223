//! `TicketingSystem::health`: every background consumer with its position and lag, failures
//! while they happen, and the payments awaiting reconciliation.

use std::time::{Duration, Instant};

use std::sync::Arc;

use boxoffice::event_store::{BadEventPolicy, ExpectedVersion, Metadata, NewEvent};
use boxoffice::framework::FixedClock;
use boxoffice::prelude::*;
use boxoffice::projections::ProjectionError;
use boxoffice::system::{ConsumerHealth, Health, SimulatedGateway, SystemError};

use super::{Backend, Fixture, card, on_sale, open_sale_on, request, start};

#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! health_scenarios {
    ($backend:expr) => {
        $crate::system_support::health::health_scenarios!(
            $backend;
            health_names_every_consumer_with_its_lag,
            a_bad_event_is_quarantined_and_every_consumer_reads_on,
            an_event_of_a_newer_schema_version_is_refused_not_misread,
            under_the_halt_policy_a_bad_event_stops_its_consumers_loudly,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::health::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // as above
pub(crate) use health_scenarios;

/// Waits (at most 10 s) until `health` satisfies `reached`.
async fn health_until(system: &TicketingSystem, reached: impl Fn(&Health) -> bool) -> Health {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = system.health().await.unwrap();
        if reached(&health) || Instant::now() > deadline {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a purchase every consumer is at the head and healthy; an unanswered charge counts as
/// unsettled until reconciliation.
pub async fn health_names_every_consumer_with_its_lag(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.system.pay(hold.reservation_id, card()).await.unwrap();
    f.system.settled().await.unwrap();
    let health = f.system.health().await.unwrap();
    assert!(health.is_healthy(), "{health:?}");
    for name in ["boxoffice-saga", "available-seats", "sales-analytics", "customer-history"] {
        let consumer = health.consumer(name).unwrap_or_else(|| panic!("{name} missing from {health:?}"));
        assert_eq!((consumer.position, consumer.lag), (health.head, 0), "{name}");
    }
    assert_eq!(health.unsettled_payments, 0);

    let pending = f.system.reserve(request(&f, "Stalls", 1)).await.unwrap();
    f.gateway.lose_next_answers(1);
    assert!(matches!(f.system.pay(pending.reservation_id, card()).await, Err(SystemError::PaymentPending { .. })));
    assert_eq!(f.system.health().await.unwrap().unsettled_payments, 1, "the unknown charge awaits reconciliation");
    f.clock.advance(Duration::from_secs(61));
    f.system.reconcile_payments().await.unwrap();
    f.system.settled().await.unwrap();
    assert_eq!(f.system.health().await.unwrap().unsettled_payments, 0);
}

/// Every message of an error and its causes.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut causes = Vec::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        causes.push(error.to_string());
        cause = error.source();
    }
    causes
}

/// Appends an inventory event of the wrong shape to `section`'s stream; returns its position.
async fn append_garbage(f: &Fixture, section: &str) -> u64 {
    let section = SectionName::new(section).unwrap();
    let stream = boxoffice::aggregates::inventory_stream(f.event, &section).unwrap();
    let garbage = NewEvent::new("SeatsReserved", 1, serde_json::json!({ "SeatsReserved": { "seats": "none" } }));
    f.system
        .event_store()
        .append(&stream, ExpectedVersion::Any, vec![garbage], &Metadata::default(), None)
        .await
        .unwrap()
        .last_global_position
}

/// Asserts `consumer` quarantined the event at `position`, naming why with `because`.
fn assert_quarantined(consumer: &ConsumerHealth, position: u64, because: &str) {
    let entry = consumer.quarantined.iter().find(|q| q.global_position == position);
    let entry =
        entry.unwrap_or_else(|| panic!("{} did not quarantine position {position}: {consumer:?}", consumer.name));
    let why = causes(&*entry.cause);
    assert!(why.iter().any(|c| c.contains(because)), "{}: the cause says {because:?}: {why:?}", consumer.name);
    assert!(consumer.quarantined_total >= 1);
}

/// An inventory event no reader can apply (a payload of the wrong shape) is quarantined by the
/// saga and the availability model: each reports its position and cause and reads on, so later
/// sales are counted, `settled()` returns, and every consumer reaches the head (before: the model
/// stopped at it for good and only a log line at shutdown said why).
pub async fn a_bad_event_is_quarantined_and_every_consumer_reads_on(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10), ("Circle", 10)]).await;
    f.system.settled().await.unwrap();
    let bad = append_garbage(&f, "Stalls").await;
    let hold = f.system.reserve(request(&f, "Circle", 2)).await.unwrap();
    f.system.pay(hold.reservation_id, card()).await.unwrap();
    f.system.settled().await.unwrap();

    let health = f.system.health().await.unwrap();
    assert!(health.is_healthy(), "quarantining is not failing: {health:?}");
    for name in ["boxoffice-saga", "available-seats"] {
        let consumer = health.consumer(name).unwrap();
        assert_quarantined(consumer, bad, "SeatsReserved");
        assert_eq!((consumer.position, consumer.lag), (health.head, 0), "{name} reads on past the bad event");
    }
    let circle = f.system.available_seats().unwrap().get_availability(f.event, "Circle").await.unwrap().unwrap();
    assert_eq!(circle.available, 8, "the sale after the bad event is counted");
    assert_eq!(super::metrics(&f.system, f.event).await.tickets_sold, 2);
}

/// An event written with a newer schema version than this release knows (a newer release's,
/// during a rolling deploy) is refused, not read as the current shape: an `InventoryInitialized`
/// version 2 that would grow a 2-seat section to 1,000 seats sells nothing more.
pub async fn an_event_of_a_newer_schema_version_is_refused_not_misread(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 2)]).await;
    f.system.settled().await.unwrap();
    let stalls = SectionName::new("Stalls").unwrap();
    let stream = boxoffice::aggregates::inventory_stream(f.event, &stalls).unwrap();
    let newer = NewEvent::new(
        "InventoryInitialized",
        2,
        serde_json::json!({ "InventoryInitialized": {
            "event_id": f.event, "section": "Stalls", "capacity": 1000, "tiers": ["standing"]
        } }),
    );
    f.system
        .event_store()
        .append(&stream, ExpectedVersion::Any, vec![newer], &Metadata::default(), None)
        .await
        .unwrap();
    let sold = f.system.reserve(request(&f, "Stalls", 3)).await;
    assert!(sold.is_err(), "three seats of a two-seat section were held: {sold:?}");
    let log = f.system.event_store().read_all(0, 10_000).await.unwrap();
    assert!(!log.iter().any(|e| &*e.event_type == "SeatsReserved"), "nothing was reserved");
    f.system.settled().await.unwrap();
    let health = f.system.health().await.unwrap();
    let seats = health.consumer("available-seats").unwrap();
    let bad = log.iter().find(|e| &*e.event_type == "InventoryInitialized" && e.schema_version == 2).unwrap();
    assert_quarantined(seats, bad.global_position, "version 2");
    assert_eq!(seats.lag, 0, "the model reads on past it");
}

/// Under [`BadEventPolicy::Halt`] a bad event stops each consumer that cannot apply it, loudly:
/// health shows it failing with the position, the model's queries are refused naming it, and
/// waits time out with an error that names the consumer, where it stopped and why.
pub async fn under_the_halt_policy_a_bad_event_stops_its_consumers_loudly(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let system = TicketingSystem::builder()
        .event_store(Arc::clone(&storage.store))
        .checkpoints(Arc::clone(&storage.checkpoints))
        .read_models(storage.read_models.clone())
        .clock(Arc::new(clock.clone()))
        .payment_gateway(Arc::clone(&gateway) as Arc<dyn boxoffice::system::PaymentGateway>)
        .bad_events(BadEventPolicy::Halt)
        .reply_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let event = open_sale_on(&system, &clock, &[("Stalls", 10)]).await;
    let f = Fixture { clock, storage, gateway, system, event };
    f.system.settled().await.unwrap();
    let bad = append_garbage(&f, "Stalls").await;

    let health = health_until(&f.system, |h| {
        ["boxoffice-saga", "available-seats"].iter().all(|n| h.consumer(n).is_some_and(|c| c.failing.is_some()))
    })
    .await;
    assert!(!health.is_healthy());
    for name in ["boxoffice-saga", "available-seats"] {
        let consumer = health.consumer(name).unwrap();
        let failing = consumer.failing.as_deref().unwrap_or_else(|| panic!("{name} is not failing: {health:?}"));
        let why = causes(failing);
        assert!(why[0].contains(name) && why[0].contains(&bad.to_string()), "{name}: {why:?}");
        assert!(why.iter().any(|c| c.contains("SeatsReserved")), "{name}: {why:?}");
        assert!(consumer.quarantined.is_empty());
        assert!(consumer.position < bad, "{name} stopped before the bad event");
    }
    let refused = f.system.available_seats().map(|_| ());
    assert!(
        matches!(&refused, Err(SystemError::Projection(error)) if error.to_string().contains("available-seats")),
        "a halted model's queries are refused, naming it: {refused:?}"
    );
    assert!(f.system.sales_analytics().is_ok(), "a model that does not read the bad event answers");

    let waited = f.system.wait_for_read_models(bad, Duration::from_millis(500)).await.unwrap_err();
    assert!(
        matches!(&waited, SystemError::Projection(ProjectionError::Timeout { projection, cause: Some(_), .. }) if projection == "available-seats"),
        "{waited:?}"
    );
    let said = waited.to_string();
    assert!(
        said.contains("available-seats") && said.contains(&bad.to_string()) && said.contains("bad event"),
        "{said}"
    );

    // A reply the halted saga would have to give times out naming it, where it stopped and why.
    let stuck = f.system.reserve(request(&f, "Stalls", 1)).await.unwrap_err();
    assert!(
        matches!(&stuck, SystemError::Timeout { consumer, handled, cause: Some(_), .. } if consumer == "boxoffice-saga" && *handled < bad),
        "{stuck:?}"
    );
    let said = stuck.to_string();
    assert!(said.contains("boxoffice-saga") && said.contains("bad event"), "{said}");

    let unsettled = f.system.settled().await.unwrap_err();
    assert!(
        matches!(&unsettled, SystemError::Lagging { consumer, cause: Some(_), .. } if consumer == "boxoffice-saga"),
        "{unsettled:?}"
    );
    let said = unsettled.to_string();
    assert!(said.contains("boxoffice-saga") && said.contains(&bad.to_string()) && said.contains("bad event"), "{said}");
}
