//! Money scenarios: what the gateway answered, what it was asked to give back, and what the log
//! and the read models say about it, for every outcome a provider can give (approved, declined,
//! unknown, unreachable) and for refunds (partial, repeated, too large, unknown, declined).

use std::time::Duration;

use boxoffice::aggregates::{PaymentError, PaymentStatus, RefundStatus, ReservationStatus};
use boxoffice::prelude::*;
use boxoffice::system::{HeldSeats, RefundRequest, SystemError};

use super::{Backend, card, metrics, on_sale, request};

/// One `#[tokio::test]` per payment scenario, on `$backend`.
#[allow(unused_macros)] // used by the binaries that run the scenarios, not by every one that shares this module
macro_rules! payment_scenarios {
    ($backend:expr) => {
        $crate::system_support::payments::payment_scenarios!(
            $backend;
            an_unknown_charge_is_settled_by_asking_the_provider,
            a_charge_that_never_arrived_is_declined_and_the_seats_released,
            an_unreachable_provider_leaves_the_charge_open_for_the_next_pass,
            refunds_move_money_once_and_never_more_than_was_paid,
            an_unknown_refund_is_sent_again_and_counted_only_when_confirmed,
            a_declined_refund_is_recorded_and_frees_its_amount,
            cancelling_an_event_refunds_through_the_gateway,
            an_events_hold_duration_sets_the_deadline,
            a_late_payment_is_refunded_by_default,
            a_late_payment_is_accepted_while_seats_are_free,
            a_late_payment_is_refunded_when_the_seats_are_gone,
            a_late_payment_is_kept_for_review,
            prices_whose_sales_could_overflow_are_refused,
        );
    };
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::payments::$name($backend).await;
        }
    )*};
}
#[allow(unused_imports)] // as above
pub(crate) use payment_scenarios;

/// Older than the default reconciliation grace period (60 s).
const PAST_GRACE: Duration = Duration::from_secs(61);

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

fn refund(reservation_id: ReservationId, amount: Option<i64>, key: Option<&str>) -> RefundRequest {
    RefundRequest {
        reservation_id,
        amount: amount.map(eur),
        reason: "goodwill".into(),
        idempotency_key: key.map(Into::into),
    }
}

/// The provider took the money but its answer was lost: `pay` says the payment is pending, the
/// seats stay held, and reconciliation (once the charge is past the grace period) learns from the
/// provider that it was approved and completes the purchase, charged once.
pub async fn an_unknown_charge_is_settled_by_asking_the_provider(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    f.gateway.lose_next_answers(1);
    let paid = f.system.pay(hold.reservation_id, card()).await;
    assert!(matches!(paid, Err(SystemError::PaymentPending { .. })), "{paid:?}");
    let payment = f.system.payment(hold.reservation_id).await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentStatus::Unknown, "the unknown answer is recorded");
    assert_eq!(f.gateway.charged(payment.payment_id), Some(hold.total), "the provider did take the money");
    let early = f.system.reconcile_payments().await.unwrap();
    assert_eq!(early.charges_settled, 0, "within the grace period nothing is touched: {early:?}");

    f.clock.advance(PAST_GRACE);
    let pass = f.system.reconcile_payments().await.unwrap();
    assert_eq!(pass.charges_settled, 1, "{pass:?}");
    f.system.settled().await.unwrap();
    let reservation = f.system.reservation(hold.reservation_id).await.unwrap();
    assert_eq!(reservation.status, ReservationStatus::Completed);
    assert_eq!(f.gateway.charge_calls(), 1, "reconciliation asks; it never charges again");
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, hold.total);
    let again = f.system.reconcile_payments().await.unwrap();
    assert_eq!(again, boxoffice::system::Reconciliation::default(), "nothing is left open");
}

/// The charge never reached the provider: reconciliation finds no charge, records the payment
/// declined and the seats go back. No money moved.
pub async fn a_charge_that_never_arrived_is_declined_and_the_seats_released(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.gateway.unreachable_next(1);
    let paid = f.system.pay(hold.reservation_id, card()).await;
    assert!(matches!(paid, Err(SystemError::PaymentPending { .. })), "{paid:?}");
    assert_eq!(super::available(&f, "Stalls").await, 7, "held while the answer is unknown");
    f.clock.advance(PAST_GRACE);
    let pass = f.system.reconcile_payments().await.unwrap();
    assert_eq!(pass.charges_settled, 1, "{pass:?}");
    f.system.settled().await.unwrap();
    let reservation = f.system.reservation(hold.reservation_id).await.unwrap();
    assert_eq!(reservation.status, ReservationStatus::Compensated);
    assert_eq!(f.gateway.charged(PaymentId::for_reservation(hold.reservation_id)), None);
    assert_eq!(super::available(&f, "Stalls").await, 10);
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, eur(0));
}

/// While the provider cannot be asked, reconciliation leaves the charge open and says so; the
/// next pass settles it.
pub async fn an_unreachable_provider_leaves_the_charge_open_for_the_next_pass(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 1)).await.unwrap();
    f.gateway.lose_next_answers(1);
    assert!(matches!(f.system.pay(hold.reservation_id, card()).await, Err(SystemError::PaymentPending { .. })));
    f.clock.advance(PAST_GRACE);
    f.gateway.unreachable_next(1);
    let blocked = f.system.reconcile_payments().await.unwrap();
    assert_eq!((blocked.charges_settled, blocked.unresolved), (0, 1), "{blocked:?}");
    let pass = f.system.reconcile_payments().await.unwrap();
    assert_eq!(pass.charges_settled, 1, "{pass:?}");
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Completed);
}

/// Partial refunds reach the provider; a repeated refund with the same key gives the money back
/// once; a refund above what is left is refused, appends nothing and moves nothing; revenue
/// falls by what the provider confirmed.
pub async fn refunds_move_money_once_and_never_more_than_was_paid(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    let receipt = f.system.pay(hold.reservation_id, card()).await.unwrap();
    assert_eq!(receipt.amount, eur(5_000));

    let first = f.system.refund(refund(hold.reservation_id, Some(1_500), Some("r1"))).await.unwrap();
    assert_eq!((first.amount, &first.status), (eur(1_500), &RefundStatus::Refunded));
    let repeated = f.system.refund(refund(hold.reservation_id, Some(1_500), Some("r1"))).await.unwrap();
    assert_eq!(repeated.refund_id, first.refund_id, "the same key is the same refund");
    assert_eq!(f.gateway.refunded(receipt.payment_id), Some(eur(1_500)), "given back once");

    let head = f.system.event_store().head_position().await.unwrap();
    let too_much = f.system.refund(refund(hold.reservation_id, Some(3_501), None)).await;
    assert!(matches!(too_much, Err(SystemError::Payment(PaymentError::RefundExceedsPaid { .. }))), "{too_much:?}");
    assert_eq!(f.system.event_store().head_position().await.unwrap(), head, "a refused refund appends nothing");
    let reused = f.system.refund(refund(hold.reservation_id, Some(100), Some("r1"))).await;
    assert!(matches!(reused, Err(SystemError::Payment(PaymentError::RefundIdReused { .. }))), "{reused:?}");

    let rest = f.system.refund(refund(hold.reservation_id, None, None)).await.unwrap();
    assert_eq!((rest.amount, &rest.status), (eur(3_500), &RefundStatus::Refunded));
    assert_eq!(f.gateway.refunded(receipt.payment_id), Some(eur(5_000)));
    assert_eq!(f.gateway.refund_calls(), 2, "one call per refund: the repeat was answered from the log");
    f.system.settled().await.unwrap();
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, eur(0));
    let nothing_left = f.system.refund(refund(hold.reservation_id, None, None)).await;
    assert!(matches!(nothing_left, Err(SystemError::Payment(_))), "{nothing_left:?}");
}

/// A refund whose answer is lost stays requested (visible), is not counted by the read models,
/// and reconciliation sends it again under its refund id: the money goes back once.
pub async fn an_unknown_refund_is_sent_again_and_counted_only_when_confirmed(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
    let receipt = f.system.pay(hold.reservation_id, card()).await.unwrap();
    f.gateway.lose_next_answers(1);
    let pending = f.system.refund(refund(hold.reservation_id, Some(2_000), Some("lost"))).await.unwrap();
    assert_eq!(pending.status, RefundStatus::Requested, "not confirmed: still requested");
    f.system.settled().await.unwrap();
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, eur(5_000), "counted only once confirmed");
    let early = f.system.reconcile_payments().await.unwrap();
    assert_eq!(early.refunds_settled, 0, "{early:?}");

    f.clock.advance(PAST_GRACE);
    let pass = f.system.reconcile_payments().await.unwrap();
    assert_eq!(pass.refunds_settled, 1, "{pass:?}");
    f.system.settled().await.unwrap();
    let payment = f.system.payment(hold.reservation_id).await.unwrap().unwrap();
    assert_eq!(payment.refund(pending.refund_id).map(|r| &r.status), Some(&RefundStatus::Refunded));
    assert_eq!(f.gateway.refunded(receipt.payment_id), Some(eur(2_000)), "given back once");
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, eur(3_000));
}

/// A refund the provider refuses is recorded as declined, moves nothing, counts nothing, and
/// frees its amount for another refund.
pub async fn a_declined_refund_is_recorded_and_frees_its_amount(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let hold = f.system.reserve(request(&f, "Stalls", 1)).await.unwrap();
    f.system.pay(hold.reservation_id, card()).await.unwrap();
    // A provider declines the refund of a charge it never took: a second system over the same
    // log but another provider account asks for one.
    let other = std::sync::Arc::new(SimulatedGateway::always_succeed());
    f.system.shutdown().await;
    let system = super::system_with(&f.storage, &f.clock, std::sync::Arc::clone(&other)).await;
    let declined = system.refund(refund(hold.reservation_id, None, Some("elsewhere"))).await.unwrap();
    assert!(matches!(declined.status, RefundStatus::Declined { .. }), "{declined:?}");
    system.settled().await.unwrap();
    assert_eq!(metrics(&system, f.event).await.total_revenue, eur(2_500));
    let payment = system.payment(hold.reservation_id).await.unwrap().unwrap();
    assert_eq!(payment.refundable().unwrap(), eur(2_500), "the declined amount can be refunded again");
    system.shutdown().await;
}

/// Cancelling an event refunds every purchase through the provider.
pub async fn cancelling_an_event_refunds_through_the_gateway(backend: Backend) {
    let f = on_sale(backend, &[("Stalls", 10)]).await;
    let mut payments = Vec::new();
    for _ in 0..3 {
        let hold = f.system.reserve(request(&f, "Stalls", 2)).await.unwrap();
        payments.push(f.system.pay(hold.reservation_id, card()).await.unwrap());
    }
    f.system.cancel_event(f.event, "storm").await.unwrap();
    f.system.settled().await.unwrap();
    for receipt in &payments {
        assert_eq!(f.gateway.refunded(receipt.payment_id), Some(receipt.amount), "refunded in full at the provider");
    }
    assert_eq!(metrics(&f.system, f.event).await.total_revenue, eur(0));
}

/// A system over fresh storage with one event on sale under `policy`: a 4-seat section at
/// 2,500 EUR a seat.
async fn on_sale_with(backend: Backend, policy: SalesPolicy) -> super::Fixture {
    let clock = FixedClock::new(super::start());
    let storage = backend.storage().await;
    let gateway = std::sync::Arc::new(SimulatedGateway::always_succeed());
    let system = super::system_with(&storage, &clock, std::sync::Arc::clone(&gateway)).await;
    let stalls = SectionName::new("Stalls").unwrap();
    let spec = EventSpec {
        name: "Policy".into(),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
        date: clock.now() + chrono::Duration::days(30),
        sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(4).unwrap() }],
        pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls, eur(2_500), None).unwrap()],
        policy,
    };
    let event = system.create_event(spec).await.unwrap();
    system.publish_event(event).await.unwrap();
    system.open_sales(event).await.unwrap();
    super::Fixture { clock, storage, gateway, system, event }
}

/// Holds `quantity` seats, pays with the answer lost, lets the hold run out (the system
/// default, 5 minutes), then reconciles: the provider says approved, after the hold ended.
async fn pay_late(f: &super::Fixture, quantity: u32) -> HeldSeats {
    let hold = f.system.reserve(request(f, "Stalls", quantity)).await.unwrap();
    f.gateway.lose_next_answers(1);
    assert!(matches!(f.system.pay(hold.reservation_id, card()).await, Err(SystemError::PaymentPending { .. })));
    f.clock.advance(Duration::from_secs(5 * 60));
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Expired);
    hold
}

async fn reconcile_late(f: &super::Fixture) {
    let pass = f.system.reconcile_payments().await.unwrap();
    assert_eq!(pass.charges_settled, 1, "{pass:?}");
    f.system.settled().await.unwrap();
}

/// An event's own hold duration decides the deadline, and the hold expires on it.
pub async fn an_events_hold_duration_sets_the_deadline(backend: Backend) {
    let policy = SalesPolicy { hold: Some(Duration::from_secs(90)), ..SalesPolicy::default() };
    let f = on_sale_with(backend, policy).await;
    let hold = f.system.reserve(request(&f, "Stalls", 1)).await.unwrap();
    assert_eq!(hold.expires_at, f.clock.now() + chrono::Duration::seconds(90));
    f.clock.advance(Duration::from_secs(89));
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::SeatsAllocated);
    f.clock.advance(Duration::from_secs(1));
    f.system.settled().await.unwrap();
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Expired);
    let bad = SalesPolicy { hold: Some(Duration::ZERO), ..SalesPolicy::default() };
    let refused = f
        .system
        .create_event(EventSpec {
            name: "Zero hold".into(),
            venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
            date: f.clock.now() + chrono::Duration::days(1),
            sections: vec![Section { name: SectionName::new("A").unwrap(), capacity: Capacity::new(1).unwrap() }],
            pricing_tiers: Vec::new(),
            policy: bad,
        })
        .await;
    assert!(
        matches!(refused, Err(SystemError::Event(boxoffice::aggregates::EventError::InvalidHold { .. }))),
        "{refused:?}"
    );
}

/// Default policy: a payment approved after its hold ended is refunded in full, at the provider.
pub async fn a_late_payment_is_refunded_by_default(backend: Backend) {
    let f = on_sale_with(backend, SalesPolicy::default()).await;
    let hold = pay_late(&f, 2).await;
    reconcile_late(&f).await;
    let payment_id = PaymentId::for_reservation(hold.reservation_id);
    assert_eq!(f.gateway.refunded(payment_id), Some(hold.total), "the money went back");
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Expired);
    assert_eq!(super::available(&f, "Stalls").await, 4);
    assert_eq!(super::metrics(&f.system, f.event).await.total_revenue, eur(0));
}

/// `AcceptIfSeatsFree`: the late payment buys the same number of seats when they are still
/// free; the reservation completes and nothing is refunded.
pub async fn a_late_payment_is_accepted_while_seats_are_free(backend: Backend) {
    let policy = SalesPolicy { late_payment: LatePaymentPolicy::AcceptIfSeatsFree, ..SalesPolicy::default() };
    let f = on_sale_with(backend, policy).await;
    let hold = pay_late(&f, 2).await;
    reconcile_late(&f).await;
    let reservation = f.system.reservation(hold.reservation_id).await.unwrap();
    assert_eq!(reservation.status, ReservationStatus::Completed);
    assert_eq!(reservation.seats.len(), 2);
    assert_eq!(f.gateway.refunded(PaymentId::for_reservation(hold.reservation_id)), Some(eur(0)));
    assert_eq!(super::available(&f, "Stalls").await, 2, "the seats are sold");
    assert_eq!(super::metrics(&f.system, f.event).await.total_revenue, hold.total);
}

/// `AcceptIfSeatsFree` when the seats went to someone else meanwhile: refunded, nobody oversold.
pub async fn a_late_payment_is_refunded_when_the_seats_are_gone(backend: Backend) {
    let policy = SalesPolicy { late_payment: LatePaymentPolicy::AcceptIfSeatsFree, ..SalesPolicy::default() };
    let f = on_sale_with(backend, policy).await;
    let hold = pay_late(&f, 2).await;
    let other = f.system.reserve(request(&f, "Stalls", 3)).await.unwrap();
    f.system.pay(other.reservation_id, card()).await.unwrap();
    reconcile_late(&f).await;
    assert_eq!(f.system.reservation(hold.reservation_id).await.unwrap().status, ReservationStatus::Expired);
    assert_eq!(f.gateway.refunded(PaymentId::for_reservation(hold.reservation_id)), Some(hold.total));
    let seats = f.system.available_seats().unwrap().get_availability(f.event, "Stalls").await.unwrap().unwrap();
    assert_eq!((seats.sold, seats.available), (3, 1), "never oversold");
}

/// `ManualReview`: the money is kept and recorded for an operator; nothing is refunded until
/// one does.
pub async fn a_late_payment_is_kept_for_review(backend: Backend) {
    let policy = SalesPolicy { late_payment: LatePaymentPolicy::ManualReview, ..SalesPolicy::default() };
    let f = on_sale_with(backend, policy).await;
    let hold = pay_late(&f, 1).await;
    reconcile_late(&f).await;
    let reservation = f.system.reservation(hold.reservation_id).await.unwrap();
    assert_eq!((reservation.status, reservation.late_payment_kept), (ReservationStatus::Expired, Some(hold.total)));
    let payment_id = PaymentId::for_reservation(hold.reservation_id);
    assert_eq!(f.gateway.refunded(payment_id), Some(eur(0)), "kept for review");
    assert_eq!(super::available(&f, "Stalls").await, 4, "no seats for it");
    let settled = f.system.refund(refund(hold.reservation_id, None, Some("review"))).await.unwrap();
    assert_eq!(settled.status, RefundStatus::Refunded);
    assert_eq!(f.gateway.refunded(payment_id), Some(hold.total));
}

/// An event whose seats, all sold at their dearest price, would add up past the money type is
/// refused when it is created, so no sum of its sales can overflow a read model; nothing is
/// appended.
pub async fn prices_whose_sales_could_overflow_are_refused(backend: Backend) {
    let f = super::on_sale(backend, &[("Stalls", 10)]).await;
    let head = f.system.event_store().head_position().await.unwrap();
    let stalls = SectionName::new("Stalls").unwrap();
    let spec = |price: i64| EventSpec {
        name: "Dear".into(),
        venue: Venue::new(VenueId::new_v4(), "Hall").unwrap(),
        date: f.clock.now() + chrono::Duration::days(30),
        sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(2).unwrap() }],
        pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls.clone(), eur(price), None).unwrap()],
        policy: SalesPolicy::default(),
    };
    let refused = f.system.create_event(spec(i64::MAX / 2 + 1)).await;
    assert!(
        matches!(refused, Err(SystemError::Event(boxoffice::aggregates::EventError::RevenueOverflow { .. }))),
        "{refused:?}"
    );
    assert_eq!(f.system.event_store().head_position().await.unwrap(), head, "nothing appended");
    let event = f.system.create_event(spec(i64::MAX / 2)).await.unwrap();
    f.system.publish_event(event).await.unwrap();
    f.system.open_sales(event).await.unwrap();
    for _ in 0..2 {
        let request = ReserveRequest {
            event_id: event,
            section: stalls.clone(),
            quantity: 1,
            customer_id: CustomerId::new_v4(),
            idempotency_key: None,
        };
        let hold = f.system.reserve(request).await.unwrap();
        f.system.pay(hold.reservation_id, card()).await.unwrap();
    }
    f.system.settled().await.unwrap();
    assert_eq!(super::metrics(&f.system, event).await.total_revenue, eur(i64::MAX / 2 * 2), "both sales counted");
}
