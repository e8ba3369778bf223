//! Lets an API call wait for the saga to move a reservation forward, whichever process (or
//! broker consumer) does the moving: the log follower reports every reservation event it reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::aggregates::ReservationAction;
use crate::domain::ReservationId;

/// Registry of reservations someone is waiting on.
#[derive(Clone, Default)]
pub(crate) struct ReservationWatch {
    watched: Arc<Mutex<HashMap<ReservationId, Watched>>>,
}

struct Watched {
    sender: watch::Sender<Option<ReservationAction>>,
    /// Set once the gateway's answer to the reservation's charge was recorded as unknown.
    payment_unknown: watch::Sender<bool>,
    interest: usize,
}

/// A wait registered with [`ReservationWatch::watch`]; dropping it ends the interest.
pub(crate) struct ReservationWaiter {
    id: ReservationId,
    receiver: watch::Receiver<Option<ReservationAction>>,
    payment_unknown: watch::Receiver<bool>,
    registry: ReservationWatch,
}

impl ReservationWatch {
    /// Starts watching `id`. Register before sending the command whose outcome you wait for, so
    /// no event can slip past.
    #[must_use]
    pub(crate) fn watch(&self, id: ReservationId) -> ReservationWaiter {
        let mut watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = watched.entry(id).or_insert_with(|| Watched {
            sender: watch::Sender::new(None),
            payment_unknown: watch::Sender::new(false),
            interest: 0,
        });
        entry.interest += 1;
        ReservationWaiter {
            id,
            receiver: entry.sender.subscribe(),
            payment_unknown: entry.payment_unknown.subscribe(),
            registry: self.clone(),
        }
    }

    /// Reports a reservation event read from the log.
    pub(crate) fn observe(&self, event: &ReservationAction) {
        let Some(id) = event.reservation_id() else { return };
        let watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = watched.get(&id) {
            // The channel keeps only the latest event, so an ending must not be overwritten by
            // what may follow it (`SeatsReturned` when a duplicate saga step, e.g. another
            // process's, allocated seats after the reservation ended): a waiter polled later
            // would otherwise never see that the reservation ended.
            entry.sender.send_if_modified(|latest| {
                if latest.as_ref().is_some_and(|latest| stage(latest) > stage(event) || latest.is_ending()) {
                    return false;
                }
                *latest = Some(event.clone());
                true
            });
        }
    }
}

impl ReservationWatch {
    /// Reports that the gateway's answer to `id`'s charge was recorded as unknown.
    pub(crate) fn observe_payment_unknown(&self, id: ReservationId) {
        let watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = watched.get(&id) {
            entry.payment_unknown.send_replace(true);
        }
    }
}

/// How far along its life a reservation event is. Events reach the watch from two feeds (this
/// process's appends at once, and the log a moment later), so an older event can arrive after a
/// newer one; it must not replace it, or a waiter not yet polled would miss the step it waits for.
fn stage(event: &ReservationAction) -> u8 {
    match event {
        // A line of an order of several sections held: still waiting for the others.
        ReservationAction::ReservationInitiated { .. } | ReservationAction::LineSeatsHeld { .. } => 0,
        ReservationAction::SeatsAllocated { .. } => 1,
        e if e.is_ending() => 3,
        _ => 2,
    }
}

impl ReservationWaiter {
    /// Waits for an event for which `done` holds and returns it; `None` if the registry went
    /// away. Events are sampled: an intermediate one may be skipped, never the latest.
    pub(crate) async fn until(
        &mut self,
        mut done: impl FnMut(&ReservationAction) -> bool,
    ) -> Option<ReservationAction> {
        let seen = self.receiver.wait_for(|event| event.as_ref().is_some_and(&mut done)).await.ok()?;
        seen.clone()
    }
}

impl ReservationWaiter {
    /// Waits until the reservation's charge is recorded as unknown (pending forever if it never
    /// is, or the registry went away).
    pub(crate) fn payment_unknown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut unknown = self.payment_unknown.clone();
        async move {
            if unknown.wait_for(|unknown| *unknown).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for ReservationWaiter {
    fn drop(&mut self) {
        let mut watched = self.registry.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = watched.get_mut(&self.id) {
            entry.interest -= 1;
            if entry.interest == 0 {
                watched.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::{EventId, SectionName};

    #[tokio::test]
    async fn a_late_initiated_event_does_not_hide_the_seats_allocated_before_it() {
        let watch = ReservationWatch::default();
        let (reservation_id, event_id) = (ReservationId::new_v4(), EventId::new_v4());
        let section = SectionName::new("A").unwrap();
        let mut waiter = watch.watch(reservation_id);
        watch.observe(&ReservationAction::SeatsAllocated { reservation_id, seats: vec![] });
        watch.observe(&ReservationAction::ReservationInitiated {
            lines: Vec::new(),
            reservation_id,
            event_id,
            section,
            quantity: 1,
            customer_id: crate::domain::CustomerId::new_v4(),
            unit_price: crate::domain::Money::new(100, crate::domain::Currency::new("EUR").unwrap()),
            total: crate::domain::Money::new(100, crate::domain::Currency::new("EUR").unwrap()),
            expires_at: chrono::Utc::now(),
            initiated_at: chrono::Utc::now(),
            late_payment: crate::aggregates::LatePaymentPolicy::default(),
            ticket_limit: None,
        });
        let seen = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            waiter.until(|e| matches!(e, ReservationAction::SeatsAllocated { .. })),
        )
        .await
        .unwrap();
        assert!(matches!(seen, Some(ReservationAction::SeatsAllocated { .. })));
    }

    #[tokio::test]
    async fn an_ending_is_not_hidden_by_seats_returned_after_it() {
        let watch = ReservationWatch::default();
        let (reservation_id, event_id) = (ReservationId::new_v4(), EventId::new_v4());
        let section = SectionName::new("A").unwrap();
        let mut waiter = watch.watch(reservation_id);
        watch.observe(&ReservationAction::ReservationCancelled {
            lines: Vec::new(),
            reservation_id,
            event_id,
            section: section.clone(),
            seats: vec![],
            cancelled_at: chrono::Utc::now(),
            claim: None,
        });
        watch.observe(&ReservationAction::SeatsReturned { reservation_id, event_id, section, seats: vec![] });
        let seen = tokio::time::timeout(std::time::Duration::from_secs(1), waiter.until(ReservationAction::is_ending))
            .await
            .unwrap();
        assert!(matches!(seen, Some(ReservationAction::ReservationCancelled { .. })));
    }
}
