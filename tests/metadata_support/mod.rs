//! Checks of the metadata contract (I12) over the log: which request caused each event
//! (`correlation_id`) and which earlier event or request directly caused it (`causation_id`).
//! Used by `tests/system_correlation.rs` (today's API: a fresh id per call) and
//! `tests/system_metadata.rs` (caller-supplied ids through `with_request_id`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use boxoffice::aggregates::category;
use boxoffice::domain::{PaymentId, ReservationId};
use boxoffice::event_store::Envelope;
use uuid::Uuid;

use crate::fault_support::log::reservation_of;

/// The steps of one purchase, as (stream category, event type), in the order they happen.
pub const PURCHASE_STEPS: [(&str, &str); 9] = [
    ("reservation", "ReservationInitiated"),
    ("inventory", "SeatsReserved"),
    ("reservation", "SeatsAllocated"),
    ("reservation", "PaymentRequested"),
    ("payment", "PaymentProcessed"),
    ("payment", "PaymentSucceeded"),
    ("reservation", "PaymentSucceeded"),
    ("reservation", "ReservationCompleted"),
    ("inventory", "SeatsConfirmed"),
];

/// The steps `reserve` causes.
pub const RESERVE_STEPS: [(&str, &str); 3] =
    [("reservation", "ReservationInitiated"), ("inventory", "SeatsReserved"), ("reservation", "SeatsAllocated")];

/// Events an API command writes itself (their causation is the request).
pub const API_WRITTEN: [(&str, &str); 2] =
    [("reservation", "ReservationInitiated"), ("reservation", "PaymentRequested")];

pub fn kind(envelope: &Envelope) -> (&str, &str) {
    (category(&envelope.stream_id), &envelope.event_type)
}

fn show(envelope: &Envelope) -> String {
    let (cat, ty) = kind(envelope);
    format!(
        "#{} {cat}/{ty} event_id={} correlation={:?} causation={:?}",
        envelope.global_position, envelope.event_id, envelope.metadata.correlation_id, envelope.metadata.causation_id
    )
}

/// Every event of reservation `reservation`: its own stream, its payment's stream, and the
/// inventory events naming it; in log order.
pub fn events_of(log: &[Envelope], reservation: ReservationId) -> Vec<&Envelope> {
    let own = format!("reservation-{}", reservation.as_uuid());
    let payment = format!("payment-{}", PaymentId::for_reservation(reservation).as_uuid());
    log.iter()
        .filter(|e| {
            let stream = e.stream_id.as_str();
            stream == own
                || stream == payment
                || (category(&e.stream_id) == "inventory" && reservation_of(e) == Some(reservation))
        })
        .collect()
}

/// The one event of kind `step` among `events`.
pub fn the<'a>(events: &[&'a Envelope], step: (&str, &str)) -> &'a Envelope {
    let found: Vec<_> = events.iter().filter(|e| kind(e) == step).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {}/{}: {:#?}",
        step.0,
        step.1,
        events.iter().map(|e| show(e)).collect::<Vec<_>>()
    );
    found[0]
}

/// The contract for the events one request caused: each carries `request` as correlation id;
/// those the API command wrote itself (`API_WRITTEN`) carry it as causation id; every other one
/// names as causation an earlier event of the same request, so the chain leads back to it.
/// Returns the violations. With `api_causation` false the causation of the events the API wrote
/// is not checked (for tests that look only at how requests are kept apart).
pub fn caused_by_request(events: &[&Envelope], request: Uuid, api_causation: bool) -> Vec<String> {
    let mut violations = Vec::new();
    let earlier: HashMap<Uuid, u64> = events.iter().map(|e| (e.event_id, e.global_position)).collect();
    for event in events {
        if event.metadata.correlation_id != Some(request) {
            violations.push(format!("correlation is not the request {request}: {}", show(event)));
        }
        if API_WRITTEN.contains(&kind(event)) {
            if api_causation && event.metadata.causation_id != Some(request) {
                violations.push(format!(
                    "written by the API call but causation is not the request {request}: {}",
                    show(event)
                ));
            }
        } else {
            match event.metadata.causation_id.and_then(|cause| earlier.get(&cause)) {
                Some(at) if *at < event.global_position => {}
                _ => violations.push(format!(
                    "a follow-up whose causation is not an earlier event of request {request}: {}",
                    show(event)
                )),
            }
        }
    }
    violations
}

pub fn assert_no_violations(what: &str, violations: &[String], events: &[&Envelope]) {
    assert!(
        violations.is_empty(),
        "{what}: {} metadata violations:\n{}\nevents:\n{}",
        violations.len(),
        violations.join("\n"),
        events.iter().map(|e| show(e)).collect::<Vec<_>>().join("\n")
    );
}

/// For each reservation, its `RESERVE_STEPS` events (exactly one of each) must carry the
/// correlation id `expected` gives it, and each follow-up's causation must be an earlier event
/// of the same reservation's request. A batch that wrote several reservations' events with one
/// metadata (the first command's) shows up here as another reservation's correlation id.
/// `api_causation` as in [`caused_by_request`].
pub fn assert_reserves_keep_their_correlation(
    log: &[Envelope],
    expected: &BTreeMap<ReservationId, Uuid>,
    api_causation: bool,
) {
    let mut by_reservation: HashMap<ReservationId, Vec<&Envelope>> = HashMap::new();
    for envelope in log {
        if RESERVE_STEPS.contains(&kind(envelope))
            && let Some(reservation) = reservation_of(envelope)
        {
            by_reservation.entry(reservation).or_default().push(envelope);
        }
    }
    let owner: HashMap<Uuid, ReservationId> = expected.iter().map(|(r, id)| (*id, *r)).collect();
    let mut violations = Vec::new();
    for (reservation, request) in expected {
        let events = by_reservation.get(reservation).map(Vec::as_slice).unwrap_or_default();
        for step in RESERVE_STEPS {
            let count = events.iter().filter(|e| kind(e) == step).count();
            if count != 1 {
                violations.push(format!("reservation {reservation}: {count} {}/{} events", step.0, step.1));
            }
        }
        for violation in caused_by_request(events, *request, api_causation) {
            let mixed = events
                .iter()
                .filter_map(|e| e.metadata.correlation_id)
                .filter(|c| c != request)
                .find_map(|c| owner.get(&c).map(|r| format!(" (carries the request of reservation {r})")))
                .unwrap_or_default();
            violations.push(format!("reservation {reservation}: {violation}{mixed}"));
        }
    }
    let broken: std::collections::BTreeSet<_> =
        violations.iter().filter_map(|v| v.split(':').next().map(str::to_owned)).collect();
    assert!(
        violations.is_empty(),
        "{} of {} concurrent reservations have events with another request's metadata; first violations:\n{}",
        broken.len(),
        expected.len(),
        violations.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}
