//! The assembled system end to end on the in-memory backend (scenarios in `system_support`): the
//! saga through the log, durable expiry on an injected clock, idempotent commands, restarts,
//! typed errors, read models, and no oversell when two systems share one store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod system_support;

use system_support::Backend;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::$name(Backend::Memory).await;
        }
    )*};
}

scenarios!(
    purchase_sells_seats_and_books_revenue,
    declined_payment_releases_the_seats,
    unpaid_hold_expires_on_the_clock_and_late_payment_is_refused,
    customer_cancellation_releases_the_seats,
    last_seat_goes_to_exactly_one_of_many_concurrent_buyers,
    retried_reserve_with_the_same_key_returns_the_original_hold,
    bad_input_gets_a_typed_error_and_appends_nothing,
    a_request_beyond_the_free_seats_is_recorded_as_compensated,
    text_the_store_cannot_hold_is_refused_before_anything_is_appended,
    a_restarted_system_expires_holds_taken_before_the_restart,
    cancelling_the_event_refunds_purchases_and_releases_holds,
    two_systems_sharing_a_store_never_oversell,
    sums_past_one_amount_are_counted_exactly,
    a_restarted_system_counts_nothing_twice,
);

system_support::payments::payment_scenarios!(Backend::Memory);
system_support::health::health_scenarios!(Backend::Memory);
system_support::tickets::ticket_scenarios!(Backend::Memory);
system_support::orders::order_scenarios!(Backend::Memory);
system_support::nodes::node_scenarios!(Backend::Memory);
system_support::read_models_tickets::ticket_read_model_scenarios!(Backend::Memory);

/// With an event bus the system relays its log: after a purchase every committed event is on
/// its category's topic, and `published_position` reaches the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_bus_receives_every_committed_event() {
    use std::sync::Arc;
    use std::time::Duration;

    use boxoffice::event_bus::{MemoryEventBus, TopicRouter};
    use boxoffice::event_store::{EventStore, MemoryEventStore};
    use boxoffice::prelude::*;
    use boxoffice::system::TicketingSystem;

    let clock = FixedClock::new(chrono::Utc::now());
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
    let event = system_support::open_sale_on(&system, &clock, &[("Stalls", 10)]).await;
    system_support::buy(&system, event, "Stalls", 2, CustomerId::new_v4()).await;
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

/// A system built without a payment gateway runs on the simulated one and says so: a warning at
/// `build()` names it a demo that moves no money. One given a gateway says nothing of the kind.
#[test]
fn a_system_without_a_gateway_warns_that_payments_are_simulated() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let build = |gateway: Option<Arc<boxoffice::system::SimulatedGateway>>| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || sink.clone()).with_max_level(tracing::Level::WARN).finish();
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut builder = boxoffice::system::TicketingSystem::builder();
                if let Some(gateway) = gateway {
                    builder = builder.payment_gateway(gateway);
                }
                builder.build().await.unwrap().shutdown().await;
            });
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    };
    let unchosen = build(None);
    assert!(unchosen.contains("moves no money"), "no warning: {unchosen:?}");
    let chosen = build(Some(Arc::new(boxoffice::system::SimulatedGateway::always_succeed())));
    assert!(!chosen.contains("moves no money"), "a chosen gateway is not a silent default: {chosen:?}");
}
