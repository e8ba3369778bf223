//! Durable expiry of holds. Deadlines come from `expires_at` in the log: the follower feeds every
//! `ReservationInitiated` it reads, and saves the open deadlines with its checkpoint (see
//! [`ExpiryIndex::open_holds`]), so a restarted process re-arms holds taken before a crash
//! without re-reading the log from its start. The timer runs on the injected clock.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::aggregates::ReservationAction;
use crate::domain::ReservationId;
use crate::framework::Clock;

/// Pending reservation deadlines.
#[derive(Clone)]
pub(crate) struct ExpiryIndex {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    pending: Mutex<Pending>,
    changed: Notify,
}

#[derive(Default)]
struct Pending {
    by_deadline: BTreeSet<(DateTime<Utc>, ReservationId)>,
    hold_of: HashMap<ReservationId, OpenHold>,
}

/// A hold whose deadline has not been acted on, with the ids its expiry is recorded under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenHold {
    /// The reservation.
    pub(crate) reservation_id: ReservationId,
    /// When it runs out.
    pub(crate) expires_at: DateTime<Utc>,
    /// The correlation id of the request that took the hold.
    pub(crate) correlation_id: Uuid,
    /// The `ReservationInitiated` event, the cause of the expiry.
    pub(crate) initiated_event: Uuid,
}

impl ExpiryIndex {
    /// An empty index on `clock`.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Arc::new(Inner { clock, pending: Mutex::new(Pending::default()), changed: Notify::new() }) }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tracks a reservation event read from the log (stored as `event_id` under
    /// `correlation_id`): an initiation arms its deadline, an ending disarms it.
    pub(crate) fn observe(&self, event: &ReservationAction, event_id: Uuid, correlation_id: Uuid) {
        match event {
            ReservationAction::ReservationInitiated { reservation_id, expires_at, .. } => self.arm(OpenHold {
                reservation_id: *reservation_id,
                expires_at: *expires_at,
                correlation_id,
                initiated_event: event_id,
            }),
            ending if ending.is_ending() => {
                if let Some(reservation_id) = ending.reservation_id() {
                    self.forget(reservation_id);
                }
            }
            _ => {}
        }
    }

    /// Arms the deadline of `hold` (again, after a restart).
    pub(crate) fn arm(&self, hold: OpenHold) {
        let mut pending = self.pending();
        if pending.hold_of.insert(hold.reservation_id, hold).is_none() {
            pending.by_deadline.insert((hold.expires_at, hold.reservation_id));
        }
        drop(pending);
        self.inner.changed.notify_waiters();
    }

    /// Stops tracking `reservation` (it was expired, or turned out not to need expiring).
    pub(crate) fn forget(&self, reservation: ReservationId) {
        let mut pending = self.pending();
        if let Some(hold) = pending.hold_of.remove(&reservation) {
            pending.by_deadline.remove(&(hold.expires_at, reservation));
        }
    }

    /// Holds whose deadline has passed and that have not ended, earliest first.
    pub(crate) fn due(&self) -> Vec<OpenHold> {
        let now = self.inner.clock.now();
        let pending = self.pending();
        pending
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .filter_map(|(_, id)| pending.hold_of.get(id).copied())
            .collect()
    }

    /// Every open hold: what the follower saves beside its checkpoint.
    pub(crate) fn open_holds(&self) -> Vec<OpenHold> {
        self.pending().hold_of.values().copied().collect()
    }

    /// How many reservations are still pending.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending().hold_of.len()
    }

    /// Waits until some pending deadline has passed (returns at once if one has).
    pub(crate) async fn next_due(&self) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next = self.pending().by_deadline.first().map(|(deadline, _)| *deadline);
            match next {
                Some(deadline) if deadline <= self.inner.clock.now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = self.inner.clock.sleep_until(deadline) => return,
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::{CustomerId, EventId, Money, SectionName};
    use crate::framework::FixedClock;
    use chrono::TimeZone;
    use std::time::Duration;

    fn initiated(id: ReservationId, expires_at: DateTime<Utc>) -> ReservationAction {
        let price = Money::new(1_000, crate::domain::Currency::new("EUR").unwrap());
        ReservationAction::ReservationInitiated {
            lines: Vec::new(),
            reservation_id: id,
            event_id: EventId::new_v4(),
            section: SectionName::new("A").unwrap(),
            quantity: 1,
            customer_id: CustomerId::new_v4(),
            unit_price: price,
            total: price,
            expires_at,
            initiated_at: expires_at - chrono::Duration::minutes(5),
            late_payment: crate::aggregates::LatePaymentPolicy::default(),
            ticket_limit: None,
        }
    }

    #[tokio::test]
    async fn deadline_fires_on_the_injected_clock_and_ending_disarms_it() {
        let start = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let clock = FixedClock::new(start);
        let index = ExpiryIndex::new(Arc::new(clock.clone()));
        let (a, b) = (ReservationId::new_v4(), ReservationId::new_v4());
        let ids = (Uuid::new_v4(), Uuid::new_v4());
        index.observe(&initiated(a, start + chrono::Duration::minutes(5)), ids.0, ids.1);
        index.observe(&initiated(b, start + chrono::Duration::minutes(5)), ids.0, ids.1);
        index.observe(
            &ReservationAction::ReservationCancelled {
                lines: Vec::new(),
                reservation_id: b,
                event_id: EventId::new_v4(),
                section: SectionName::new("A").unwrap(),
                seats: vec![],
                cancelled_at: start,
                claim: None,
            },
            ids.0,
            ids.1,
        );
        assert!(index.due().is_empty());
        let waiting = tokio::spawn({
            let index = index.clone();
            async move { index.next_due().await }
        });
        clock.advance(Duration::from_secs(299));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(index.due().iter().map(|h| h.reservation_id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(index.len(), 1);
        let restored = ExpiryIndex::new(Arc::new(clock.clone()));
        for hold in index.open_holds() {
            restored.arm(hold);
        }
        assert_eq!(restored.due(), index.due(), "open holds re-arm the same deadlines");
    }
}
