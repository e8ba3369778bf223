//! No oversell across processes, proven on `PostgreSQL`: three buyer processes share one database,
//! some of their orders baskets of both sections (held all or none);
//! afterwards the whole log is replayed and every invariant checked. A second test SIGKILLs a
//! process holding seats and shows a fresh system still expires its holds.
//!
//! Needs `DATABASE_URL` (any database on the server: each test creates its own). The buyer
//! processes are this test binary itself, re-run with the ignored `buyer_process` test as entry
//! point, so the test needs no other build step under any feature set.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fresh_database;
mod multiprocess_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::Section;
use boxoffice::event_store::{EventStore, PostgresConfig, PostgresEventStore};
use boxoffice::prelude::*;
use boxoffice::system::{EventSpec, GatewayChoice, SystemConfig, TicketingSystem};
use chrono::{DateTime, Utc};
use fresh_database::{drop_database, fresh_database};
use multiprocess_support::buyer::{self, BIG_SECTION, SOLO_SECTION};

const BUYER_ARGS: &str = "BOXOFFICE_BUYER_ARGS";

/// Entry point of the buyer child processes; does nothing unless run by the tests below.
#[test]
#[ignore = "entry point of the buyer child processes spawned by the multi-process tests"]
fn buyer_process() {
    let Ok(args) = std::env::var(BUYER_ARGS) else { return };
    let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    if let Err(message) = buyer::main_with(&args) {
        panic!("buyer process failed: {message}");
    }
}

async fn system_on(url: &str, hold: Duration) -> TicketingSystem {
    let config = SystemConfig {
        database_url: Some(url.to_owned()),
        database_max_connections: 8,
        database_schema: None,
        kafka_brokers: None,
        consumer_group: None,
        hold_duration: hold,
        payment_gateway: Some(GatewayChoice::Simulated),
        ticket_keys: None,
    };
    TicketingSystem::builder_from_config(&config).await.unwrap().build().await.unwrap()
}

/// Creates an event with a 100-seat and a 1-seat section and opens its sales.
async fn open_event(system: &TicketingSystem) -> EventId {
    let eur = Currency::new("EUR").unwrap();
    let big = SectionName::new(BIG_SECTION).unwrap();
    let solo = SectionName::new(SOLO_SECTION).unwrap();
    let event = system
        .create_event(EventSpec {
            name: "Flash sale".into(),
            venue: Venue::new(VenueId::new_v4(), "Royal Hall").unwrap(),
            date: Utc::now() + chrono::Duration::days(30),
            sections: vec![
                Section { name: big.clone(), capacity: Capacity::new(100).unwrap() },
                Section { name: solo.clone(), capacity: Capacity::new(1).unwrap() },
            ],
            pricing_tiers: vec![
                PricingTier::new(TierKind::Regular, big, Money::new(4_500, eur), None).unwrap(),
                PricingTier::new(TierKind::Regular, solo, Money::new(20_000, eur), None).unwrap(),
            ],
            policy: SalesPolicy::default(),
        })
        .await
        .unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    event
}

/// This test binary re-run as a buyer process.
fn spawn_buyer(url: &str, args: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["buyer_process", "--exact", "--ignored", "--nocapture", "--test-threads=1", "--quiet"])
        .env(BUYER_ARGS, args)
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum HoldState {
    #[default]
    Reserved,
    Confirmed,
    Released,
}

#[derive(Debug, Default)]
struct SectionLedger {
    capacity: u32,
    reserved: u32,
    sold: u32,
    holds: HashMap<ReservationId, (Vec<SeatId>, HoldState)>,
    owner: HashMap<SeatId, ReservationId>,
}

#[derive(Debug, Default)]
struct ReservationLedger {
    total: i64,
    /// Sections of its order.
    lines: usize,
    terminal: Vec<&'static str>,
}

/// Everything the log says, folded event by event with the invariants checked at every step.
#[derive(Debug, Default)]
struct Ledger {
    sections: HashMap<(EventId, SectionName), SectionLedger>,
    reservations: HashMap<ReservationId, ReservationLedger>,
    /// Releases per reservation and section.
    releases: HashMap<(ReservationId, SectionName), u32>,
    paid: HashMap<PaymentId, i64>,
    refunded: HashMap<PaymentId, i64>,
    latest_deadline: Option<DateTime<Utc>>,
    events: usize,
}

impl Ledger {
    async fn replay(store: &dyn EventStore) -> Self {
        let mut ledger = Ledger::default();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1_000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.global_position;
            for envelope in &page {
                let action = TicketingAction::decode(envelope).unwrap();
                ledger.apply(action, envelope.global_position);
            }
        }
        ledger
    }

    fn apply(&mut self, action: TicketingAction, at: u64) {
        self.events += 1;
        match action {
            TicketingAction::Inventory(event) => self.apply_inventory(event, at),
            TicketingAction::Reservation(event) => self.apply_reservation(&event),
            TicketingAction::Payment(PaymentAction::PaymentSucceeded { payment_id, amount, .. }) => {
                assert!(
                    self.paid.insert(payment_id, amount.minor_units()).is_none(),
                    "payment {payment_id} paid twice"
                );
            }
            TicketingAction::Payment(PaymentAction::PaymentRefunded { payment_id, amount, .. }) => {
                let refunded = self.refunded.entry(payment_id).or_default();
                *refunded += amount.minor_units();
                assert!(
                    *refunded <= self.paid.get(&payment_id).copied().unwrap_or(0),
                    "position {at}: payment {payment_id} refunded more than was paid"
                );
            }
            _ => {}
        }
    }

    fn apply_inventory(&mut self, event: InventoryAction, at: u64) {
        match event {
            InventoryAction::InventoryInitialized { event_id, section, capacity } => {
                self.sections.entry((event_id, section)).or_default().capacity = capacity.get();
            }
            InventoryAction::SeatsReserved { event_id, section, reservation_id, seats, .. } => {
                let ledger = self.sections.get_mut(&(event_id, section.clone())).unwrap();
                let seats: Vec<SeatId> = seats.iter().map(|s| s.seat_id).collect();
                for seat in &seats {
                    if let Some(holder) = ledger.owner.insert(*seat, reservation_id) {
                        panic!("position {at}: seat {seat} given to {reservation_id} while {holder} holds it");
                    }
                }
                let n = u32::try_from(seats.len()).unwrap();
                assert!(
                    ledger.holds.insert(reservation_id, (seats, HoldState::Reserved)).is_none(),
                    "position {at}: {reservation_id} reserved twice"
                );
                ledger.reserved += n;
                assert!(
                    ledger.reserved + ledger.sold <= ledger.capacity,
                    "position {at}: oversell in {section}: reserved {} + sold {} > capacity {}",
                    ledger.reserved,
                    ledger.sold,
                    ledger.capacity
                );
            }
            InventoryAction::SeatsConfirmed { event_id, section, reservation_id, .. } => {
                let ledger = self.sections.get_mut(&(event_id, section)).unwrap();
                let (seats, state) = ledger.holds.get_mut(&reservation_id).unwrap();
                assert_eq!(*state, HoldState::Reserved, "position {at}: {reservation_id} confirmed from {state:?}");
                *state = HoldState::Confirmed;
                let n = u32::try_from(seats.len()).unwrap();
                ledger.reserved -= n;
                ledger.sold += n;
            }
            InventoryAction::SeatsReleased { event_id, section, reservation_id, .. } => {
                *self.releases.entry((reservation_id, section.clone())).or_default() += 1;
                let ledger = self.sections.get_mut(&(event_id, section)).unwrap();
                let (seats, state) = ledger.holds.get_mut(&reservation_id).unwrap();
                assert_eq!(*state, HoldState::Reserved, "position {at}: {reservation_id} released from {state:?}");
                *state = HoldState::Released;
                for seat in seats.iter() {
                    assert_eq!(ledger.owner.remove(seat), Some(reservation_id));
                }
                ledger.reserved -= u32::try_from(seats.len()).unwrap();
            }
            _ => {}
        }
    }

    fn apply_reservation(&mut self, event: &ReservationAction) {
        let terminal = match event {
            ReservationAction::ReservationInitiated { reservation_id, total, expires_at, .. } => {
                let entry = self.reservations.entry(*reservation_id).or_default();
                entry.total = total.minor_units();
                entry.lines = event.order_lines().len();
                self.latest_deadline = self.latest_deadline.max(Some(*expires_at));
                return;
            }
            ReservationAction::ReservationCompleted { .. } => "completed",
            ReservationAction::ReservationExpired { .. } => "expired",
            ReservationAction::ReservationCancelled { .. } => "cancelled",
            ReservationAction::ReservationCompensated { .. } => "compensated",
            _ => return,
        };
        let id = event.reservation_id().unwrap();
        self.reservations.get_mut(&id).unwrap().terminal.push(terminal);
    }

    /// Reservations per terminal state.
    fn outcomes(&self) -> HashMap<&'static str, usize> {
        let mut outcomes = HashMap::new();
        for reservation in self.reservations.values() {
            *outcomes.entry(reservation.terminal.first().copied().unwrap_or("pending")).or_default() += 1;
        }
        outcomes
    }

    /// The end-state invariants: every reservation terminal exactly once, seats released exactly
    /// once unless sold, money and seats add up.
    fn check_end_state(&self) {
        for (id, reservation) in &self.reservations {
            assert_eq!(reservation.terminal.len(), 1, "reservation {id} ended {:?}", reservation.terminal);
        }
        let mut sold_seats = 0;
        for ((_, section), ledger) in &self.sections {
            assert_eq!(ledger.reserved, 0, "seats still held after every hold ended");
            for (id, (seats, state)) in &ledger.holds {
                let completed = self.reservations[id].terminal == ["completed"];
                let releases = self.releases.get(&(*id, section.clone())).copied().unwrap_or(0);
                if completed {
                    assert_eq!((*state, releases), (HoldState::Confirmed, 0), "completed {id}");
                    sold_seats += seats.len();
                } else {
                    assert_eq!((*state, releases), (HoldState::Released, 1), "{id} ended {:?}", self.reservations[id]);
                }
            }
            assert_eq!(ledger.owner.len(), usize::try_from(ledger.sold).unwrap());
        }
        let confirmed_holds =
            self.sections.values().flat_map(|s| s.holds.values()).filter(|(_, state)| *state == HoldState::Confirmed);
        // A basket holds, and sells, in each of its sections.
        let completed: usize =
            self.reservations.values().filter(|r| r.terminal == ["completed"]).map(|r| r.lines).sum();
        assert_eq!(
            confirmed_holds.count(),
            completed,
            "every completed reservation, and only those, has sold seats in each of its sections"
        );
        let sold: u32 = self.sections.values().map(|s| s.sold).sum();
        assert_eq!(usize::try_from(sold).unwrap(), sold_seats, "sold seats = seats of completed reservations");
        let revenue = self.paid.values().sum::<i64>() - self.refunded.values().sum::<i64>();
        let completed_total: i64 =
            self.reservations.values().filter(|r| r.terminal == ["completed"]).map(|r| r.total).sum();
        assert_eq!(revenue, completed_total, "revenue = successful payments − refunds = completed purchases");
    }
}

/// Waits (wall clock: the holds were taken by other processes on `SystemClock`) until the last
/// hold deadline in the log has passed, then until the system has expired everything overdue.
async fn expire_everything(system: &TicketingSystem, latest_deadline: Option<DateTime<Utc>>) {
    if let Some(deadline) = latest_deadline {
        let left = (deadline - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), system.settled()).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_buyer_processes_never_oversell() {
    let url = fresh_database("bo_mp").await;
    let setup = system_on(&url, Duration::from_secs(2)).await;
    let event = open_event(&setup).await;
    setup.settled().await.unwrap();
    setup.shutdown().await;

    let children: Vec<Child> =
        (0..3).map(|seed| spawn_buyer(&url, &format!("{event} 16 {} 0.2 2 buy", 100 + seed))).collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children.into_iter().map(|child| child.wait_with_output().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut bought_seats = 0;
    for output in outputs {
        assert!(output.status.success(), "buyer process failed: {:?}", output.status);
        let stdout = String::from_utf8(output.stdout).unwrap();
        let summary = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary in {stdout}"));
        println!("buyer process: {summary}");
        let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
        bought_seats += summary["seats_bought"].as_u64().unwrap();
        assert_eq!(summary["errors"], 0, "a buyer call failed (timeout or contention); see stderr");
    }

    let store = PostgresEventStore::connect(&url, PostgresConfig::default()).await.unwrap();
    let before = Ledger::replay(&store).await;
    let system = system_on(&url, Duration::from_secs(2)).await;
    expire_everything(&system, before.latest_deadline).await;
    system.shutdown().await;

    let ledger = Ledger::replay(&store).await;
    ledger.check_end_state();
    let baskets = ledger.reservations.values().filter(|r| r.lines == 2).count();
    assert!(baskets > 0, "the buyers ordered baskets of both sections");
    let sold: u32 = ledger.sections.values().map(|s| s.sold).sum();
    println!(
        "{} events, {} reservations, outcomes {:?}, seats sold {sold}, sold per section {:?}",
        ledger.events,
        ledger.reservations.len(),
        ledger.outcomes(),
        ledger.sections.iter().map(|((_, name), s)| (name.to_string(), s.sold, s.capacity)).collect::<Vec<_>>()
    );
    assert_eq!(u64::from(sold), bought_seats, "seats sold = seats the buyers were told they bought");
    assert!(ledger.reservations.len() >= 100, "the buyers hardly ran: {} reservations", ledger.reservations.len());
    store.close().await;
    drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_of_a_sigkilled_process_still_expire() {
    let url = fresh_database("bo_kill").await;
    let setup = system_on(&url, Duration::from_secs(3)).await;
    let event = open_event(&setup).await;
    setup.settled().await.unwrap();
    setup.shutdown().await;

    let mut child = spawn_buyer(&url, &format!("{event} 8 7 0.0 3 hold"));
    let stdout = child.stdout.take().unwrap();
    let holding = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find(|line| line.starts_with("HOLDING"))
    });
    let holding = tokio::time::timeout(Duration::from_secs(30), holding).await.unwrap().unwrap();
    child.kill().unwrap(); // SIGKILL: no shutdown, no clean-up
    let status = child.wait().unwrap();
    println!("buyer process {} killed ({status}) after {}", child.id(), holding.unwrap_or_default());

    let store: Arc<PostgresEventStore> =
        Arc::new(PostgresEventStore::connect(&url, PostgresConfig::default()).await.unwrap());
    let before = Ledger::replay(store.as_ref()).await;
    let held: u32 = before.sections.values().map(|s| s.reserved).sum();
    assert!(held > 0, "the killed process held no seats");
    let live = before.reservations.values().filter(|r| r.terminal.is_empty()).count();
    println!("after the kill: {live} live reservations holding {held} seats");

    // Nobody runs now: past every deadline the seats are still held, until a new system reads
    // the deadlines back from the log.
    let deadline = before.latest_deadline.unwrap();
    tokio::time::sleep((deadline - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(50)).await;
    let overdue = Ledger::replay(store.as_ref()).await;
    assert_eq!(overdue.sections.values().map(|s| s.reserved).sum::<u32>(), held, "holds outlived their process");

    let restarted = system_on(&url, Duration::from_secs(3)).await;
    expire_everything(&restarted, overdue.latest_deadline).await;
    restarted.shutdown().await;

    let after = Ledger::replay(store.as_ref()).await;
    after.check_end_state();
    for ledger in after.sections.values() {
        assert_eq!(ledger.reserved + ledger.sold, 0, "every seat returned");
        assert_eq!(ledger.capacity - ledger.reserved - ledger.sold, ledger.capacity);
    }
    let outcomes = after.outcomes();
    println!("after restart: outcomes {outcomes:?}");
    assert_eq!(
        outcomes.get("expired").copied().unwrap_or(0) + outcomes.get("compensated").copied().unwrap_or(0),
        after.reservations.len()
    );
    assert!(outcomes.get("expired").copied().unwrap_or(0) > 0);
    store.close().await;
    drop_database(&url).await;
}

/// A buyer process whose provider takes the money and never answers is killed (`SIGKILL`) between the
/// charge and its record: only the intents (`PaymentProcessed`) are in the log, and the tokens
/// died with the process. A new process reconciles: it asks the provider (the same seeded
/// provider, shared like a real one), records every approval, and the purchases complete with
/// their seats sold, each charged once and none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_of_a_process_killed_mid_call_are_reconciled() {
    const BUYERS: usize = 4;
    let url = fresh_database("bo_charge_kill").await;
    let setup = system_on(&url, Duration::from_secs(60)).await;
    let event = open_event(&setup).await;
    setup.settled().await.unwrap();
    setup.shutdown().await;

    let mut child = spawn_buyer(&url, &format!("{event} {BUYERS} 11 0.0 60 charge-and-hang"));
    let stdout = child.stdout.take().unwrap();
    let charged = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.starts_with("CHARGED"))
            .take(BUYERS)
            .count()
    });
    let charged = tokio::time::timeout(Duration::from_secs(60), charged).await.unwrap().unwrap();
    assert_eq!(charged, BUYERS, "every buyer's charge reached the provider");
    child.kill().unwrap(); // SIGKILL between the provider's approval and its record
    child.wait().unwrap();

    let store: Arc<PostgresEventStore> =
        Arc::new(PostgresEventStore::connect(&url, PostgresConfig::default()).await.unwrap());
    let before = Ledger::replay(store.as_ref()).await;
    assert!(before.paid.is_empty(), "no approval was recorded before the kill: {:?}", before.paid);
    assert!(before.sections.values().map(|s| s.reserved).sum::<u32>() > 0, "the killed process held seats");

    let config = SystemConfig {
        database_url: Some(url.clone()),
        database_max_connections: 8,
        database_schema: None,
        kafka_brokers: None,
        consumer_group: None,
        hold_duration: Duration::from_secs(60),
        payment_gateway: Some(GatewayChoice::Simulated),
        ticket_keys: None,
    };
    let restarted = TicketingSystem::builder_from_config(&config)
        .await
        .unwrap()
        .payment_gateway(Arc::new(buyer::SeededGateway::new(11, 0.0)))
        .payment_reconciliation(Duration::from_secs(3600), Duration::ZERO)
        .build()
        .await
        .unwrap();
    restarted.settled().await.unwrap();
    // The start-up pass (no grace period here) may already have settled some; this one settles
    // the rest, and nothing is left open after it.
    let pass = restarted.reconcile_payments().await.unwrap();
    assert_eq!(pass.unresolved, 0, "{pass:?}");
    restarted.settled().await.unwrap();
    let health = restarted.health().await.unwrap();
    assert_eq!(health.unsettled_payments, 0, "every charge settled: {health:?}");
    restarted.shutdown().await;

    let after = Ledger::replay(store.as_ref()).await;
    after.check_end_state();
    assert_eq!(after.paid.len(), BUYERS, "every charge recorded once");
    let outcomes = after.outcomes();
    assert_eq!(outcomes.get("completed").copied(), Some(BUYERS), "{outcomes:?}");
    let held: u32 = before.sections.values().map(|s| s.reserved).sum();
    let sold: u32 = after.sections.values().map(|s| s.sold).sum();
    assert_eq!(sold, held, "the seats held for the killed process's purchases are sold");
    store.close().await;
    drop_database(&url).await;
}
