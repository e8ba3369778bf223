//! The engine's and the log consumers' metrics, read back through a debugging recorder: command
//! outcomes per aggregate, appends, retries after a failed append, and each consumer's position
//! and lag. One test: the recorder is global to this binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::float_cmp)] // the values read back are whole numbers, exact in f64

mod fault_support;
mod system_support;

use std::sync::Arc;

use boxoffice::event_store::{EventStore, MemoryEventStore};
use boxoffice::prelude::*;
use fault_support::store::FaultyStore;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

fn value(snapshot: &[(CompositeKey, DebugValue)], kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> f64 {
    snapshot
        .iter()
        .filter(|(key, _)| key.kind() == kind && key.key().name() == name)
        .filter(|(key, _)| labels.iter().all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v)))
        .map(|(_, value)| match value {
            #[allow(clippy::cast_precision_loss)]
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            #[allow(clippy::cast_precision_loss)]
            DebugValue::Histogram(samples) => samples.len() as f64,
        })
        .sum()
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<(CompositeKey, DebugValue)> {
    snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| (key, value)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_appends_retries_and_consumer_lag_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let faulty = FaultyStore::new(Arc::new(MemoryEventStore::new()));
    let system = TicketingSystem::builder()
        .event_store(Arc::clone(&faulty) as Arc<dyn EventStore>)
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .build()
        .await
        .unwrap();
    let hall = SectionName::new("Hall").unwrap();
    let event = system
        .create_event(EventSpec {
            name: "Counted".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
            date: chrono::Utc::now() + chrono::Duration::days(7),
            sections: vec![Section { name: hall.clone(), capacity: Capacity::new(10).unwrap() }],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, hall.clone(), Money::new(2_000, Currency::EUR), None).unwrap(),
            ],
            policy: SalesPolicy::default(),
        })
        .await
        .unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    assert!(system.publish_event(event).await.is_err(), "publishing twice is refused");
    faulty.fail_next_append_of("reservation", "ReservationInitiated");
    let request = ReserveRequest {
        event_id: event,
        section: hall,
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let hold = system.reserve(request).await.unwrap();
    system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await.unwrap();
    system.settled().await.unwrap();

    let seen = snapshot(&snapshotter);
    let commands = |aggregate, outcome| {
        value(&seen, MetricKind::Counter, "boxoffice_commands_total", &[("aggregate", aggregate), ("outcome", outcome)])
    };
    assert_eq!(commands("event", "committed"), 3.0, "create, publish, open");
    assert_eq!(commands("event", "rejected"), 1.0, "the second publish");
    // Exactly: each saga step is sent once, whether carried out as its cause committed (a
    // node's own follow-ups) or as the follower read the cause.
    assert_eq!(commands("reservation", "committed"), 4.0, "initiate, allocate, pay, complete");
    assert_eq!(commands("inventory", "committed"), 3.0, "initialise, reserve, confirm");
    assert_eq!(commands("payment", "committed"), 2.0, "intent, outcome");
    assert_eq!(commands("tickets", "committed"), 1.0, "issue");
    let retries = value(&seen, MetricKind::Counter, "boxoffice_append_retries_total", &[("aggregate", "reservation")]);
    assert_eq!(retries, 1.0, "the failed ReservationInitiated append was retried once");
    assert!(value(&seen, MetricKind::Counter, "boxoffice_appends_total", &[]) >= 10.0);
    assert!(value(&seen, MetricKind::Histogram, "boxoffice_command_duration_seconds", &[]) >= 13.0);
    let head = system.event_store().head_position().await.unwrap();
    #[allow(clippy::cast_precision_loss)]
    let head = head as f64;
    // The gauges are set once the follower's batch is handed over, a moment after `settled()`
    // sees its reactions recorded: wait (at most 10 s) for them to reach the head.
    let saga = [("consumer", "boxoffice-saga")];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = snapshot(&snapshotter);
    while value(&seen, MetricKind::Gauge, "boxoffice_consumer_position", &saga) < head
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        seen = snapshot(&snapshotter);
    }
    assert_eq!(value(&seen, MetricKind::Gauge, "boxoffice_log_head", &[]), head);
    assert_eq!(value(&seen, MetricKind::Gauge, "boxoffice_consumer_position", &saga), head);
    assert_eq!(value(&seen, MetricKind::Gauge, "boxoffice_consumer_lag_events", &saga), 0.0);
    system.shutdown().await;
}
