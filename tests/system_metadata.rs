//! The metadata contract (I12) with caller-supplied request ids:
//! `TicketingSystem::with_request_id(id)` returns a handle whose calls record `id` as the
//! correlation id of every event they cause, directly or through the saga and the payment
//! gateway's outcome. Memory, and `PostgreSQL` with the `postgres` feature (needs
//! `DATABASE_URL`, fails loudly without it).
//!
//! Written against the engine being built: `with_request_id` does not exist in today's
//! `TicketingSystem`, so this binary does not compile yet (the same checks with today's API,
//! fresh ids per call, are in `tests/system_correlation.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fault_support;
mod metadata_support;
mod system_support;

use std::collections::BTreeMap;

use boxoffice::prelude::*;
use boxoffice::system::{ReserveRequest, TicketingSystem};
use fault_support::log::read_log;
use fault_support::purchase::{card, retrying, rig, within};
use metadata_support::{
    PURCHASE_STEPS, assert_no_violations, assert_reserves_keep_their_correlation, caused_by_request, events_of, the,
};
use system_support::Backend;
use uuid::Uuid;

const BUYERS: usize = 256;

/// 256 reserves at once on one section, each through `with_request_id(its own id)`: every
/// `ReservationInitiated`, `SeatsReserved` and `SeatsAllocated` of reservation R carries R's
/// request id, and each follow-up's cause is an earlier event of R's request. Catches: a
/// batched inventory append written with the first command's metadata for all of them; a
/// handle whose id is dropped somewhere between the call, the worker and the saga; a retried
/// call (same handle, same key) that records another id.
async fn concurrent_reserves_carry_their_callers_request_id(backend: Backend) {
    let rig = rig(backend, &[("Hall", 300)]).await;
    let mut expected = BTreeMap::new();
    let calls: Vec<_> = (0..BUYERS)
        .map(|i| {
            let request_id = Uuid::new_v4();
            let customer = CustomerId::new_v4();
            let key = format!("buyer-{i}");
            expected.insert(ReservationId::for_idempotency_key(customer, &key), request_id);
            let handle: TicketingSystem = rig.system.with_request_id(request_id);
            let request = ReserveRequest {
                event_id: rig.event,
                section: SectionName::new("Hall").unwrap(),
                quantity: 1,
                customer_id: customer,
                idempotency_key: Some(key),
            };
            tokio::spawn(async move {
                let (held, errors) = retrying("reserve", || handle.reserve(request.clone())).await;
                held.unwrap_or_else(|e| panic!("reserve failed: {e} (earlier {errors:?})")).reservation_id
            })
        })
        .collect();
    let reserved: std::collections::BTreeSet<ReservationId> =
        within("256 reserves", futures::future::join_all(calls)).await.into_iter().map(Result::unwrap).collect();
    assert!(reserved.iter().eq(expected.keys()), "the idempotency keys name the reservations");
    within("settled()", rig.system.settled()).await.unwrap();

    let log = read_log(&rig.faulty.inner()).await;
    assert_reserves_keep_their_correlation(&log, &expected, true);
    rig.system.shutdown().await;
}

/// One purchase, reserve then pay through the same `with_request_id` handle: every event of
/// the reservation, its inventory hold and its payment (the gateway's outcome included) carries
/// the request id; `ReservationInitiated` and `PaymentRequested` (written by the API commands)
/// name the request as their cause; every other event names an earlier event of the purchase.
/// Catches: the gateway outcome recorded without the request's metadata (today: no
/// correlation at all), the saga starting a fresh correlation for `CompletePayment`, the
/// API's own events without a causation id.
async fn a_purchase_carries_its_request_id_to_every_event(backend: Backend) {
    let rig = rig(backend, &[("Stalls", 10)]).await;
    let request_id = Uuid::new_v4();
    let handle = rig.system.with_request_id(request_id);
    let request = ReserveRequest {
        event_id: rig.event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: Some("checkout-1".into()),
    };
    let held = within("reserve", handle.reserve(request)).await.unwrap();
    within("pay", handle.pay(held.reservation_id, card())).await.unwrap();
    within("settled()", rig.system.settled()).await.unwrap();

    let log = read_log(&rig.faulty.inner()).await;
    let events = events_of(&log, held.reservation_id);
    for step in PURCHASE_STEPS {
        the(&events, step);
    }
    let violations = caused_by_request(&events, request_id, true);
    assert_no_violations("one purchase through with_request_id", &violations, &events);
    rig.system.shutdown().await;
}

/// A handle is a cheap clone of the same system: calls through the plain system after a
/// handle was made still get a fresh id per call, never the handle's.
async fn a_handle_does_not_leak_its_id_into_other_calls(backend: Backend) {
    let rig = rig(backend, &[("Stalls", 10)]).await;
    let request_id = Uuid::new_v4();
    let handle = rig.system.with_request_id(request_id);
    let request = |key: &str| ReserveRequest {
        event_id: rig.event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 1,
        customer_id: CustomerId::new_v4(),
        idempotency_key: Some(key.into()),
    };
    let via_handle = within("reserve", handle.reserve(request("a"))).await.unwrap();
    let plain = within("reserve", rig.system.reserve(request("b"))).await.unwrap();
    within("settled()", rig.system.settled()).await.unwrap();
    let log = read_log(&rig.faulty.inner()).await;
    let correlation =
        |r| the(&events_of(&log, r), PURCHASE_STEPS[0]).metadata.correlation_id.expect("a correlation id");
    assert_eq!(correlation(via_handle.reservation_id), request_id);
    assert_ne!(correlation(plain.reservation_id), request_id, "the plain system must not use the handle's id");
    rig.system.shutdown().await;
}

macro_rules! on {
    ($backend:expr, $suffix:ident) => {
        mod $suffix {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_reserves_carry_their_callers_request_id() {
                super::concurrent_reserves_carry_their_callers_request_id($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_purchase_carries_its_request_id_to_every_event() {
                super::a_purchase_carries_its_request_id_to_every_event($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_handle_does_not_leak_its_id_into_other_calls() {
                super::a_handle_does_not_leak_its_id_into_other_calls($backend).await;
            }
        }
    };
}

on!(Backend::Memory, memory);
#[cfg(feature = "postgres")]
on!(Backend::Postgres, postgres);
