//! `TicketingSystem::health`: every background consumer with its position and lag, failures
//! while they happen, and the payments awaiting reconciliation.

use std::time::{Duration, Instant};

use boxoffice::event_store::{ExpectedVersion, Metadata, NewEvent, StreamId};
use boxoffice::prelude::*;
use boxoffice::system::{Health, SystemError};

use super::{Backend, card, on_sale, request};

#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! health_scenarios {
    ($backend:expr) => {
        $crate::system_support::health::health_scenarios!(
            $backend;
            health_names_every_consumer_with_its_lag,
            a_failing_read_model_shows_in_health_while_it_fails,
            an_event_of_a_newer_schema_version_is_refused_not_misread,
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

/// An inventory event the read model cannot apply (a payload of the wrong shape) makes the
/// availability model fail; health names it and its cause while it fails, instead of the model
/// stopping silently.
pub async fn a_failing_read_model_shows_in_health_while_it_fails(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    f.system.settled().await.unwrap();
    let stream = StreamId::new(format!("inventory-{}-Stalls", f.event)).unwrap();
    let garbage = NewEvent::new("SeatsReserved", 1, serde_json::json!({ "SeatsReserved": { "seats": "none" } }));
    f.system
        .event_store()
        .append(&stream, ExpectedVersion::Any, vec![garbage], &Metadata::default(), None)
        .await
        .unwrap();
    let health = health_until(&f.system, |h| h.consumer("available-seats").is_some_and(|c| c.failing.is_some())).await;
    let seats = health.consumer("available-seats").unwrap();
    assert!(seats.failing.is_some(), "the failure shows while it lasts: {health:?}");
    assert!(!health.is_healthy());
    assert!(seats.lag > 0, "it is behind the head: {seats:?}");
    let refused = f.system.available_seats().map(|_| ());
    assert!(
        matches!(&refused, Err(SystemError::Projection(error)) if error.to_string().contains("available-seats")),
        "a failing model's queries are refused, naming it: {refused:?}"
    );
    assert!(f.system.sales_analytics().is_ok(), "the other models still answer");
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
    let health = health_until(&f.system, |h| h.consumer("available-seats").is_some_and(|c| c.failing.is_some())).await;
    let failing = health.consumer("available-seats").and_then(|c| c.failing.clone());
    let mut causes = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = failing.as_deref().map(|e| e as _);
    while let Some(error) = cause {
        causes.push(error.to_string());
        cause = error.source();
    }
    assert!(causes.iter().any(|c| c.contains("version 2")), "the read model says why: {causes:?}");
}
