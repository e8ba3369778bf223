//! Checks over the whole log, read back from the store after the fact: what the system did,
//! not what it says it did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use boxoffice::aggregates::{InventoryAction, TicketingAction, category};
use boxoffice::domain::{PaymentId, ReservationId, SeatId};
use boxoffice::event_store::{Envelope, EventStore};
use uuid::Uuid;

use super::gateway::CountingGateway;

/// The whole global log, in order.
pub async fn read_log(store: &Arc<dyn EventStore>) -> Vec<Envelope> {
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10_000).await.unwrap();
        let Some(last) = page.last() else { return log };
        after = last.global_position;
        log.extend(page);
    }
}

/// The `reservation_id` field of an event's JSON payload (`{"<Variant>": {"reservation_id": ..}}`),
/// if it has one.
pub fn reservation_of(envelope: &Envelope) -> Option<ReservationId> {
    let fields = envelope.payload.as_object()?.values().next()?;
    let id = fields.get("reservation_id")?.as_str()?;
    Uuid::parse_str(id).ok().map(ReservationId::from_uuid)
}

/// Does the log hold an event `event_type` on a `cat` stream for `reservation`?
pub fn has(log: &[Envelope], cat: &str, event_type: &str, reservation: ReservationId) -> bool {
    log.iter().any(|e| {
        category(&e.stream_id) == cat && &*e.event_type == event_type && reservation_of(e) == Some(reservation)
    })
}

/// A compact listing of the log for assertion messages.
pub fn listing(log: &[Envelope]) -> String {
    log.iter()
        .map(|e| format!("{:>4} {}/{}", e.global_position, category(&e.stream_id), e.event_type))
        .collect::<Vec<_>>()
        .join("\n")
}

/// I11: every payment the gateway took money for is recorded as a Payment `PaymentSucceeded`.
pub fn assert_every_charge_recorded(log: &[Envelope], gateway: &CountingGateway) {
    let recorded: HashSet<PaymentId> = log
        .iter()
        .filter(|e| category(&e.stream_id) == "payment" && &*e.event_type == "PaymentSucceeded")
        .filter_map(|e| {
            let fields = e.payload.as_object()?.values().next()?;
            Uuid::parse_str(fields.get("payment_id")?.as_str()?).ok().map(PaymentId::from_uuid)
        })
        .collect();
    let lost: Vec<_> = gateway.approved().into_iter().filter(|(id, _)| !recorded.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "money taken without a record: the gateway approved {lost:?} but the log has no Payment \
         PaymentSucceeded for them\nlog:\n{}",
        listing(log)
    );
}

/// How a paid reservation ended, judged from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// `ReservationCompleted` and the inventory's `SeatsConfirmed`.
    Sold,
    /// The payment was refunded and the seats released.
    Refunded,
}

/// A reservation that was paid for ends sold (completed, seats confirmed) or refunded (refund
/// recorded, seats released); anything else is a purchase left half done.
pub fn assert_purchase_finished(log: &[Envelope], reservation: ReservationId) -> Settled {
    let completed = has(log, "reservation", "ReservationCompleted", reservation);
    let confirmed = has(log, "inventory", "SeatsConfirmed", reservation);
    let refunded = has(log, "payment", "PaymentRefunded", reservation);
    let released = has(log, "inventory", "SeatsReleased", reservation);
    match (completed, confirmed, refunded, released) {
        (true, true, false, false) => Settled::Sold,
        (_, false, true, true) => Settled::Refunded,
        _ => panic!(
            "reservation {reservation} is half done: ReservationCompleted={completed} SeatsConfirmed={confirmed} \
             PaymentRefunded={refunded} SeatsReleased={released}\nlog:\n{}",
            listing(log)
        ),
    }
}

/// I1 and I2 at every point of the log: per section, reserved + sold <= capacity, and no seat
/// is in two live holds or sales at once; a hold is released or confirmed only once.
pub fn assert_inventory_sound(log: &[Envelope]) {
    #[derive(Default)]
    struct Section {
        capacity: u32,
        holds: HashMap<ReservationId, (Vec<SeatId>, bool)>, // (seats, sold)
        taken: HashMap<SeatId, ReservationId>,
    }
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    for envelope in log.iter().filter(|e| category(&e.stream_id) == "inventory") {
        let section = sections.entry(envelope.stream_id.as_str().to_owned()).or_default();
        let at = envelope.global_position;
        match TicketingAction::decode(envelope).unwrap() {
            TicketingAction::Inventory(InventoryAction::InventoryInitialized { capacity, .. }) => {
                section.capacity = capacity.get();
            }
            TicketingAction::Inventory(InventoryAction::SeatsReserved { reservation_id, seats, .. }) => {
                let seats: Vec<SeatId> = seats.iter().map(|s| s.seat_id).collect();
                for seat in &seats {
                    if let Some(other) = section.taken.insert(*seat, reservation_id) {
                        panic!("seat {seat} held by {reservation_id} while {other} holds it (position {at})");
                    }
                }
                let before = section.holds.insert(reservation_id, (seats, false));
                assert!(before.is_none(), "reservation {reservation_id} reserved seats twice (position {at})");
            }
            TicketingAction::Inventory(InventoryAction::SeatsConfirmed { reservation_id, .. }) => {
                let hold = section.holds.get_mut(&reservation_id);
                let hold = hold.unwrap_or_else(|| panic!("{reservation_id} confirmed without a hold (position {at})"));
                assert!(!hold.1, "{reservation_id} confirmed twice (position {at})");
                hold.1 = true;
            }
            TicketingAction::Inventory(InventoryAction::SeatsReleased { reservation_id, .. }) => {
                let (seats, sold) = section
                    .holds
                    .remove(&reservation_id)
                    .unwrap_or_else(|| panic!("{reservation_id} released without a live hold (position {at})"));
                assert!(!sold, "{reservation_id} released after its seats were sold (position {at})");
                for seat in seats {
                    section.taken.remove(&seat);
                }
            }
            _ => {}
        }
        let live: u32 = section.holds.values().map(|(seats, _)| u32::try_from(seats.len()).unwrap_or(u32::MAX)).sum();
        assert!(
            live <= section.capacity,
            "oversold {}: reserved + sold = {live} > capacity {} at position {at}",
            envelope.stream_id,
            section.capacity
        );
    }
}
