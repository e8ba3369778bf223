//! Several systems on one log, on each storage: each saga step is carried out once, by the
//! system (node) that appended the event it follows, and the steps of a node that stops
//! answering are carried out by another within seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boxoffice::aggregates::{InventoryAction, ReservationStatus, TicketingAction, category};
use boxoffice::event_store::{
    AppendResult, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot, StreamAppend,
    StreamId,
};
use boxoffice::prelude::*;
use boxoffice::system::ReserveRequest;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::{Backend, Storage, card, open_sale_on, start, system_with};

/// One `#[tokio::test]` per scenario, on `$backend`.
#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! node_scenarios {
    ($backend:expr) => {
        $crate::system_support::nodes::node_scenarios!(
            $backend;
            each_saga_step_runs_once_on_the_node_that_appended_its_cause,
            the_saga_of_a_node_that_stopped_answering_is_finished_by_another,
            one_node_writes_a_shared_inventory_for_every_nodes_customers,
            a_shared_inventory_whose_writer_stopped_answering_is_taken_over,
            a_system_restarted_after_a_crash_claims_no_inventory,
            a_nodes_own_follow_ups_are_carried_out_as_their_cause_commits,
            a_nodes_callers_are_answered_as_its_steps_commit,
            a_reservation_is_held_as_its_initiation_commits,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::nodes::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // used by the test binaries that include this module
pub(crate) use node_scenarios;

/// A view of a shared store for one system: counts what that system reads and appends per
/// stream category, and once frozen (the process "hangs": a lost VM, a stopped container) leaves
/// every call of that system unanswered, its heartbeat included.
struct Watched {
    inner: Arc<dyn EventStore>,
    /// Stream loads and appends per category.
    touched: Mutex<HashMap<String, u64>>,
    /// Appends (each stream of a batch once) per category.
    appended: Mutex<HashMap<String, u64>>,
    /// Appends refused for a lost race, per category.
    conflicts: Mutex<HashMap<String, u64>>,
    /// Freeze at the first append to an inventory stream.
    freeze_at_inventory: AtomicBool,
    frozen: AtomicBool,
    /// Subscriptions stop before an event of this type until it is taken away.
    hold_reads_at: watch::Sender<Option<&'static str>>,
}

impl Watched {
    fn new(inner: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            touched: Mutex::new(HashMap::new()),
            appended: Mutex::new(HashMap::new()),
            conflicts: Mutex::new(HashMap::new()),
            freeze_at_inventory: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            hold_reads_at: watch::Sender::new(None),
        })
    }

    fn touched(&self, category: &str) -> u64 {
        self.touched.lock().unwrap().get(category).copied().unwrap_or(0)
    }

    fn appended(&self, category: &str) -> u64 {
        self.appended.lock().unwrap().get(category).copied().unwrap_or(0)
    }

    fn conflicts(&self, category: &str) -> u64 {
        self.conflicts.lock().unwrap().get(category).copied().unwrap_or(0)
    }

    /// Counts the appends to `streams` and, when `result` is a lost race, the conflict ([`kind`]).
    fn count<T>(&self, streams: &[&StreamId], result: &Result<T, EventStoreError>) {
        let mut appended = self.appended.lock().unwrap();
        for stream in streams {
            *appended.entry(kind(stream)).or_default() += 1;
        }
        if let Err(EventStoreError::ConcurrencyConflict { stream, .. }) = result {
            *self.conflicts.lock().unwrap().entry(kind(stream)).or_default() += 1;
        }
    }

    fn touch(&self, stream: &StreamId) {
        *self.touched.lock().unwrap().entry(kind(stream)).or_default() += 1;
    }

    /// Never returns once frozen.
    async fn gate(&self) {
        if self.frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }

    async fn gate_append(&self, streams: &[&StreamId]) {
        if self.freeze_at_inventory.load(Ordering::SeqCst) && streams.iter().any(|s| category(s) == "inventory") {
            self.frozen.store(true, Ordering::SeqCst);
        }
        self.gate().await;
        for stream in streams {
            self.touch(stream);
        }
    }
}

#[async_trait]
impl EventStore for Watched {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Result<AppendResult, EventStoreError> {
        self.gate_append(&[stream]).await;
        let result = self.inner.append(stream, expected, events, metadata, idempotency_key).await;
        self.count(&[stream], &result);
        result
    }

    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        let streams: Vec<StreamId> = appends.iter().map(|a| a.stream.clone()).collect();
        let streams: Vec<&StreamId> = streams.iter().collect();
        self.gate_append(&streams).await;
        let result = self.inner.append_batch(appends).await;
        self.count(&streams, &result);
        result
    }

    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError> {
        self.gate().await;
        self.touch(stream);
        self.inner.load_stream(stream, from_version).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        self.gate().await;
        self.touch(stream);
        self.inner.stream_version(stream).await
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.gate().await;
        self.inner.read_all(after_position, limit).await
    }

    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        use futures::StreamExt;
        let held = self.hold_reads_at.subscribe();
        self.inner
            .subscribe(after_position)
            .then(move |item| {
                let mut held = held.clone();
                async move {
                    if let Ok(envelope) = &item {
                        let _ = held.wait_for(|held| *held != Some(&*envelope.event_type)).await;
                    }
                    item
                }
            })
            .boxed()
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.gate().await;
        self.inner.head_position().await
    }

    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        self.gate().await;
        self.inner.last_committed_position().await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.gate().await;
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.gate().await;
        self.touch(stream);
        self.inner.load_snapshot(stream).await
    }
}

/// What [`Watched`] counts the inventories' writer claims under.
const CLAIMS: &str = "writer claims";

/// What [`Watched`] counts a call on `stream` under: its category, the writer claims apart.
fn kind(stream: &StreamId) -> String {
    if stream.as_str().ends_with("-writer") { CLAIMS.to_owned() } else { category(stream).to_owned() }
}

/// One system over a [`Watched`] view of a fresh store, with 10 seats of "Stalls" on sale.
struct OneWatched {
    storage: Storage,
    gateway: Arc<SimulatedGateway>,
    watched: Arc<Watched>,
    system: TicketingSystem,
    event: EventId,
}

async fn one_watched(backend: Backend) -> OneWatched {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let watched = Watched::new(Arc::clone(&storage.store));
    let system = system_with(&over(&storage, &watched), &clock, Arc::clone(&gateway)).await;
    let event = open_sale_on(&system, &clock, &[("Stalls", 10)]).await;
    OneWatched { storage, gateway, watched, system, event }
}

fn over(storage: &Storage, store: &Arc<Watched>) -> Storage {
    Storage { store: Arc::clone(store) as Arc<dyn EventStore>, ..storage.clone() }
}

fn stalls(event: EventId, quantity: u32, customer_id: CustomerId, key: Option<&str>) -> ReserveRequest {
    ReserveRequest {
        event_id: event,
        section: SectionName::new("Stalls").unwrap(),
        quantity,
        customer_id,
        idempotency_key: key.map(str::to_owned),
    }
}

/// Two systems share the log; every purchase is made on the first. The second follows the
/// whole log (its `settled()` waits for the purchases' every step) yet loads no reservation,
/// payment, inventory or tickets stream and appends nothing: it runs none of the saga's steps,
/// which were all carried out once, on the first, whose node every event of the purchases names.
/// (Before, every system ran every step of every purchase again: N processes, N times the work.)
pub async fn each_saga_step_runs_once_on_the_node_that_appended_its_cause(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let a = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let watched = Watched::new(Arc::clone(&storage.store));
    let b = system_with(&over(&storage, &watched), &clock, Arc::clone(&gateway)).await;
    assert_ne!(a.node_id(), b.node_id());
    let event = open_sale_on(&a, &clock, &[("Stalls", 20)]).await;
    let head_before = storage.store.head_position().await.unwrap();
    for quantity in [1, 2, 3] {
        let hold = a.reserve(stalls(event, quantity, CustomerId::new_v4(), None)).await.unwrap();
        a.pay(hold.reservation_id, card()).await.unwrap();
    }
    let declined = a.reserve(stalls(event, 2, CustomerId::new_v4(), None)).await.unwrap();
    a.cancel_reservation(declined.reservation_id).await.unwrap();
    a.settled().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), b.settled())
        .await
        .expect("the second system's frontier passes the first one's events once their steps are recorded")
        .unwrap();

    for category in ["reservation", "payment", "inventory", "tickets", "allowance"] {
        assert_eq!(watched.touched(category), 0, "the second system touched a {category} stream");
    }
    let log = storage.store.read_all(head_before, 10_000).await.unwrap();
    assert!(log.len() > 20, "the purchases wrote their events");
    for envelope in &log {
        if category(&envelope.stream_id) != "saga" {
            assert_eq!(envelope.metadata.node_id, Some(a.node_id()), "{} {}", envelope.stream_id, envelope.event_type);
        }
    }
    let b_sees = b.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(b_sees.available, 14, "20 seats, 6 sold, the cancelled hold released");
    a.shutdown().await;
    b.shutdown().await;
}

/// A node carries out its own follow-ups of an event that its saga step appended as that step
/// commits, not when its follower reads the event back: with every reading of the log held just
/// before `SeatsReserved`, the hold is allocated all the same (`SeatsAllocated`, `AllocateSeats`'s
/// event, follows `SeatsReserved` in the log). Let go, the follower reads both and carries out
/// nothing twice: the purchase ends as ever, and the seats are sold once.
pub async fn a_nodes_own_follow_ups_are_carried_out_as_their_cause_commits(backend: Backend) {
    let OneWatched { storage, watched, system, event, .. } = one_watched(backend).await;
    system.settled().await.unwrap();
    let head = storage.store.head_position().await.unwrap();
    let mut log = storage.store.subscribe(head);

    watched.hold_reads_at.send_replace(Some("SeatsReserved"));
    let reserving = {
        let system = system.clone();
        tokio::spawn(async move { system.reserve(stalls(event, 3, CustomerId::new_v4(), None)).await })
    };
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(envelope) = futures::StreamExt::next(&mut log).await {
            let envelope = envelope.unwrap();
            seen.push(envelope.event_type.to_string());
            if &*envelope.event_type == "SeatsAllocated" {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no SeatsAllocated while the log's readers are held before SeatsReserved: {seen:?}"));
    let reserved = seen.iter().position(|t| t == "SeatsReserved").expect("SeatsReserved came first");
    assert_eq!(seen.last().map(String::as_str), Some("SeatsAllocated"));
    assert!(reserved < seen.len() - 1, "{seen:?}");
    // Whether `reserve` has answered yet is not asserted: right after recording the initiation it
    // loads the reservation (a retried call finds it past the step it waits for), and on a loaded
    // machine that load can already find `SeatsAllocated`.

    watched.hold_reads_at.send_replace(None);
    let hold = tokio::time::timeout(Duration::from_secs(30), reserving)
        .await
        .expect("the hold is answered once the log is read again")
        .unwrap()
        .unwrap();
    assert_eq!(hold.seats.len(), 3);
    let receipt = system.pay(hold.reservation_id, card()).await.unwrap();
    assert_eq!(receipt.amount, Money::new(7_500, Currency::EUR));
    system.settled().await.unwrap();
    assert_eq!(system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Completed);
    let seats = system.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 7, "three seats sold once");
    let after = storage.store.read_all(head, 10_000).await.unwrap();
    let allocated = after.iter().filter(|e| &*e.event_type == "SeatsAllocated").count();
    assert_eq!(allocated, 1, "the hold was allocated once");
    system.shutdown().await;
}

/// A node answers its own callers as its saga's steps commit, not when its follower reads their
/// events back: with every reading of the log held just before `SeatsAllocated`, `reserve` gets
/// its hold all the same; held just before `PaymentRequested`, `pay` gets its receipt (the charge
/// too starts as the request commits). Let go, the follower reads it all and the purchase ends as
/// ever: charged once, sold once.
pub async fn a_nodes_callers_are_answered_as_its_steps_commit(backend: Backend) {
    let OneWatched { gateway, watched, system, event, .. } = one_watched(backend).await;
    system.settled().await.unwrap();

    watched.hold_reads_at.send_replace(Some("SeatsAllocated"));
    let hold =
        tokio::time::timeout(Duration::from_secs(30), system.reserve(stalls(event, 2, CustomerId::new_v4(), None)))
            .await
            .expect("the hold is answered while the log is read only up to its SeatsAllocated")
            .unwrap();
    assert_eq!(hold.seats.len(), 2);
    // Held before the payment's request: the charge, its outcome and the completion all follow
    // the call's commit at once.
    watched.hold_reads_at.send_replace(Some("PaymentRequested"));
    let receipt = tokio::time::timeout(Duration::from_secs(30), system.pay(hold.reservation_id, card()))
        .await
        .expect("the payment is answered while the log is read only up to its PaymentRequested")
        .unwrap();
    assert_eq!(receipt.amount, Money::new(5_000, Currency::EUR));
    assert_eq!(receipt.seats, hold.seats);

    watched.hold_reads_at.send_replace(None);
    system.settled().await.unwrap();
    assert_eq!(system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Completed);
    let seats = system.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 8, "two seats sold once");
    assert_eq!(gateway.charge_calls(), 1, "charged once");
    system.shutdown().await;
}

/// The steps that follow what an API call appends start as that append commits, an inventory's
/// too when this node writes it: with every reading of the log held just before the second
/// customer's `ReservationInitiated`, that customer still gets the hold (`ReserveSeats`, then
/// `AllocateSeats`, then the answer). Let go, the follower reads it all and does nothing twice.
pub async fn a_reservation_is_held_as_its_initiation_commits(backend: Backend) {
    let OneWatched { storage, watched, system, event, .. } = one_watched(backend).await;
    // The first hold of the section is read from the log: the follower learns who writes it.
    let first = system.reserve(stalls(event, 1, CustomerId::new_v4(), None)).await.unwrap();
    system.settled().await.unwrap();
    let head = storage.store.head_position().await.unwrap();

    watched.hold_reads_at.send_replace(Some("ReservationInitiated"));
    let second =
        tokio::time::timeout(Duration::from_secs(30), system.reserve(stalls(event, 3, CustomerId::new_v4(), None)))
            .await
            .expect("the hold is answered while the log is read only up to its ReservationInitiated")
            .unwrap();
    assert_eq!(second.seats.len(), 3);
    assert!(second.seats.iter().all(|seat| !first.seats.contains(seat)), "no seat held twice");

    watched.hold_reads_at.send_replace(None);
    system.pay(second.reservation_id, card()).await.unwrap();
    system.settled().await.unwrap();
    let after = storage.store.read_all(head, 10_000).await.unwrap();
    for (event_type, expected) in [("SeatsReserved", 1), ("SeatsAllocated", 1), ("SeatsConfirmed", 1)] {
        let count = after.iter().filter(|e| &*e.event_type == event_type).count();
        assert_eq!(count, expected, "{event_type} once for the second hold");
    }
    let seats = system.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 6, "one seat held, three sold");
    system.shutdown().await;
}

/// A system stops answering (its store calls hang, heartbeat included) in the middle of a
/// reservation: the reservation is recorded, its seats not yet asked for. Another system on the
/// same log takes the saga over once the first one's lease has run out: the customer's retry with
/// the same idempotency key, sent to the second system, gets the hold, and pays for it there.
pub async fn the_saga_of_a_node_that_stopped_answering_is_finished_by_another(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let watched = Watched::new(Arc::clone(&storage.store));
    let a = system_with(&over(&storage, &watched), &clock, Arc::clone(&gateway)).await;
    let b = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let event = open_sale_on(&a, &clock, &[("Stalls", 10)]).await;
    a.settled().await.unwrap();
    b.settled().await.unwrap();

    watched.freeze_at_inventory.store(true, Ordering::SeqCst);
    let customer = CustomerId::new_v4();
    let hung = {
        let a = a.clone();
        tokio::spawn(async move { a.reserve(stalls(event, 3, customer, Some("order-7"))).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !watched.frozen.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the first system never asked the inventory for seats");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let frozen_at = Instant::now();

    let retry = tokio::time::timeout(Duration::from_secs(60), b.reserve(stalls(event, 3, customer, Some("order-7"))))
        .await
        .expect("the second system takes the saga over within seconds")
        .unwrap();
    let took = frozen_at.elapsed();
    assert_eq!(retry.seats.len(), 3);
    assert!(took >= Duration::from_secs(3), "the second system waited for the first one's lease ({took:?})");
    let receipt = b.pay(retry.reservation_id, card()).await.unwrap();
    assert_eq!(receipt.amount, Money::new(7_500, Currency::EUR));
    b.settled().await.unwrap();
    let status = b.reservation(retry.reservation_id).await.unwrap().status;
    assert_eq!(status, ReservationStatus::Completed);
    let seats = b.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 7, "the order's three seats sold once");
    assert!(!hung.is_finished(), "the first system never answered");
    eprintln!("taken over {took:?} after the first system stopped answering");
    hung.abort();
    b.shutdown().await;
}

/// Two systems on one log, each watched; the first sells a seat, then the second, which has seen
/// the first at work and so claims the section's inventory as it writes its first hold. Returns
/// the systems, their watches and the event.
async fn two_sellers(
    storage: &Storage,
    clock: &FixedClock,
    seats: u32,
) -> (TicketingSystem, Arc<Watched>, TicketingSystem, Arc<Watched>, EventId) {
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let (watch_a, watch_b) = (Watched::new(Arc::clone(&storage.store)), Watched::new(Arc::clone(&storage.store)));
    let a = system_with(&over(storage, &watch_a), clock, Arc::clone(&gateway)).await;
    let b = system_with(&over(storage, &watch_b), clock, Arc::clone(&gateway)).await;
    let event = open_sale_on(&a, clock, &[("Stalls", seats)]).await;
    for seller in [&a, &b] {
        let hold = seller.reserve(stalls(event, 1, CustomerId::new_v4(), None)).await.unwrap();
        seller.pay(hold.reservation_id, card()).await.unwrap();
        a.settled().await.unwrap();
        b.settled().await.unwrap();
    }
    assert_eq!(watch_a.appended(CLAIMS), 0, "the first system claimed nothing: it had seen no other node");
    assert_eq!(watch_b.appended(CLAIMS), 1, "the second system claimed the inventory once");
    (a, watch_a, b, watch_b, event)
}

/// The node a claim stream's last claim names.
async fn writer_of(store: &Arc<dyn EventStore>, event: EventId) -> Option<uuid::Uuid> {
    let stream = boxoffice::aggregates::writer_claims_stream(event, &SectionName::new("Stalls").unwrap()).unwrap();
    let claims = store.load_stream(&stream, 0).await.unwrap();
    claims.last().map(|claim| match TicketingAction::decode(claim).unwrap() {
        TicketingAction::Inventory(InventoryAction::WriterClaimed { node, .. }) => node,
        other => panic!("not a claim: {other:?}"),
    })
}

/// Two systems sell one section at once. Once the second has claimed the section's inventory,
/// every hold and confirmation of both systems' customers is appended by it alone: the first
/// appends nothing to the inventory, and no inventory append of either loses a race. The holds
/// it writes for the first system's customers carry the first system's node, so what follows
/// them (allocation, payment, tickets) runs there. (Before, each system appended its own
/// customers' holds, and the two raced on the one stream.)
pub async fn one_node_writes_a_shared_inventory_for_every_nodes_customers(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let (a, watch_a, b, watch_b, event) = two_sellers(&storage, &clock, 200).await;
    assert_eq!(writer_of(&storage.store, event).await, Some(b.node_id()));
    let head_before = storage.store.head_position().await.unwrap();
    let (a_before, b_before) = (watch_a.appended("inventory"), watch_b.appended("inventory"));

    let purchases = (0..40).map(|n| {
        let seller = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let hold = seller.reserve(stalls(event, 2, CustomerId::new_v4(), None)).await.unwrap();
            seller.pay(hold.reservation_id, card()).await.unwrap();
            (n % 2 == 0).then_some(hold.reservation_id)
        })
    });
    let of_a: Vec<ReservationId> =
        futures::future::join_all(purchases).await.into_iter().filter_map(|r| r.unwrap()).collect();
    a.settled().await.unwrap();
    b.settled().await.unwrap();

    assert_eq!(watch_a.appended("inventory"), a_before, "the first system appended to the inventory the second writes");
    assert!(watch_b.appended("inventory") > b_before, "the writer appended every hold");
    assert_eq!(watch_a.conflicts("inventory") + watch_b.conflicts("inventory"), 0, "one writer loses no race");
    let log = storage.store.read_all(head_before, 100_000).await.unwrap();
    let mut held_for_a = 0;
    for envelope in &log {
        if let Ok(TicketingAction::Inventory(InventoryAction::SeatsReserved { reservation_id, .. })) =
            TicketingAction::decode(envelope)
            && of_a.contains(&reservation_id)
        {
            assert_eq!(envelope.metadata.node_id, Some(a.node_id()), "a hold for the first system's customer");
            held_for_a += 1;
        }
    }
    assert_eq!(held_for_a, 20);
    for system in [&a, &b] {
        let seats = system.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
        assert_eq!(seats.available, 200 - 2 - 80, "every seat sold once");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// The writer of a section stops answering (its store calls hang, heartbeat included). The other
/// system's customer still gets a hold: once the writer's lease has run out, the other system
/// carries out the step itself and claims the inventory, so the next purchase is written there
/// without waiting for a lease again.
pub async fn a_shared_inventory_whose_writer_stopped_answering_is_taken_over(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let (a, watch_a, b, watch_b, event) = two_sellers(&storage, &clock, 20).await;
    watch_b.frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();

    let hold = tokio::time::timeout(Duration::from_secs(60), a.reserve(stalls(event, 3, CustomerId::new_v4(), None)))
        .await
        .expect("the hold is taken over within seconds")
        .unwrap();
    let took = frozen_at.elapsed();
    assert!(took >= Duration::from_secs(3), "the first system waited for the writer's lease ({took:?})");
    a.pay(hold.reservation_id, card()).await.unwrap();
    assert_eq!(writer_of(&storage.store, event).await, Some(a.node_id()), "the inventory was claimed");
    let before = watch_a.appended("inventory");
    let next = tokio::time::timeout(Duration::from_secs(60), a.reserve(stalls(event, 2, CustomerId::new_v4(), None)))
        .await
        .expect("the next hold is written by the new writer")
        .unwrap();
    a.pay(next.reservation_id, card()).await.unwrap();
    assert!(watch_a.appended("inventory") > before);
    a.settled().await.unwrap();
    let seats = a.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 20 - 2 - 5, "two seats before, five after the takeover, each sold once");
    eprintln!("taken over {took:?} after the writer stopped answering");
    a.shutdown().await;
    drop(b);
}

/// A system starts over a log whose last events are those of a node that died before its
/// checkpoint caught up (here: a fresh checkpoint store, so every event is read again). It takes
/// those events over, and sells, but claims no inventory: a dead node's tail is no sign of
/// another node at work, and a claim would hand the inventory to this node, whose own crash
/// would then leave it to a dead writer for the lease.
pub async fn a_system_restarted_after_a_crash_claims_no_inventory(backend: Backend) {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let watch_a = Watched::new(Arc::clone(&storage.store));
    let a = system_with(&over(&storage, &watch_a), &clock, Arc::clone(&gateway)).await;
    let event = open_sale_on(&a, &clock, &[("Stalls", 10)]).await;
    let hold = a.reserve(stalls(event, 2, CustomerId::new_v4(), None)).await.unwrap();
    a.pay(hold.reservation_id, card()).await.unwrap();
    a.settled().await.unwrap();
    watch_a.frozen.store(true, Ordering::SeqCst);

    let restarted =
        Storage { checkpoints: Arc::new(boxoffice::event_store::MemoryCheckpointStore::new()), ..storage.clone() };
    let watch_b = Watched::new(Arc::clone(&storage.store));
    let b = system_with(&over(&restarted, &watch_b), &clock, Arc::clone(&gateway)).await;
    let hold = b.reserve(stalls(event, 3, CustomerId::new_v4(), None)).await.unwrap();
    b.pay(hold.reservation_id, card()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), b.settled())
        .await
        .expect("the dead node's events are taken over after its lease")
        .unwrap();
    assert_eq!(watch_b.appended(CLAIMS), 0, "the restarted system claimed an inventory");
    assert!(watch_b.appended("inventory") > 0, "it wrote its own hold");
    let seats = b.available_seats().unwrap().get_availability(event, "Stalls").await.unwrap().unwrap();
    assert_eq!(seats.available, 10 - 2 - 3);
    b.shutdown().await;
    drop(a);
}
