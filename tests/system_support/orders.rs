//! Orders across sections, on each storage: a basket of several sections (and tiers) is held
//! all or none with one deadline, paid with one payment, ticketed per section, released in every
//! section when it ends unpaid, refunded section by section, and never oversells any section when
//! baskets compete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{EventError, ReservationError, ReservationStatus, SalesPolicy, Section};
use boxoffice::domain::{Capacity, PricingTier, TierKind, Venue, VenueId};
use boxoffice::prelude::*;
use boxoffice::system::{
    EventSpec, HeldSeats, OrderLineRequest, OrderRequest, SystemError, TicketRefundRequest, TicketingSystem,
};

use super::{Backend, Fixture, card, metrics, start, system_with};

/// One `#[tokio::test]` per order scenario, on `$backend`.
#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! order_scenarios {
    ($backend:expr) => {
        $crate::system_support::orders::order_scenarios!(
            $backend;
            a_mixed_basket_is_held_at_once_paid_once_and_ticketed_per_section,
            an_order_one_section_cannot_fill_holds_nothing_anywhere,
            an_order_that_ends_unpaid_releases_every_section,
            refunding_one_section_of_a_basket_returns_its_seats_and_its_money_only,
            concurrent_baskets_never_oversell_any_section,
            a_bad_order_gets_a_typed_error_and_records_nothing,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::orders::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // used by the test binaries that include this module
pub(crate) use order_scenarios;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

fn name(section: &str) -> SectionName {
    SectionName::new(section).unwrap()
}

/// Stalls at 25.00 (Regular), Balcony at 40.00 (Regular) or 60.00 (Vip).
async fn venue(backend: Backend, stalls: u32, balcony: u32) -> Fixture {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(boxoffice::system::SimulatedGateway::always_succeed());
    let system = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let tier = |kind, section: &str, price| PricingTier::new(kind, name(section), eur(price), None).unwrap();
    let spec = EventSpec {
        name: "Rust Fest".into(),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
        date: clock.now() + chrono::Duration::days(30),
        sections: vec![
            Section { name: name("Stalls"), capacity: Capacity::new(stalls).unwrap() },
            Section { name: name("Balcony"), capacity: Capacity::new(balcony).unwrap() },
        ],
        pricing_tiers: vec![
            tier(TierKind::Regular, "Stalls", 2_500),
            tier(TierKind::Regular, "Balcony", 4_000),
            tier(TierKind::Vip, "Balcony", 6_000),
        ],
        policy: SalesPolicy::default(),
    };
    let event = system.create_event(spec).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    Fixture { clock, storage, gateway, system, event }
}

fn line(section: &str, quantity: u32, tier: Option<TierKind>) -> OrderLineRequest {
    OrderLineRequest { section: name(section), quantity, tier }
}

fn order(f: &Fixture, lines: Vec<OrderLineRequest>) -> OrderRequest {
    OrderRequest { event_id: f.event, lines, customer_id: CustomerId::new_v4(), idempotency_key: None }
}

async fn free(system: &TicketingSystem, event: EventId, section: &str) -> u32 {
    system.settled().await.unwrap();
    system.available_seats().unwrap().get_availability(event, section).await.unwrap().unwrap().available
}

fn seats_in<'a>(held: &'a HeldSeats, section: &str) -> &'a [SeatId] {
    held.lines.iter().find(|l| l.section.as_str() == section).map_or(&[], |l| l.seats.as_slice())
}

fn count_in(held: &HeldSeats, section: &str) -> u32 {
    u32::try_from(seats_in(held, section).len()).unwrap()
}

pub async fn a_mixed_basket_is_held_at_once_paid_once_and_ticketed_per_section(backend: Backend) {
    let f = venue(backend, 10, 5).await;
    let basket = order(&f, vec![line("Stalls", 2, None), line("Balcony", 1, Some(TierKind::Vip))]);
    let customer = basket.customer_id;
    let held = f.system.reserve_order(basket).await.unwrap();
    assert_eq!(held.total, eur(2 * 2_500 + 6_000), "each line at its own tier's price");
    assert_eq!((seats_in(&held, "Stalls").len(), seats_in(&held, "Balcony").len()), (2, 1));
    assert_eq!(held.seats.len(), 3);
    assert_eq!(held.expires_at, start() + chrono::Duration::minutes(5), "one deadline for the order");
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (8, 4));

    let receipt = f.system.pay(held.reservation_id, card()).await.unwrap();
    assert_eq!(receipt.amount, held.total, "one payment of the whole order");
    assert_eq!(f.gateway.charge_calls(), 1, "charged once");
    assert_eq!(f.gateway.charged(receipt.payment_id), Some(held.total));
    assert_eq!(f.system.reservation(held.reservation_id).await.unwrap().status, ReservationStatus::Completed);

    let tickets = f.system.tickets(held.reservation_id).await.unwrap();
    let by_section: BTreeMap<String, Vec<Money>> = tickets.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(t.section.as_str().to_owned()).or_insert_with(Vec::new).push(t.price);
        m
    });
    assert_eq!(by_section["Stalls"], vec![eur(2_500), eur(2_500)]);
    assert_eq!(by_section["Balcony"], vec![eur(6_000)]);
    assert!(tickets.iter().all(|t| t.holder == customer));
    let balcony = tickets.iter().find(|t| t.section == name("Balcony")).unwrap();
    let gate = boxoffice::system::Gate { event_id: f.event, name: boxoffice::domain::GateName::new("Upper").unwrap() };
    let scan = f.system.check_in(&balcony.code, &gate, boxoffice::domain::ScanId::new_v4()).await.unwrap();
    assert!(
        matches!(&scan, boxoffice::system::CheckIn::Admitted { section, .. } if *section == name("Balcony")),
        "{scan:?}"
    );

    f.system.settled().await.unwrap();
    let m = metrics(&f.system, f.event).await;
    assert_eq!((m.tickets_sold, m.completed_reservations), (3, 1));
    assert_eq!(m.tickets_by_section[&name("Stalls")], 2);
    assert_eq!(m.tickets_by_section[&name("Balcony")], 1);
    assert_eq!(m.revenue_by_section[&name("Stalls")].minor_units(), 5_000);
    assert_eq!(m.revenue_by_section[&name("Balcony")].minor_units(), 6_000);
    let orders = f.system.customer_tickets().unwrap().orders(customer).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!((orders[0].seats_bought, orders[0].total), (3, eur(11_000)));
}

pub async fn an_order_one_section_cannot_fill_holds_nothing_anywhere(backend: Backend) {
    let f = venue(backend, 10, 2).await;
    let rival = f.system.reserve_order(order(&f, vec![line("Balcony", 2, None)])).await.unwrap();
    let short = f.system.reserve_order(order(&f, vec![line("Stalls", 3, None), line("Balcony", 1, None)])).await;
    let Err(SystemError::InsufficientInventory { reservation_id, requested: 1, available: 0, section }) = short else {
        panic!("expected a shortage in Balcony, got {short:?}");
    };
    assert_eq!(section, Some(name("Balcony")));
    let ended = f.system.reservation(reservation_id).await.unwrap();
    assert_eq!(ended.status, ReservationStatus::Compensated);
    assert_eq!(free(&f.system, f.event, "Stalls").await, 10, "the Stalls line it may have held is released");
    assert_eq!(free(&f.system, f.event, "Balcony").await, 0);
    assert_eq!(f.gateway.charge_calls(), 0, "nothing charged");

    // More seats than a section has: refused up front, nothing recorded.
    let before = f.system.event_store().last_committed_position().await.unwrap();
    let beyond = f.system.reserve_order(order(&f, vec![line("Stalls", 1, None), line("Balcony", 3, None)])).await;
    assert!(
        matches!(&beyond, Err(SystemError::InsufficientInventory { requested: 3, available: 2, section: Some(s), .. }) if *s == name("Balcony")),
        "{beyond:?}"
    );
    assert_eq!(f.system.event_store().last_committed_position().await.unwrap(), before);

    f.system.cancel_reservation(rival.reservation_id).await.unwrap();
    let whole = f.system.reserve_order(order(&f, vec![line("Stalls", 3, None), line("Balcony", 2, None)])).await;
    assert_eq!(whole.unwrap().seats.len(), 5, "once Balcony is free the same basket is held whole");
}

pub async fn an_order_that_ends_unpaid_releases_every_section(backend: Backend) {
    let f = venue(backend, 10, 5).await;
    let cancelled = f.system.reserve_order(order(&f, vec![line("Stalls", 4, None), line("Balcony", 2, None)])).await;
    let cancelled = cancelled.unwrap();
    let expiring = f.system.reserve_order(order(&f, vec![line("Stalls", 1, None), line("Balcony", 3, None)])).await;
    let expiring = expiring.unwrap();
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (5, 0));

    f.system.cancel_reservation(cancelled.reservation_id).await.unwrap();
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (9, 2));

    f.clock.advance(Duration::from_secs(301));
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (10, 5));
    let expired = f.system.reservation(expiring.reservation_id).await.unwrap();
    assert_eq!(expired.status, ReservationStatus::Expired);
    let late = f.system.pay(expiring.reservation_id, card()).await;
    assert!(matches!(late, Err(SystemError::ReservationEnded { how: "expired", .. })), "{late:?}");
}

pub async fn refunding_one_section_of_a_basket_returns_its_seats_and_its_money_only(backend: Backend) {
    let f = venue(backend, 10, 5).await;
    let held = f.system.reserve_order(order(&f, vec![line("Stalls", 2, None), line("Balcony", 2, None)])).await;
    let held = held.unwrap();
    f.system.pay(held.reservation_id, card()).await.unwrap();
    let tickets = f.system.tickets(held.reservation_id).await.unwrap();
    let balcony: Vec<_> = tickets.iter().filter(|t| t.section == name("Balcony")).map(|t| t.ticket_id).collect();
    let refund = f
        .system
        .refund_tickets(TicketRefundRequest {
            reservation_id: held.reservation_id,
            tickets: vec![balcony[0]],
            reason: "cannot come".into(),
            idempotency_key: Some("balcony-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(refund.amount, eur(4_000), "the refunded ticket's own price");
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (8, 4));
    let m = metrics(&f.system, f.event).await;
    assert_eq!(m.tickets_sold, 3);
    assert_eq!(m.tickets_by_section[&name("Balcony")], 1);
    assert_eq!(m.tickets_by_section[&name("Stalls")], 2);
    assert_eq!(m.revenue_by_section[&name("Stalls")].minor_units(), 5_000, "Stalls keep their revenue");
    assert_eq!(m.revenue_by_section[&name("Balcony")].minor_units(), 4_000);

    // The rest of the order: the other Balcony seat and both Stalls seats, at their prices.
    let rest = f
        .system
        .refund_tickets(TicketRefundRequest {
            reservation_id: held.reservation_id,
            tickets: Vec::new(),
            reason: "all of it".into(),
            idempotency_key: Some("rest".into()),
        })
        .await
        .unwrap();
    assert_eq!(rest.amount, eur(2 * 2_500 + 4_000));
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (10, 5));
    let m = metrics(&f.system, f.event).await;
    assert_eq!((m.tickets_sold, m.total_revenue.minor_units()), (0, 0));
}

/// Baskets of Stalls and Balcony and single-section orders race for the last Balcony seats from
/// many tasks: every order is held whole or not at all, no seat is sold twice, and each section
/// sells at most its capacity, with its free count the capacity less what is held or sold.
pub async fn concurrent_baskets_never_oversell_any_section(backend: Backend) {
    let f = Arc::new(venue(backend, 30, 6).await);
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            let lines = match i % 3 {
                0 => vec![line("Balcony", 1, None)],
                1 => vec![line("Stalls", 1, None), line("Balcony", 1, None)],
                _ => vec![line("Balcony", 1, Some(TierKind::Vip)), line("Stalls", 2, None)],
            };
            let wanted: u32 = lines.iter().map(|l| l.quantity).sum();
            match f.system.reserve_order(order(&f, lines)).await {
                Ok(held) => {
                    assert_eq!(held.seats.len(), wanted as usize, "held whole");
                    let paid = i % 2 == 0;
                    if paid {
                        f.system.pay(held.reservation_id, card()).await.unwrap();
                    }
                    Some((held, paid))
                }
                Err(SystemError::InsufficientInventory { .. }) => None,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }
    let mut seen = BTreeSet::new();
    let (mut stalls, mut balcony) = (0, 0);
    for (held, _) in &outcomes {
        for seat in &held.seats {
            assert!(seen.insert(*seat), "seat {seat} held twice");
        }
        stalls += count_in(held, "Stalls");
        balcony += count_in(held, "Balcony");
    }
    assert!(balcony <= 6 && stalls <= 30, "oversold: {stalls} stalls, {balcony} balcony");
    assert_eq!(balcony, 6, "24 orders asked for more Balcony seats than there are: all of them go");
    assert_eq!(free(&f.system, f.event, "Stalls").await, 30 - stalls);
    assert_eq!(free(&f.system, f.event, "Balcony").await, 0);
    for (held, paid) in &outcomes {
        let status = f.system.reservation(held.reservation_id).await.unwrap().status;
        let want = if *paid { ReservationStatus::Completed } else { ReservationStatus::SeatsAllocated };
        assert_eq!(status, want);
    }
    // The unpaid baskets expire and give back both sections.
    f.clock.advance(Duration::from_secs(301));
    let sold = |section: &str| -> u32 {
        outcomes.iter().filter(|(_, paid)| *paid).map(|(held, _)| count_in(held, section)).sum()
    };
    assert_eq!(free(&f.system, f.event, "Stalls").await, 30 - sold("Stalls"));
    assert_eq!(free(&f.system, f.event, "Balcony").await, 6 - sold("Balcony"));
    let m = metrics(&f.system, f.event).await;
    assert_eq!(m.tickets_by_section.get(&name("Balcony")).copied().unwrap_or(0), u64::from(sold("Balcony")));
}

pub async fn a_bad_order_gets_a_typed_error_and_records_nothing(backend: Backend) {
    let f = venue(backend, 10, 5).await;
    let before = f.system.event_store().last_committed_position().await.unwrap();
    let empty = f.system.reserve_order(order(&f, Vec::new())).await;
    assert!(matches!(empty, Err(SystemError::Reservation(ReservationError::EmptyOrder { .. }))), "{empty:?}");
    let twice = f.system.reserve_order(order(&f, vec![line("Stalls", 1, None), line("Stalls", 2, None)])).await;
    assert!(
        matches!(&twice, Err(SystemError::Reservation(ReservationError::DuplicateSection { section, .. })) if *section == name("Stalls")),
        "{twice:?}"
    );
    let zero = f.system.reserve_order(order(&f, vec![line("Stalls", 1, None), line("Balcony", 0, None)])).await;
    assert!(matches!(zero, Err(SystemError::Reservation(ReservationError::ZeroQuantity { .. }))), "{zero:?}");
    let unknown = f.system.reserve_order(order(&f, vec![line("Stalls", 1, None), line("Roof", 1, None)])).await;
    assert!(
        matches!(&unknown, Err(SystemError::Event(EventError::NoPrice { section, .. })) if *section == name("Roof")),
        "{unknown:?}"
    );
    let no_tier = f.system.reserve_order(order(&f, vec![line("Stalls", 1, Some(TierKind::Vip))])).await;
    assert!(matches!(no_tier, Err(SystemError::Event(_))), "Stalls has no Vip tier: {no_tier:?}");
    f.system.settled().await.unwrap();
    assert_eq!(f.system.event_store().last_committed_position().await.unwrap(), before, "nothing recorded");
    assert_eq!((free(&f.system, f.event, "Stalls").await, free(&f.system, f.event, "Balcony").await), (10, 5));
}
