//! The read models of tickets and days, on each storage: orders and tickets per customer, scans
//! per gate, and sales per UTC day, after a purchase, a transfer, a one-ticket refund the next
//! day, check-ins at two gates (a duplicate, an exit, a revoked ticket) and an offline merge; and
//! the same answers from a second system over the same storage (memory: folded again from the
//! log) and, on `PostgreSQL`, after rebuilding the tables from the log.

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice::aggregates::{Direction, RevocationReason, TicketStatus};
use boxoffice::domain::{GateName, ScanId, TicketId};
use boxoffice::prelude::*;
use boxoffice::projections::{DaySales, GateCounts, HeldTicket, Order};
use boxoffice::system::{Gate, IssuedTicket, OfflineScan, TicketRefundRequest, TicketingSystem};
use chrono::NaiveDate;

use super::{Backend, Fixture, card, on_sale, request, start, system_with};

/// One `#[tokio::test]` per scenario of the ticket read models, on `$backend`.
#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! ticket_read_model_scenarios {
    ($backend:expr) => {
        $crate::system_support::read_models_tickets::ticket_read_model_scenarios!(
            $backend;
            orders_tickets_gates_and_days_follow_the_door_and_come_back_the_same_from_the_log,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::read_models_tickets::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // used by the test binaries that include this module
pub(crate) use ticket_read_model_scenarios;

fn gate(f: &Fixture, name: &str) -> Gate {
    Gate { event_id: f.event, name: GateName::new(name).unwrap() }
}

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2030, 1, n).unwrap()
}

/// Everything the three models answer about the scenario's people and event.
#[derive(Debug, PartialEq)]
struct Answers {
    orders: Vec<Vec<Order>>,
    held: Vec<Vec<HeldTicket>>,
    valid: Vec<Vec<HeldTicket>>,
    gates: BTreeMap<GateName, GateCounts>,
    inside: u64,
    days: Vec<DaySales>,
}

async fn answers(system: &TicketingSystem, event: EventId, people: &[CustomerId]) -> Answers {
    system.settled().await.unwrap();
    let tickets = system.customer_tickets().unwrap();
    let mut a = Answers {
        orders: Vec::new(),
        held: Vec::new(),
        valid: Vec::new(),
        gates: system.gate_checkins().unwrap().gates(event).await.unwrap(),
        inside: system.gate_checkins().unwrap().currently_inside(event).await.unwrap(),
        days: system.daily_sales().unwrap().daily_sales(event).await.unwrap(),
    };
    for person in people {
        a.orders.push(tickets.orders(*person).await.unwrap());
        a.held.push(tickets.tickets_held(*person).await.unwrap());
        a.valid.push(tickets.valid_tickets_held(*person).await.unwrap());
    }
    a
}

fn ids(tickets: &[HeldTicket]) -> Vec<TicketId> {
    tickets.iter().map(|t| t.ticket_id).collect()
}

/// Who did what in the scenario.
struct Cast {
    alice: CustomerId,
    bob: CustomerId,
    carol: CustomerId,
    alices: Vec<IssuedTicket>,
    bobs: Vec<IssuedTicket>,
    north: Gate,
    south: Gate,
}

/// Day 1: two purchases; day 2: a transfer, a one-ticket refund, the door and an offline merge.
async fn play(f: &Fixture) -> Cast {
    // Day 1 (12:00 UTC): Alice buys three seats, Bob one.
    let alice_req = request(f, "Stalls", 3);
    let alice = alice_req.customer_id;
    let alice_hold = f.system.reserve(alice_req).await.unwrap();
    f.system.pay(alice_hold.reservation_id, card()).await.unwrap();
    let bob_req = request(f, "Stalls", 1);
    let bob = bob_req.customer_id;
    let bob_hold = f.system.reserve(bob_req).await.unwrap();
    f.system.pay(bob_hold.reservation_id, card()).await.unwrap();
    let (ra, rb) = (alice_hold.reservation_id, bob_hold.reservation_id);
    let alices = f.system.tickets(ra).await.unwrap();
    let bobs = f.system.tickets(rb).await.unwrap();
    assert_eq!((alices.len(), bobs.len()), (3, 1));

    // Day 2 (13:00 UTC): Alice gives her first ticket to Carol and has her second refunded.
    f.clock.advance(Duration::from_secs(25 * 3600));
    let carol = CustomerId::new_v4();
    let carols = f.system.transfer_ticket(ra, alices[0].ticket_id, carol).await.unwrap();
    let refund = TicketRefundRequest {
        reservation_id: ra,
        tickets: vec![alices[1].ticket_id],
        reason: "cannot come".into(),
        idempotency_key: None,
    };
    assert_eq!(f.system.refund_tickets(refund).await.unwrap().amount, Money::new(2_500, Currency::EUR));

    // The door: North admits Carol, South turns her away (already in), North lets her out; the
    // refunded ticket is turned away at North; Alice's third ticket comes in at South; Bob's scan
    // at South was made offline a minute ago and is merged now.
    let (north, south) = (gate(f, "North"), gate(f, "South"));
    assert!(f.system.check_in(&carols.code, &north, ScanId::new_v4()).await.unwrap().passes());
    assert!(!f.system.check_in(&carols.code, &south, ScanId::new_v4()).await.unwrap().passes());
    assert!(f.system.check_out(&carols.code, &north, ScanId::new_v4()).await.unwrap().passes());
    assert!(!f.system.check_in(&alices[1].code, &north, ScanId::new_v4()).await.unwrap().passes());
    assert!(f.system.check_in(&alices[2].code, &south, ScanId::new_v4()).await.unwrap().passes());
    let offline = OfflineScan {
        code: bobs[0].code.clone(),
        gate: south.clone(),
        scan_id: ScanId::new_v4(),
        direction: Direction::Entry,
        scanned_at: f.clock.now() - chrono::Duration::minutes(1),
    };
    let merged = f.system.merge_offline_scans(vec![offline]).await.unwrap();
    assert!(merged.iter().all(|(_, answer)| answer.passes()), "{merged:?}");
    Cast { alice, bob, carol, alices, bobs, north, south }
}

pub async fn orders_tickets_gates_and_days_follow_the_door_and_come_back_the_same_from_the_log(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let stalls = SectionName::new("Stalls").unwrap();
    let Cast { alice, bob, carol, alices, bobs, north, south } = play(&f).await;
    let (ra, rb) = (alices[0].reservation_id, bobs[0].reservation_id);
    let people = [alice, bob, carol];
    let first = answers(&f.system, f.event, &people).await;

    // Orders: what each customer bought, with the seats kept; Carol bought nothing.
    let order = |reservation_id, bought, kept| Order {
        reservation_id,
        event_id: f.event,
        section: stalls.clone(),
        seats_bought: bought,
        seats_kept: kept,
        total: Money::new(2_500 * i64::from(bought), Currency::EUR),
    };
    assert_eq!(first.orders, vec![vec![order(ra, 3, 2)], vec![order(rb, 1, 1)], vec![]]);

    // Tickets held: Alice keeps the refunded one (revoked) and the third; the first is Carol's.
    assert_eq!(ids(&first.held[0]), vec![alices[1].ticket_id, alices[2].ticket_id]);
    assert!(matches!(first.held[0][0].status, TicketStatus::Revoked { reason: RevocationReason::Refunded, .. }));
    assert_eq!(first.held[0][1].status, TicketStatus::Valid);
    assert_eq!(ids(&first.valid[0]), vec![alices[2].ticket_id]);
    assert_eq!(ids(&first.held[1]), vec![bobs[0].ticket_id]);
    assert_eq!(first.valid[1], first.held[1]);
    let carol_held = &first.held[2];
    assert_eq!(ids(carol_held), vec![alices[0].ticket_id]);
    assert_eq!((carol_held[0].holder, carol_held[0].serial, carol_held[0].reservation_id), (carol, 1, ra));
    assert_eq!((carol_held[0].seat_id, carol_held[0].event_id), (alices[0].seat_id, f.event));
    assert_eq!(carol_held[0].status, TicketStatus::Valid);

    // Gates.
    let counts = |admitted, exited, turned_away, offline| GateCounts { admitted, exited, turned_away, offline };
    let expected_gates =
        BTreeMap::from([(north.name.clone(), counts(1, 1, 1, 0)), (south.name.clone(), counts(2, 0, 1, 1))]);
    assert_eq!(first.gates, expected_gates);
    assert_eq!(first.inside, 2, "Alice and Bob are in; Carol came and went");
    let gates = f.system.gate_checkins().unwrap();
    assert_eq!(gates.gate(f.event, &south.name).await.unwrap(), Some(counts(2, 0, 1, 1)));
    assert_eq!(gates.gate(EventId::new_v4(), &south.name).await.unwrap(), None);

    // Days: the sales on day 1, the refund on day 2 (by the clock of each decision).
    let eur = |m| MoneyTotal::from(Money::new(m, Currency::EUR));
    let sales_day = DaySales {
        event_id: f.event,
        day: day(1),
        revenue: eur(10_000),
        tickets_sold: 4,
        tickets_refunded: 0,
        net_tickets: 4,
        completed_reservations: 2,
    };
    let refund_day = DaySales {
        event_id: f.event,
        day: day(2),
        revenue: eur(-2_500),
        tickets_sold: 0,
        tickets_refunded: 1,
        net_tickets: -1,
        completed_reservations: 0,
    };
    assert_eq!(start().date_naive(), day(1));
    assert_eq!(first.days, vec![sales_day, refund_day.clone()]);
    let daily = f.system.daily_sales().unwrap();
    assert_eq!(daily.day_sales(f.event, day(2)).await.unwrap(), Some(refund_day));
    assert_eq!(daily.day_sales(f.event, day(3)).await.unwrap(), None);

    // Health names the new models, caught up.
    let health = f.system.health().await.unwrap();
    for name in ["customer-tickets", "gate-checkins", "daily-sales"] {
        let consumer = health.consumer(name).unwrap_or_else(|| panic!("{name} missing from {health:?}"));
        assert_eq!((consumer.position, consumer.lag), (health.head, 0), "{name}");
    }

    // A second system over the same storage gives the same answers (in memory it folds the
    // whole log again from the start).
    let second = system_with(&f.storage, &f.clock, std::sync::Arc::clone(&f.gateway)).await;
    assert_eq!(answers(&second, f.event, &people).await, first);
    second.shutdown().await;

    #[cfg(feature = "postgres")]
    if let boxoffice::system::ReadModelStorage::Postgres(models) = &f.storage.read_models {
        use boxoffice::projections::ReadModel;
        let head = f.storage.store.head_position().await.unwrap();
        for model in [ReadModel::CustomerTickets, ReadModel::GateCheckins, ReadModel::DailySales] {
            assert_eq!(models.rebuild(&*f.storage.store, model, 7).await.unwrap(), head, "{model:?}");
        }
        assert_eq!(answers(&f.system, f.event, &people).await, first, "rebuilt from the log in batches of 7");
    }
    f.system.shutdown().await;
}
