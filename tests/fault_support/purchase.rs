//! One purchase (reserve, then pay) through a [`FaultyStore`] with one append armed to fail,
//! by a client that retries a failed call with the same idempotency key, as a real one would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use boxoffice::domain::PaymentId;
use boxoffice::prelude::*;
use boxoffice::system::{PaymentDetails, ReserveRequest, SystemError, TicketingSystem};
use chrono::{TimeZone, Utc};

use super::gateway::CountingGateway;
use super::log::{Settled, assert_every_charge_recorded, assert_inventory_sound, assert_purchase_finished, read_log};
use super::store::FaultyStore;
use crate::system_support::{Backend, Storage, open_sale_on};

/// Every await on the system is bounded by this (the machine is shared and loaded).
pub const WAIT: Duration = Duration::from_secs(60);
/// How long `reserve` and `pay` wait for the saga before answering `Timeout`.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls a client makes before giving up (the first included).
pub const ATTEMPTS: usize = 4;

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// A system, its storage (behind a [`FaultyStore`]) and an event on sale.
pub struct Rig {
    pub clock: FixedClock,
    pub storage: Storage,
    pub faulty: Arc<FaultyStore>,
    pub gateway: Arc<CountingGateway>,
    pub system: TicketingSystem,
    pub event: EventId,
}

pub fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

/// A system over `faulty` and the rest of `storage`.
pub async fn system_over(
    storage: &Storage,
    faulty: &Arc<FaultyStore>,
    clock: &FixedClock,
    gateway: &Arc<CountingGateway>,
) -> TicketingSystem {
    let built = TicketingSystem::builder()
        .event_store(Arc::clone(faulty) as Arc<dyn boxoffice::event_store::EventStore>)
        .checkpoints(Arc::clone(&storage.checkpoints))
        .read_models(storage.read_models.clone())
        .clock(Arc::new(clock.clone()))
        .payment_gateway(Arc::clone(gateway) as Arc<dyn boxoffice::system::PaymentGateway>)
        .reply_timeout(REPLY_TIMEOUT)
        // Reconciliation runs only when a test asks (and once at start-up): a scheduled pass
        // after the clock moved would settle a charge before the test's own call counts it.
        .payment_reconciliation(Duration::from_secs(24 * 3600), Duration::from_secs(60))
        .build();
    within("building the system", built).await.unwrap()
}

pub async fn rig(backend: Backend, sections: &[(&str, u32)]) -> Rig {
    let clock = FixedClock::new(start());
    let storage = backend.storage().await;
    let faulty = FaultyStore::new(Arc::clone(&storage.store));
    let gateway = Arc::new(CountingGateway::new());
    let system = system_over(&storage, &faulty, &clock, &gateway).await;
    let event = within("opening the sale", open_sale_on(&system, &clock, sections)).await;
    within("settling the sale's set-up", system.settled()).await.unwrap();
    Rig { clock, storage, faulty, gateway, system, event }
}

/// A request for one seat of `section` by a new customer, retried safely under `key`.
pub fn one_seat(rig: &Rig, section: &str, key: String) -> ReserveRequest {
    ReserveRequest {
        event_id: rig.event,
        section: SectionName::new(section).unwrap(),
        quantity: 1,
        customer_id: CustomerId::new_v4(),
        idempotency_key: Some(key),
    }
}

pub fn card() -> PaymentDetails {
    PaymentDetails { token: "tok_visa".into() }
}

/// Errors a client retries: the call may or may not have taken effect, and an idempotent retry
/// finds out. Refusals (declined, sold out, ended) are answers, not retried.
pub fn is_transient(error: &SystemError) -> bool {
    matches!(error, SystemError::Storage(_) | SystemError::Timeout { .. } | SystemError::Contention { .. })
}

/// Calls `call` until it succeeds, answers with a refusal, or [`ATTEMPTS`] calls failed
/// transiently; returns the last result and every transient error seen.
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> (Result<T, SystemError>, Vec<String>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SystemError>>,
{
    let mut seen = Vec::new();
    for attempt in 1..=ATTEMPTS {
        match within(&format!("{what} (attempt {attempt})"), call()).await {
            Err(error) if is_transient(&error) && attempt < ATTEMPTS => seen.push(error.to_string()),
            other => return (other, seen),
        }
    }
    unreachable!()
}

/// Arms one failure of the next append carrying `event_type` on a `category` stream, then buys
/// two seats. Catches: a step whose failed append is logged and forgotten (above all the
/// gateway's approval, `payment/PaymentSucceeded`: money taken, nothing recorded, the
/// reservation stuck in `PaymentPending`); a retried call that cannot restart a saga step a
/// failure dropped (the retry is a no-op and waits forever); a retry that holds seats or
/// charges twice; a half-done purchase (completed but seats never confirmed).
pub async fn one_failed_append_still_ends_in_a_finished_purchase(backend: Backend, category: &str, event_type: &str) {
    let rig = rig(backend, &[("Stalls", 10)]).await;
    let system = &rig.system;
    rig.faulty.fail_next_append_of(category, event_type);

    let customer = CustomerId::new_v4();
    let key = "checkout-1".to_owned();
    let reservation_id = ReservationId::for_idempotency_key(customer, &key);
    let request = ReserveRequest {
        event_id: rig.event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 2,
        customer_id: customer,
        idempotency_key: Some(key),
    };
    let (held, reserve_errors) = retrying("reserve", || system.reserve(request.clone())).await;
    let held = held.unwrap_or_else(|e| {
        panic!("reserve never succeeded with a {category}/{event_type} fault: {e} (earlier: {reserve_errors:?})")
    });
    assert_eq!(held.reservation_id, reservation_id, "the idempotency key names the reservation");
    let (paid, pay_errors) = retrying("pay", || system.pay(reservation_id, card())).await;
    within("settled()", system.settled()).await.unwrap();

    assert_eq!(
        rig.faulty.injected(category, event_type),
        1,
        "the {category}/{event_type} fault never fired: no append carried that event"
    );
    let log = read_log(&rig.faulty.inner()).await;
    assert_every_charge_recorded(&log, &rig.gateway);
    assert_inventory_sound(&log);
    let payment = PaymentId::for_reservation(reservation_id);
    let charges = rig.gateway.approved();
    let outcome = assert_purchase_finished(&log, reservation_id);
    match (&paid, outcome) {
        (Ok(purchase), Settled::Sold) => {
            assert_eq!(purchase.seats, held.seats, "the seats held are the seats sold");
            assert!(charges.contains_key(&payment), "sold without a charge: {charges:?}");
            let state = within("reservation()", system.reservation(reservation_id)).await.unwrap();
            assert_eq!(state.status, ReservationStatus::Completed);
        }
        (Err(error), Settled::Refunded) => {
            eprintln!("{category}/{event_type}: the purchase was refunded; pay answered {error}");
        }
        (paid, outcome) => panic!(
            "pay answered {paid:?} after {pay_errors:?} but the log says {outcome:?} \
             (fault {category}/{event_type}, reserve errors {reserve_errors:?})"
        ),
    }
    eprintln!(
        "{category}/{event_type}: reserve errors {reserve_errors:?}, pay errors {pay_errors:?}, gateway calls {}",
        rig.gateway.calls()
    );
    within("shutdown()", system.shutdown()).await;
}

/// The gateway takes the money, then the process cannot record the answer (every append of the
/// Payment `PaymentSucceeded` fails) and stops. Only the intent (`PaymentProcessed`) is in the
/// log, and the token went with the process. A new process over the same storage reconciles the
/// charge once it is older than the grace period: it asks the provider, records the approval,
/// completes the purchase and confirms its seats. Catches: a charge whose outcome is only in
/// memory (lost with the process), a reconciliation that second-guesses a charge still under
/// way, a re-drive that charges twice.
pub async fn a_charge_whose_record_failed_is_recorded_by_the_next_process(backend: Backend) {
    let rig = rig(backend, &[("Stalls", 10)]).await;
    let request = ReserveRequest {
        event_id: rig.event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: Some("crash".into()),
    };
    let hold = within("reserve", rig.system.reserve(request)).await.unwrap();
    rig.faulty.fail_next_appends_of("payment", "PaymentSucceeded", u32::MAX);
    let paid = within("pay", rig.system.pay(hold.reservation_id, card())).await;
    assert!(
        matches!(paid, Err(SystemError::Timeout { .. } | SystemError::Lagging { .. })),
        "the approval cannot be recorded: {paid:?}"
    );
    within("shutdown", rig.system.shutdown()).await;
    assert!(rig.faulty.injected("payment", "PaymentSucceeded") > 0, "the fault never fired");
    let payment_id = PaymentId::for_reservation(hold.reservation_id);
    assert_eq!(rig.gateway.approved().get(&payment_id).map(|c| c.amount), Some(hold.total), "money was taken");
    let log = read_log(&rig.faulty.inner()).await;
    assert!(!super::log::has(&log, "payment", "PaymentSucceeded", hold.reservation_id), "nothing recorded yet");
    assert!(super::log::has(&log, "payment", "PaymentProcessed", hold.reservation_id), "the intent is in the log");

    rig.faulty.disarm();
    let restarted = system_over(&rig.storage, &rig.faulty, &rig.clock, &rig.gateway).await;
    within("settling after the restart", restarted.settled()).await.unwrap();
    let early = within("reconciling within the grace period", restarted.reconcile_payments()).await.unwrap();
    assert_eq!(early.charges_settled, 0, "a charge younger than the grace period may still be under way elsewhere");
    rig.clock.advance(Duration::from_secs(61));
    let reconciled = within("reconciling", restarted.reconcile_payments()).await.unwrap();
    // The restarted system's own first pass (run once it has caught up with the log) may settle
    // the charge first, once the clock has moved; either way it is settled once, below.
    assert!(reconciled.charges_settled <= 1, "one charge to settle: {reconciled:?}");
    assert_eq!(reconciled.unresolved, 0, "the provider says the charge was approved: {reconciled:?}");
    within("settling after reconciliation", restarted.settled()).await.unwrap();
    let log = read_log(&rig.faulty.inner()).await;
    assert_every_charge_recorded(&log, &rig.gateway);
    assert_eq!(assert_purchase_finished(&log, hold.reservation_id), Settled::Sold);
    let charges = rig.gateway.approved()[&payment_id];
    assert_eq!((charges.amount, charges.calls), (hold.total, 1), "settled by asking the provider, charged once");
    assert_inventory_sound(&log);
    within("shutdown", restarted.shutdown()).await;
}
