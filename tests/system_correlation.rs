//! The metadata contract (I12) with today's API, where every call gets a fresh request id:
//! concurrent reserves batched into one inventory append keep their own correlation ids, and a
//! purchase's events form one causation chain per call, back to the call. Memory, and
//! `PostgreSQL` with the `postgres` feature (needs `DATABASE_URL`, fails loudly without it).
//! `tests/system_metadata.rs` checks the same with caller-supplied ids (`with_request_id`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fault_support;
mod metadata_support;
mod system_support;

use std::collections::{BTreeMap, HashSet};

use boxoffice::prelude::*;
use boxoffice::system::ReserveRequest;
use fault_support::log::read_log;
use fault_support::purchase::{card, one_seat, retrying, rig, within};
use metadata_support::{
    PURCHASE_STEPS, RESERVE_STEPS, assert_no_violations, assert_reserves_keep_their_correlation, caused_by_request,
    events_of, kind, the,
};
use system_support::Backend;

const BUYERS: usize = 256;

/// 256 reserves at once on one section: the section's worker folds many of them into one
/// append. Catches: a batch written with one metadata for all its commands (the first one's),
/// so `SeatsReserved` of reservation B carries A's correlation id, and the saga then carries the
/// wrong id on to B's `SeatsAllocated`; and two calls sharing a request id.
async fn concurrent_reserves_keep_their_own_correlation(backend: Backend) {
    let rig = rig(backend, &[("Hall", 300)]).await;
    let calls: Vec<_> = (0..BUYERS)
        .map(|i| {
            let system = rig.system.clone();
            let request = one_seat(&rig, "Hall", format!("buyer-{i}"));
            tokio::spawn(async move {
                let (held, errors) = retrying("reserve", || system.reserve(request.clone())).await;
                held.unwrap_or_else(|e| panic!("reserve failed: {e} (earlier {errors:?})")).reservation_id
            })
        })
        .collect();
    let reservations: Vec<ReservationId> =
        within("256 reserves", futures::future::join_all(calls)).await.into_iter().map(Result::unwrap).collect();
    within("settled()", rig.system.settled()).await.unwrap();

    let log = read_log(&rig.faulty.inner()).await;
    let expected: BTreeMap<ReservationId, uuid::Uuid> = reservations
        .iter()
        .map(|r| {
            let events = events_of(&log, *r);
            let initiated = the(&events, RESERVE_STEPS[0]);
            let correlation = initiated.metadata.correlation_id;
            (*r, correlation.unwrap_or_else(|| panic!("ReservationInitiated of {r} has no correlation id")))
        })
        .collect();
    let distinct: HashSet<_> = expected.values().collect();
    assert_eq!(distinct.len(), BUYERS, "each reserve call gets a request id of its own");
    assert_reserves_keep_their_correlation(&log, &expected, false);
    rig.system.shutdown().await;
}

/// A purchase without caller-supplied ids: `reserve` and `pay` are two requests with fresh,
/// different ids; each one's events (the gateway's outcome included) carry its id, the events
/// each API command wrote name the request as their cause, and every saga follow-up names an
/// earlier event of the same request. Catches: a missing causation id on the API's own
/// events, a gateway outcome recorded outside the request's context (a fresh correlation), a
/// follow-up whose cause is not in the chain.
async fn a_purchase_is_one_causation_chain_per_call(backend: Backend) {
    let rig = rig(backend, &[("Stalls", 10)]).await;
    let request = ReserveRequest {
        event_id: rig.event,
        section: SectionName::new("Stalls").unwrap(),
        quantity: 2,
        customer_id: CustomerId::new_v4(),
        idempotency_key: None,
    };
    let held = within("reserve", rig.system.reserve(request)).await.unwrap();
    within("pay", rig.system.pay(held.reservation_id, card())).await.unwrap();
    within("settled()", rig.system.settled()).await.unwrap();

    let log = read_log(&rig.faulty.inner()).await;
    let events = events_of(&log, held.reservation_id);
    for step in PURCHASE_STEPS {
        the(&events, step);
    }
    let paying_from = the(&events, PURCHASE_STEPS[3]).global_position;
    let (reserving, paying): (Vec<&boxoffice::event_store::Envelope>, Vec<_>) =
        events.iter().copied().partition(|e| e.global_position < paying_from);
    let reserve_id = the(&events, PURCHASE_STEPS[0]).metadata.correlation_id.expect("reserve's correlation id");
    let pay_id = the(&events, PURCHASE_STEPS[3]).metadata.correlation_id.expect("pay's correlation id");
    assert_ne!(reserve_id, pay_id, "two calls without a supplied id get two fresh request ids");
    assert!(reserving.iter().all(|e| RESERVE_STEPS.contains(&kind(e))), "only reserve's steps come before pay");
    let mut violations = caused_by_request(&reserving, reserve_id, true);
    violations.extend(caused_by_request(&paying, pay_id, true));
    assert_no_violations("one purchase", &violations, &events);
    rig.system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_keep_their_own_correlation_memory() {
    concurrent_reserves_keep_their_own_correlation(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_is_one_causation_chain_per_call_memory() {
    a_purchase_is_one_causation_chain_per_call(Backend::Memory).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_keep_their_own_correlation_postgres() {
    concurrent_reserves_keep_their_own_correlation(Backend::Postgres).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_is_one_causation_chain_per_call_postgres() {
    a_purchase_is_one_causation_chain_per_call(Backend::Postgres).await;
}
