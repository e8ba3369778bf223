//! Tickets from a completed purchase to the door, on each storage: signed codes, check-in and
//! check-out, two gates at once, offline scans, transfers, refunds that revoke tickets and put
//! seats back on sale, and an event's cancellation.

use std::sync::Arc;
use std::time::Duration;

use boxoffice::aggregates::{Direction, RefundStatus, RevocationReason, TicketStatus};
use boxoffice::domain::TicketKeys;
use boxoffice::domain::{GateName, ScanId, TicketCode, Verdict};
use boxoffice::prelude::*;
use boxoffice::system::{CheckIn, Gate, OfflineScan, SystemError, TicketRefundRequest, TicketingSystem};

use super::{Backend, Fixture, available, card, metrics, on_sale, request, spec, start, system_with};

/// One `#[tokio::test]` per ticket scenario, on `$backend`.
#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! ticket_scenarios {
    ($backend:expr) => {
        $crate::system_support::tickets::ticket_scenarios!(
            $backend;
            a_purchase_issues_one_signed_ticket_per_seat_that_admits_once,
            two_gates_scanning_one_ticket_at_once_admit_it_exactly_once,
            refunding_tickets_revokes_them_puts_their_seats_back_and_lowers_the_figures,
            cancelling_an_event_revokes_its_tickets,
            a_transfer_replaces_the_code_until_the_cutoff,
            offline_scans_are_merged_and_their_conflicts_reported,
            without_ticket_keys_codes_are_refused_naming_the_variable,
            one_customers_concurrent_orders_never_pass_the_ticket_limit,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::tickets::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // used by the test binaries that include this module
pub(crate) use ticket_scenarios;

/// The ticket master secret of the test systems.
pub fn keys() -> TicketKeys {
    TicketKeys::from_secret([7; 32])
}

fn gate(f: &Fixture, name: &str) -> Gate {
    Gate { event_id: f.event, name: GateName::new(name).unwrap() }
}

/// A completed purchase of `quantity` seats of Stalls: its reservation and buyer.
async fn bought(f: &Fixture, quantity: u32) -> (ReservationId, CustomerId) {
    let req = request(f, "Stalls", quantity);
    let customer = req.customer_id;
    let hold = f.system.reserve(req).await.unwrap();
    f.system.pay(hold.reservation_id, card()).await.unwrap();
    (hold.reservation_id, customer)
}

pub async fn a_purchase_issues_one_signed_ticket_per_seat_that_admits_once(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, buyer) = bought(&f, 2).await;
    let tickets = f.system.tickets(reservation).await.unwrap();
    assert_eq!(tickets.len(), 2);
    assert!(tickets.iter().all(|t| t.holder == buyer && t.status == TicketStatus::Valid));
    assert_ne!(tickets[0].code, tickets[1].code);
    let kit = f.system.scanner_kit(f.event).await.unwrap();
    assert!(matches!(kit.verify(&tickets[0].code), Verdict::Valid(t) if t.ticket_id == tickets[0].ticket_id));

    let north = gate(&f, "North");
    let first = ScanId::new_v4();
    let admitted = f.system.check_in(&tickets[0].code, &north, first).await.unwrap();
    assert_eq!(
        admitted,
        CheckIn::Admitted {
            ticket_id: tickets[0].ticket_id,
            section: SectionName::new("Stalls").unwrap(),
            seat_id: tickets[0].seat_id
        }
    );
    assert_eq!(f.system.check_in(&tickets[0].code, &north, first).await.unwrap(), admitted, "a retried scan");
    let again = f.system.check_in(&tickets[0].code, &gate(&f, "South"), ScanId::new_v4()).await.unwrap();
    assert_eq!(
        again,
        CheckIn::AlreadyAdmitted { ticket_id: tickets[0].ticket_id, gate: north.name.clone(), at: start() }
    );
    let out = f.system.check_out(&tickets[0].code, &north, ScanId::new_v4()).await.unwrap();
    assert_eq!(out, CheckIn::Exited { ticket_id: tickets[0].ticket_id });
    assert!(f.system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await.unwrap().passes(), "re-entry");
    let never_in = f.system.check_out(&tickets[1].code, &north, ScanId::new_v4()).await.unwrap();
    assert_eq!(never_in, CheckIn::NotInside { ticket_id: tickets[1].ticket_id });

    let elsewhere = Gate { event_id: EventId::new_v4(), name: north.name.clone() };
    let wrong = f.system.check_in(&tickets[1].code, &elsewhere, ScanId::new_v4()).await.unwrap();
    assert_eq!(wrong, CheckIn::WrongEvent { event_id: f.event });
    let claimed = TicketCode::claimed(&tickets[1].code).unwrap();
    let forged = claimed.sign(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
    assert_eq!(f.system.check_in(&forged, &north, ScanId::new_v4()).await.unwrap(), CheckIn::Invalid);
    for garbage in ["", "BX1.", "hello", "BX1.\u{0}"] {
        assert_eq!(f.system.check_in(garbage, &north, ScanId::new_v4()).await.unwrap(), CheckIn::Invalid);
    }
    let reused = f.system.check_in(&tickets[1].code, &north, first).await;
    assert!(matches!(reused, Err(SystemError::Tickets(_))), "a scan id used for another ticket: {reused:?}");
}

/// Sixteen scans of one ticket at once, from two systems over one storage (two processes): one
/// admits, every other is turned away as already admitted.
pub async fn two_gates_scanning_one_ticket_at_once_admit_it_exactly_once(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, _) = bought(&f, 1).await;
    let other = system_with(&f.storage, &f.clock, Arc::clone(&f.gateway)).await;
    let code = f.system.tickets(reservation).await.unwrap().remove(0).code;
    let scans = (0..16).map(|i| {
        let system: TicketingSystem = if i % 2 == 0 { f.system.clone() } else { other.clone() };
        let (code, gate) = (code.clone(), gate(&f, if i % 2 == 0 { "North" } else { "South" }));
        tokio::spawn(async move { system.check_in(&code, &gate, ScanId::new_v4()).await.unwrap() })
    });
    let answers: Vec<CheckIn> = futures::future::join_all(scans).await.into_iter().map(Result::unwrap).collect();
    let admitted = answers.iter().filter(|a| matches!(a, CheckIn::Admitted { .. })).count();
    let turned_away = answers.iter().filter(|a| matches!(a, CheckIn::AlreadyAdmitted { .. })).count();
    assert_eq!((admitted, turned_away), (1, 15), "{answers:?}");
    other.shutdown().await;
}

pub async fn refunding_tickets_revokes_them_puts_their_seats_back_and_lowers_the_figures(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, buyer) = bought(&f, 3).await;
    let tickets = f.system.tickets(reservation).await.unwrap();
    assert_eq!(available(&f, "Stalls").await, 7);

    let one = TicketRefundRequest {
        reservation_id: reservation,
        tickets: vec![tickets[1].ticket_id],
        reason: "cannot come".into(),
        idempotency_key: Some("one".into()),
    };
    let refunded = f.system.refund_tickets(one.clone()).await.unwrap();
    assert_eq!(refunded.amount, Money::new(2_500, Currency::EUR));
    assert_eq!(refunded.refund.as_ref().map(|r| &r.status), Some(&RefundStatus::Refunded));
    assert_eq!(f.gateway.refunded(PaymentId::for_reservation(reservation)), Some(Money::new(2_500, Currency::EUR)));
    let retried = f.system.refund_tickets(one).await.unwrap();
    assert_eq!(retried.refund_id, refunded.refund_id, "the same refund");
    assert_eq!(f.gateway.refunded(PaymentId::for_reservation(reservation)), Some(Money::new(2_500, Currency::EUR)));

    let north = gate(&f, "North");
    let revoked = f.system.check_in(&tickets[1].code, &north, ScanId::new_v4()).await.unwrap();
    assert_eq!(revoked, CheckIn::Revoked { ticket_id: tickets[1].ticket_id, reason: RevocationReason::Refunded });
    assert!(f.system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await.unwrap().passes());
    assert_eq!(available(&f, "Stalls").await, 8, "the refunded seat is back on sale");
    let m = metrics(&f.system, f.event).await;
    assert_eq!((m.tickets_sold, m.total_revenue), (2, Money::new(5_000, Currency::EUR).into()));
    let kit = f.system.scanner_kit(f.event).await.unwrap();
    assert!(matches!(kit.verify(&tickets[1].code), Verdict::Revoked(_)));
    assert!(matches!(kit.verify(&tickets[0].code), Verdict::Valid(_)));
    let history = f.system.customer_history().unwrap();
    assert_eq!(history.get_customer_profile(buyer).await.unwrap().unwrap().total_tickets, 2);
    let twice = TicketRefundRequest {
        reservation_id: reservation,
        tickets: vec![tickets[1].ticket_id],
        reason: "again".into(),
        idempotency_key: None,
    };
    assert!(matches!(f.system.refund_tickets(twice).await, Err(SystemError::Reservation(_))), "refunded already");

    let rest = TicketRefundRequest {
        reservation_id: reservation,
        tickets: Vec::new(),
        reason: "all".into(),
        idempotency_key: None,
    };
    let all = f.system.refund_tickets(rest).await.unwrap();
    assert_eq!(all.amount, Money::new(5_000, Currency::EUR));
    assert_eq!(available(&f, "Stalls").await, 10);
    let m = metrics(&f.system, f.event).await;
    assert_eq!((m.tickets_sold, m.total_revenue), (0, Money::new(0, Currency::EUR).into()));
    assert!(!history.has_attended_event(buyer, f.event).await.unwrap());
    assert!(history.get_event_attendees(f.event).await.unwrap().is_empty());
    let profile = history.get_customer_profile(buyer).await.unwrap().unwrap();
    assert_eq!((profile.total_tickets, profile.events_attended.len()), (0, 0));
    let none_left = TicketRefundRequest {
        reservation_id: reservation,
        tickets: Vec::new(),
        reason: "x".into(),
        idempotency_key: None,
    };
    assert!(matches!(f.system.refund_tickets(none_left).await, Err(SystemError::Reservation(_))));
    // The seats sell again.
    let (again, _) = bought(&f, 3).await;
    assert_eq!(f.system.tickets(again).await.unwrap().len(), 3);
    assert_eq!(available(&f, "Stalls").await, 7);
}

pub async fn cancelling_an_event_revokes_its_tickets(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, buyer) = bought(&f, 2).await;
    let tickets = f.system.tickets(reservation).await.unwrap();
    f.system.cancel_event(f.event, "storm").await.unwrap();
    f.system.settled().await.unwrap();
    let after = f.system.tickets(reservation).await.unwrap();
    assert!(
        after
            .iter()
            .all(|t| matches!(t.status, TicketStatus::Revoked { reason: RevocationReason::EventCancelled, .. }))
    );
    let scan = f.system.check_in(&tickets[0].code, &gate(&f, "North"), ScanId::new_v4()).await.unwrap();
    assert_eq!(scan, CheckIn::Revoked { ticket_id: tickets[0].ticket_id, reason: RevocationReason::EventCancelled });
    assert_eq!(f.gateway.refunded(PaymentId::for_reservation(reservation)), Some(Money::new(5_000, Currency::EUR)));
    let m = metrics(&f.system, f.event).await;
    assert_eq!((m.tickets_sold, m.total_revenue), (0, Money::new(0, Currency::EUR).into()));
    assert!(!f.system.customer_history().unwrap().has_attended_event(buyer, f.event).await.unwrap());
}

pub async fn a_transfer_replaces_the_code_until_the_cutoff(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, buyer) = bought(&f, 2).await;
    let tickets = f.system.tickets(reservation).await.unwrap();
    let friend = CustomerId::new_v4();
    let moved = f.system.transfer_ticket(reservation, tickets[0].ticket_id, friend).await.unwrap();
    assert_eq!(moved.holder, friend);
    assert_ne!(moved.code, tickets[0].code);
    let again = f.system.transfer_ticket(reservation, tickets[0].ticket_id, friend).await.unwrap();
    assert_eq!(again.code, moved.code, "transferring to the holder changes nothing");
    let north = gate(&f, "North");
    let old = f.system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await.unwrap();
    assert_eq!(old, CheckIn::Revoked { ticket_id: tickets[0].ticket_id, reason: RevocationReason::Transferred });
    assert!(f.system.check_in(&moved.code, &north, ScanId::new_v4()).await.unwrap().passes());
    let kit = f.system.scanner_kit(f.event).await.unwrap();
    assert!(matches!(kit.verify(&tickets[0].code), Verdict::Revoked(_)));
    assert!(matches!(kit.verify(&moved.code), Verdict::Valid(_)));
    let listed = f.system.tickets(reservation).await.unwrap();
    assert_eq!((listed[0].holder, listed[1].holder), (friend, buyer));

    // The event is 30 days away and transfers close when it starts.
    f.clock.advance(Duration::from_secs(30 * 24 * 3600));
    let late = f.system.transfer_ticket(reservation, tickets[1].ticket_id, friend).await;
    assert!(matches!(late, Err(SystemError::Tickets(_))), "{late:?}");
    assert_eq!(f.system.tickets(reservation).await.unwrap()[1].holder, buyer);
}

pub async fn offline_scans_are_merged_and_their_conflicts_reported(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, _) = bought(&f, 2).await;
    let tickets = f.system.tickets(reservation).await.unwrap();
    let (north, south) = (gate(&f, "North"), gate(&f, "South"));
    assert!(f.system.check_in(&tickets[0].code, &north, ScanId::new_v4()).await.unwrap().passes());
    let at = |minutes| start() + chrono::Duration::minutes(minutes);
    let offline = |code: &str, minutes, direction| OfflineScan {
        code: code.to_owned(),
        gate: south.clone(),
        scan_id: ScanId::new_v4(),
        direction,
        scanned_at: at(minutes),
    };
    let scans = vec![
        offline(&tickets[1].code, 12, Direction::Exit),
        offline(&tickets[0].code, 5, Direction::Entry),
        offline(&tickets[1].code, 10, Direction::Entry),
    ];
    let answers = f.system.merge_offline_scans(scans.clone()).await.unwrap();
    let by_scan = |i: usize| answers.iter().find(|(id, _)| *id == scans[i].scan_id).map(|(_, a)| a.clone()).unwrap();
    assert_eq!(
        by_scan(1),
        CheckIn::AlreadyAdmitted { ticket_id: tickets[0].ticket_id, gate: north.name.clone(), at: start() },
        "a second entry on one ticket is a conflict"
    );
    assert!(by_scan(2).passes() && by_scan(0).passes(), "entry at 10, exit at 12: in order, no conflict");
    let conflicts = answers.iter().filter(|(_, a)| !a.passes()).count();
    assert_eq!(conflicts, 1);
    let merged_again = f.system.merge_offline_scans(scans).await.unwrap();
    assert_eq!(merged_again, answers, "merging again records nothing twice");
}

pub async fn without_ticket_keys_codes_are_refused_naming_the_variable(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let (reservation, _) = bought(&f, 1).await;
    let keyless = TicketingSystem::builder()
        .event_store(Arc::clone(&f.storage.store))
        .checkpoints(Arc::clone(&f.storage.checkpoints))
        .read_models(f.storage.read_models.clone())
        .clock(Arc::new(f.clock.clone()))
        .payment_gateway(Arc::clone(&f.gateway) as Arc<dyn boxoffice::system::PaymentGateway>)
        .build()
        .await
        .unwrap();
    let refused = keyless.tickets(reservation).await.unwrap_err();
    assert!(matches!(refused, SystemError::NoTicketKeys { variable: "BOXOFFICE_TICKET_KEY" }), "{refused}");
    assert!(refused.to_string().contains("BOXOFFICE_TICKET_KEY"));
    let code = f.system.tickets(reservation).await.unwrap().remove(0).code;
    assert!(matches!(
        keyless.check_in(&code, &gate(&f, "North"), ScanId::new_v4()).await,
        Err(SystemError::NoTicketKeys { .. })
    ));
    keyless.shutdown().await;
}

/// An event allows 4 tickets per customer. One customer's 8 concurrent orders of 2, from two
/// systems over one storage, get exactly 2 holds; the rest are refused as over the limit. Paying,
/// refunding one ticket, and a hold that ends each move the allowance as they should.
pub async fn one_customers_concurrent_orders_never_pass_the_ticket_limit(backend: Backend) {
    let clock = boxoffice::framework::FixedClock::new(start());
    let storage = backend.storage().await;
    let gateway = Arc::new(SimulatedGateway::always_succeed());
    let a = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let b = system_with(&storage, &clock, Arc::clone(&gateway)).await;
    let mut limited = spec(&clock, &[("Stalls", 100)]);
    limited.policy.max_tickets_per_customer = Some(4);
    let event = a.create_event(limited).await.unwrap();
    a.publish_event(event).await.unwrap();
    a.open_sales(event).await.unwrap();
    b.settled().await.unwrap();
    let customer = CustomerId::new_v4();
    let order = |quantity| ReserveRequest {
        event_id: event,
        section: SectionName::new("Stalls").unwrap(),
        quantity,
        customer_id: customer,
        idempotency_key: None,
    };
    let attempts = (0..8).map(|i| {
        let system = if i % 2 == 0 { a.clone() } else { b.clone() };
        let request = order(2);
        tokio::spawn(async move { system.reserve(request).await })
    });
    let outcomes: Vec<_> = futures::future::join_all(attempts).await.into_iter().map(Result::unwrap).collect();
    let held: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let over = outcomes.iter().filter(|o| matches!(o, Err(SystemError::Allowance(_)))).count();
    assert_eq!((held.len(), over), (2, 6), "{outcomes:?}");
    a.settled().await.unwrap();
    b.settled().await.unwrap();
    let logged = a.event_store().head_position().await.unwrap();
    let alone = a.reserve(order(5)).await;
    assert!(matches!(alone, Err(SystemError::Allowance(_))), "{alone:?}");
    assert_eq!(a.event_store().head_position().await.unwrap(), logged, "above the limit by itself: nothing recorded");

    // The rest goes on on both systems: a refusal one of them decides on its cached state is
    // checked against the store, so a claim the other gave back is seen.
    // Another customer is not held back; the first pays for one hold and gives the other up.
    assert!(b.reserve(ReserveRequest { customer_id: CustomerId::new_v4(), ..order(4) }).await.is_ok());
    a.pay(held[0].reservation_id, card()).await.unwrap();
    a.cancel_reservation(held[1].reservation_id).await.unwrap();
    a.settled().await.unwrap();
    let more = a.reserve(order(2)).await.unwrap();
    assert!(matches!(a.reserve(order(1)).await, Err(SystemError::Allowance(_))), "2 bought + 2 held");
    a.cancel_reservation(more.reservation_id).await.unwrap();
    a.settled().await.unwrap();
    // A refunded ticket counts no more.
    let ticket = a.tickets(held[0].reservation_id).await.unwrap().remove(0).ticket_id;
    let refund = TicketRefundRequest {
        reservation_id: held[0].reservation_id,
        tickets: vec![ticket],
        reason: "x".into(),
        idempotency_key: None,
    };
    a.refund_tickets(refund).await.unwrap();
    a.settled().await.unwrap();
    let three = a.reserve(order(3)).await;
    assert!(three.is_ok(), "1 kept + 3 = the limit: {three:?}");
    let last = b.reserve(order(1)).await;
    assert!(matches!(last, Err(SystemError::Allowance(_))), "{last:?}");
    a.shutdown().await;
    b.shutdown().await;
}
