//! The notifier end to end on the in-memory backend: a purchase, a refund and a cancelled event
//! each notify exactly once; a notifier restarted without its checkpoint, a sink that fails on
//! cue and two notifiers over one store send nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_store::{CheckpointStore, EventStore, MemoryCheckpointStore, MemoryEventStore, RetryPolicy};
use boxoffice::notify::{
    CustomerDirectory, EmailAddress, Notification, NotificationKind, Notifier, NotifierConfig, NotifierError,
    NotifierHandle, RecordingSink,
};
use boxoffice::prelude::*;
use boxoffice::system::{RefundRequest, SimulatedGateway, TicketingSystem};

/// Generous: the conditions are met in milliseconds; the deadline only bounds a failure.
const DEADLINE: Duration = Duration::from_secs(30);

fn quick_retries() -> NotifierConfig {
    NotifierConfig {
        retry: RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_attempts: None,
        },
        ..NotifierConfig::default()
    }
}

/// Addresses for `customers` (`c0@example.com`, ...), as the application's directory.
fn directory(customers: &[CustomerId]) -> Arc<dyn CustomerDirectory> {
    let addresses: HashMap<CustomerId, EmailAddress> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, EmailAddress::new(format!("c{i}@example.com")).unwrap()))
        .collect();
    Arc::new(move |customer: CustomerId| addresses.get(&customer).cloned())
}

async fn open_sale(system: &TicketingSystem) -> EventId {
    let stalls = SectionName::new("Stalls").unwrap();
    let event = system
        .create_event(EventSpec {
            name: "Rust Live".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall 1").unwrap(),
            date: chrono::Utc::now() + chrono::Duration::days(30),
            sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(100).unwrap() }],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, stalls, Money::new(5_000, Currency::EUR), None).unwrap(),
            ],
            policy: SalesPolicy::default(),
        })
        .await
        .unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    event
}

async fn hold(system: &TicketingSystem, event: EventId, customer: CustomerId, quantity: u32) -> ReservationId {
    let request = ReserveRequest {
        event_id: event,
        section: SectionName::new("Stalls").unwrap(),
        quantity,
        customer_id: customer,
        idempotency_key: None,
    };
    system.reserve(request).await.unwrap().reservation_id
}

async fn buy(system: &TicketingSystem, event: EventId, customer: CustomerId, quantity: u32) -> ReservationId {
    let reservation = hold(system, event, customer, quantity).await;
    system.pay(reservation, PaymentDetails { token: "tok_visa".into() }).await.unwrap();
    reservation
}

async fn system_over(store: &Arc<dyn EventStore>) -> TicketingSystem {
    TicketingSystem::builder()
        .event_store(Arc::clone(store))
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .build()
        .await
        .unwrap()
}

/// Polls `reached` until it holds (returning at once when it does) or the deadline passes.
async fn until(what: &str, mut reached: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !reached().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `notifier` has handled the whole log of `store`.
async fn caught_up(notifier: &NotifierHandle, store: &Arc<dyn EventStore>) {
    let head = store.last_committed_position().await.unwrap();
    let mut status = notifier.status();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.position >= head))
        .await
        .expect("the notifier catches up with the log")
        .unwrap();
}

fn kinds(delivered: &[Notification]) -> Vec<(NotificationKind, String)> {
    let mut kinds: Vec<_> = delivered.iter().map(|n| (n.kind(), n.recipient().email.to_string())).collect();
    kinds.sort_by_key(|(kind, to)| (kind.as_str(), to.clone()));
    kinds
}

fn assert_unique(delivered: &[Notification]) {
    let ids: HashSet<_> = delivered.iter().map(Notification::id).collect();
    assert_eq!(ids.len(), delivered.len(), "no notification is delivered twice: {delivered:#?}");
}

/// Purchases by two customers, a refund, a hold never paid, then the event is cancelled: each
/// buyer gets one confirmation, one cancellation notice and one notice per refund; the customer
/// whose hold was released gets nothing; a buyer the directory does not know is refused and
/// reported, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_a_refund_and_a_cancellation_each_notify_once() {
    let (ada, bob, cyd, unknown) =
        (CustomerId::new_v4(), CustomerId::new_v4(), CustomerId::new_v4(), CustomerId::new_v4());
    let sink = RecordingSink::new();
    let system = TicketingSystem::builder()
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .notifier(Arc::new(sink.clone()), directory(&[ada, bob, cyd]))
        .build()
        .await
        .unwrap();
    let event = open_sale(&system).await;
    let adas = buy(&system, event, ada, 2).await;
    let mut count = sink.delivered_count();
    tokio::time::timeout(DEADLINE, count.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    let confirmation = sink.delivered().remove(0);
    let Notification::PurchaseConfirmed(purchase) = &confirmation else { panic!("{confirmation:?}") };
    assert_eq!(purchase.recipient.email.as_str(), "c0@example.com");
    assert_eq!(purchase.recipient.customer_id, ada);
    assert_eq!(purchase.purchase.reservation_id, adas);
    assert_eq!(purchase.purchase.seats.len(), 2);
    assert_eq!(purchase.purchase.amount, Money::new(10_000, Currency::EUR));
    assert_eq!(purchase.event.name, "Rust Live");
    assert_eq!(confirmation.subject(), "Your tickets for Rust Live");
    assert!(confirmation.body().contains("100.00 EUR"), "{}", confirmation.body());

    let refund = RefundRequest {
        reservation_id: adas,
        amount: Some(Money::new(1_500, Currency::EUR)),
        reason: "goodwill".into(),
        idempotency_key: Some("goodwill-1".into()),
    };
    system.refund(refund).await.unwrap();
    buy(&system, event, bob, 1).await;
    buy(&system, event, unknown, 1).await;
    hold(&system, event, cyd, 3).await;
    system.cancel_event(event, "storm").await.unwrap();
    system.settled().await.unwrap();

    // Ada: confirmed, refunded 15.00 then the remaining 85.00 when the event was cancelled,
    // cancelled; Bob: confirmed, cancelled, refunded; Cyd (hold only): nothing; the unknown
    // customer: refused three times (purchase, cancellation, refund).
    let expected = 7;
    tokio::time::timeout(DEADLINE, count.wait_for(|n| *n >= expected)).await.unwrap().unwrap();
    let name = "boxoffice-saga-notifier";
    until("the notifier to reach the head of the log", async || {
        let health = system.health().await.unwrap();
        health.consumer(name).is_some_and(|c| c.lag == 0)
    })
    .await;
    let delivered = sink.delivered();
    assert_unique(&delivered);
    let (a, b) = ("c0@example.com".to_owned(), "c1@example.com".to_owned());
    assert_eq!(
        kinds(&delivered),
        vec![
            (NotificationKind::EventCancelled, a.clone()),
            (NotificationKind::EventCancelled, b.clone()),
            (NotificationKind::PurchaseConfirmed, a.clone()),
            (NotificationKind::PurchaseConfirmed, b.clone()),
            (NotificationKind::RefundSucceeded, a.clone()),
            (NotificationKind::RefundSucceeded, a),
            (NotificationKind::RefundSucceeded, b),
        ]
    );
    let refunds: Vec<Money> = delivered
        .iter()
        .filter_map(|n| match n {
            Notification::RefundSucceeded(r) if r.recipient.customer_id == ada => Some(r.amount),
            _ => None,
        })
        .collect();
    assert_eq!(refunds, vec![Money::new(1_500, Currency::EUR), Money::new(8_500, Currency::EUR)]);
    let cancelled = delivered.iter().find(|n| n.kind() == NotificationKind::EventCancelled).unwrap();
    let Notification::EventCancelled(notice) = cancelled else { unreachable!() };
    assert_eq!(notice.reason, "storm");
    assert_eq!(notice.purchases.len(), 1);
    assert_eq!(cancelled.subject(), "Rust Live is cancelled");

    let health = system.health().await.unwrap();
    let notifier = health.consumer(name).expect("the notifier shows in health");
    let refusal = notifier.last_error.as_ref().expect("the refusal is reported");
    let refusal = refusal.downcast_ref::<NotifierError>().expect("a notifier error");
    assert!(matches!(refusal, NotifierError::NoAddress { customer_id, .. } if *customer_id == unknown), "{refusal:?}");
    assert!(notifier.failing.is_none(), "a refusal is not a failure being retried");
    system.shutdown().await;
    assert_eq!(sink.delivered().len(), expected, "nothing more after the head was reached");
}

/// A notifier that lost its checkpoint (it crashed after delivering, before saving it) reads
/// the whole log again and sends nothing twice; one restarted with its checkpoint reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_notifier_sends_nothing_twice() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let ledger: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let customers = [CustomerId::new_v4(), CustomerId::new_v4()];
    let system = system_over(&store).await;
    let event = open_sale(&system).await;
    for customer in customers {
        buy(&system, event, customer, 1).await;
    }
    system.settled().await.unwrap();

    let sink = RecordingSink::new();
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let start = |checkpoints: Arc<MemoryCheckpointStore>| {
        Notifier::new(Arc::clone(&store), checkpoints, Arc::new(sink.clone()), directory(&customers))
            .ledger(Arc::clone(&ledger))
            .config(quick_retries())
            .spawn()
    };
    let first = start(Arc::clone(&checkpoints));
    caught_up(&first, &store).await;
    let stats = first.stop().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (2, 0));
    assert_eq!(sink.delivered().len(), 2);

    let lost = start(Arc::new(MemoryCheckpointStore::new()));
    caught_up(&lost, &store).await;
    let stats = lost.stop().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (0, 2), "the ledger knows both");
    assert_eq!(sink.delivered().len(), 2);

    buy(&system, event, customers[0], 3).await;
    system.settled().await.unwrap();
    let resumed = start(Arc::clone(&checkpoints));
    caught_up(&resumed, &store).await;
    let stats = resumed.stop().await.unwrap();
    assert_eq!((stats.delivered, stats.duplicates), (1, 0), "from its checkpoint: only the new purchase");
    assert_eq!(
        checkpoints.load_checkpoint("boxoffice-notifier").await.unwrap(),
        store.last_committed_position().await.unwrap()
    );
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 3);
    assert_unique(&delivered);
    system.shutdown().await;
}

/// A sink that is down for its first three deliveries: the batch is retried, the checkpoint
/// waits, and in the end every notification is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_retried_and_delivers_each_once() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let customers = [CustomerId::new_v4(), CustomerId::new_v4(), CustomerId::new_v4()];
    let system = system_over(&store).await;
    let event = open_sale(&system).await;
    for customer in customers {
        buy(&system, event, customer, 2).await;
    }
    system.settled().await.unwrap();

    let sink = RecordingSink::new();
    sink.fail_next(3);
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let notifier =
        Notifier::new(Arc::clone(&store), checkpoints.clone(), Arc::new(sink.clone()), directory(&customers))
            .ledger(Arc::new(MemoryEventStore::new()))
            .config(quick_retries())
            .spawn();
    caught_up(&notifier, &store).await;
    let retries = notifier.status().borrow().retries;
    let stats = notifier.stop().await.unwrap();
    assert_eq!(sink.failed(), 3);
    assert!(retries >= 3, "each failure was retried ({retries} retries)");
    assert_eq!(stats.delivered, 3);
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 3);
    assert_unique(&delivered);
    let recipients: HashSet<CustomerId> = delivered.iter().map(|n| n.recipient().customer_id).collect();
    assert_eq!(recipients, customers.into_iter().collect());
    system.shutdown().await;
}

/// Two notifiers (two processes, say) follow one log with one ledger while purchases go on:
/// each notification is delivered once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_notifiers_over_one_store_deliver_each_once() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let ledger: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let customers: Vec<CustomerId> = (0..12).map(|_| CustomerId::new_v4()).collect();
    let system = system_over(&store).await;
    let event = open_sale(&system).await;

    let sink = RecordingSink::new();
    let notifiers: Vec<NotifierHandle> = (0..2)
        .map(|_| {
            Notifier::new(
                Arc::clone(&store),
                Arc::new(MemoryCheckpointStore::new()),
                Arc::new(sink.clone()),
                directory(&customers),
            )
            .ledger(Arc::clone(&ledger))
            .config(quick_retries())
            .spawn()
        })
        .collect();
    let buys = customers.iter().map(|customer| buy(&system, event, *customer, 1));
    futures::future::join_all(buys).await;
    system.settled().await.unwrap();

    for notifier in &notifiers {
        caught_up(notifier, &store).await;
    }
    let mut delivered = 0;
    let mut duplicates = 0;
    for notifier in notifiers {
        let stats = notifier.stop().await.unwrap();
        delivered += stats.delivered;
        duplicates += stats.duplicates;
    }
    let sent = sink.delivered();
    assert_eq!(sent.len(), customers.len());
    assert_unique(&sent);
    assert_eq!(delivered, 12);
    assert_eq!(duplicates, 12, "each notifier found the other's deliveries");
    system.shutdown().await;
}

/// With an event bus the notifier's ledger must live elsewhere: building without one is refused.
#[tokio::test]
async fn a_notifier_next_to_a_bus_needs_a_ledger_of_its_own() {
    use boxoffice::event_bus::{MemoryEventBus, TopicRouter};
    use boxoffice::system::SystemError;
    let sink = Arc::new(RecordingSink::new());
    let builder = || {
        TicketingSystem::builder()
            .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
            .event_bus(Arc::new(MemoryEventBus::new()), TopicRouter::default())
            .notifier(sink.clone(), directory(&[]))
    };
    let refused = builder().build().await;
    assert!(matches!(refused, Err(SystemError::Config { reason }) if reason.contains("notification_ledger")));
    let system = builder().notification_ledger(Arc::new(MemoryEventStore::new())).build().await.unwrap();
    system.shutdown().await;
}

/// A notifier that crashed after claiming a notification (its claim has no outcome) holds the
/// others back until the claim's lease runs out on the clock; then the notification is taken
/// over and delivered, and only then does the checkpoint pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_crashed_notifier_is_taken_over_after_its_lease() {
    use boxoffice::aggregates::reservation_stream;
    use boxoffice::event_store::{ExpectedVersion, Metadata, NewEvent, StreamId};
    use boxoffice::framework::FixedClock;
    use boxoffice::notify::NotificationId;

    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let ledger: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let buyer = CustomerId::new_v4();
    let system = system_over(&store).await;
    let event = open_sale(&system).await;
    let reservation = buy(&system, event, buyer, 1).await;
    system.settled().await.unwrap();
    let completed = store
        .load_stream(&reservation_stream(reservation).unwrap(), 1)
        .await
        .unwrap()
        .into_iter()
        .find(|e| &*e.event_type == "ReservationCompleted")
        .unwrap();
    let id = NotificationId::derive(completed.event_id, NotificationKind::PurchaseConfirmed, buyer);

    let clock = FixedClock::new(chrono::Utc::now());
    let crashed = serde_json::json!({
        "notification_id": id, "kind": "PurchaseConfirmed", "customer_id": buyer,
        "owner": uuid::Uuid::new_v4(), "at": clock.now(),
    });
    let stream = StreamId::new(format!("notified-{id}")).unwrap();
    let claim = NewEvent::new("NotificationClaimed", 1, crashed);
    ledger.append(&stream, ExpectedVersion::NoStream, vec![claim], &Metadata::default(), None).await.unwrap();

    let sink = RecordingSink::new();
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let notifier = Notifier::new(Arc::clone(&store), checkpoints.clone(), Arc::new(sink.clone()), directory(&[buyer]))
        .ledger(Arc::clone(&ledger))
        .clock(Arc::new(clock.clone()))
        .config(NotifierConfig { claim_lease: Duration::from_secs(60), ..quick_retries() })
        .spawn();
    // Within the lease: nothing is sent and the checkpoint stays before the completed purchase.
    let mut count = sink.delivered_count();
    let sent = tokio::time::timeout(Duration::from_millis(300), count.wait_for(|n| *n > 0)).await.is_ok();
    assert!(!sent, "a claim within its lease is respected");
    assert!(checkpoints.load_checkpoint("boxoffice-notifier").await.unwrap() < completed.global_position);

    clock.advance(Duration::from_secs(61));
    tokio::time::timeout(DEADLINE, count.wait_for(|n| *n == 1)).await.unwrap().unwrap();
    caught_up(&notifier, &store).await;
    let stats = notifier.stop().await.unwrap();
    assert_eq!(stats.delivered, 1);
    assert_eq!(sink.delivered()[0].id(), id);
    let marks = ledger.load_stream(&stream, 1).await.unwrap();
    let types: Vec<&str> = marks.iter().map(|e| &*e.event_type).collect();
    assert_eq!(types, ["NotificationClaimed", "NotificationClaimed", "NotificationDelivered"]);
    system.shutdown().await;
}

/// A customer whose tickets were all refunded holds nothing when the event is cancelled: they
/// hear of the refund, not of the cancellation; a customer still holding tickets hears of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_refunded_in_whole_is_not_told_of_the_cancellation() {
    let (ada, bob) = (CustomerId::new_v4(), CustomerId::new_v4());
    let sink = RecordingSink::new();
    let system = TicketingSystem::builder()
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .notifier(Arc::new(sink.clone()), directory(&[ada, bob]))
        .build()
        .await
        .unwrap();
    let event = open_sale(&system).await;
    let adas = buy(&system, event, ada, 2).await;
    buy(&system, event, bob, 1).await;
    let whole = boxoffice::system::TicketRefundRequest {
        reservation_id: adas,
        tickets: Vec::new(),
        reason: "cannot come".into(),
        idempotency_key: None,
    };
    system.refund_tickets(whole).await.unwrap();
    system.cancel_event(event, "storm").await.unwrap();
    system.settled().await.unwrap();
    let mut count = sink.delivered_count();
    // Ada: confirmed, refunded; Bob: confirmed, cancelled, refunded.
    tokio::time::timeout(DEADLINE, count.wait_for(|n| *n >= 5)).await.unwrap().unwrap();
    until("the notifier to reach the head of the log", async || {
        let health = system.health().await.unwrap();
        health.consumer("boxoffice-saga-notifier").is_some_and(|c| c.lag == 0)
    })
    .await;
    let (a, b) = ("c0@example.com".to_owned(), "c1@example.com".to_owned());
    assert_eq!(
        kinds(&sink.delivered()),
        vec![
            (NotificationKind::EventCancelled, b.clone()),
            (NotificationKind::PurchaseConfirmed, a.clone()),
            (NotificationKind::PurchaseConfirmed, b.clone()),
            (NotificationKind::RefundSucceeded, a),
            (NotificationKind::RefundSucceeded, b),
        ]
    );
    system.shutdown().await;
}

/// With ticket keys the confirmation lists the purchase's tickets with the codes that admit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_carries_the_ticket_codes() {
    let ada = CustomerId::new_v4();
    let sink = RecordingSink::new();
    let system = TicketingSystem::builder()
        .payment_gateway(Arc::new(SimulatedGateway::always_succeed()))
        .ticket_keys(boxoffice::domain::TicketKeys::from_secret([5; 32]))
        .notifier(Arc::new(sink.clone()), directory(&[ada]))
        .build()
        .await
        .unwrap();
    let event = open_sale(&system).await;
    let adas = buy(&system, event, ada, 2).await;
    let mut count = sink.delivered_count();
    tokio::time::timeout(DEADLINE, count.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    let confirmation = sink.delivered().remove(0);
    let Notification::PurchaseConfirmed(purchase) = &confirmation else { panic!("{confirmation:?}") };
    let issued = system.tickets(adas).await.unwrap();
    let listed: Vec<_> = purchase.tickets.iter().map(|t| (t.ticket_id, t.code.clone())).collect();
    assert_eq!(listed, issued.iter().map(|t| (t.ticket_id, t.code.clone())).collect::<Vec<_>>());
    assert!(issued.iter().all(|t| confirmation.body().contains(&t.code)), "{}", confirmation.body());
    system.shutdown().await;
}
