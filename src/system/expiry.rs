//! Durable expiry of holds. Deadlines come from `expires_at` in the log (the follower feeds
//! every `ReservationInitiated` it reads, from the start of the log after a restart), so a hold
//! taken before a crash still expires after it. The timer runs on the injected clock.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::aggregates::ReservationAction;
use crate::domain::ReservationId;
use crate::framework::Clock;

/// Pending reservation deadlines.
#[derive(Clone)]
pub struct ExpiryIndex {
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
    deadline_of: HashMap<ReservationId, DateTime<Utc>>,
}

impl ExpiryIndex {
    /// An empty index on `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Arc::new(Inner { clock, pending: Mutex::new(Pending::default()), changed: Notify::new() }) }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tracks a reservation event read from the log: an initiation arms its deadline, an ending
    /// disarms it.
    pub fn observe(&self, event: &ReservationAction) {
        match event {
            ReservationAction::ReservationInitiated { reservation_id, expires_at, .. } => {
                let mut pending = self.pending();
                if pending.deadline_of.insert(*reservation_id, *expires_at).is_none() {
                    pending.by_deadline.insert((*expires_at, *reservation_id));
                }
                drop(pending);
                self.inner.changed.notify_waiters();
            }
            ending if ending.is_ending() => {
                if let Some(reservation_id) = ending.reservation_id() {
                    self.forget(reservation_id);
                }
            }
            _ => {}
        }
    }

    /// Stops tracking `reservation` (it was expired, or turned out not to need expiring).
    pub fn forget(&self, reservation: ReservationId) {
        let mut pending = self.pending();
        if let Some(deadline) = pending.deadline_of.remove(&reservation) {
            pending.by_deadline.remove(&(deadline, reservation));
        }
    }

    /// Reservations whose deadline has passed and that have not ended, earliest first.
    #[must_use]
    pub fn due(&self) -> Vec<ReservationId> {
        let now = self.inner.clock.now();
        self.pending().by_deadline.iter().take_while(|(deadline, _)| *deadline <= now).map(|(_, id)| *id).collect()
    }

    /// How many reservations are still pending.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending().deadline_of.len()
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until some pending deadline has passed (returns at once if one has).
    pub async fn next_due(&self) {
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
            reservation_id: id,
            event_id: EventId::new_v4(),
            section: SectionName::new("A").unwrap(),
            quantity: 1,
            customer_id: CustomerId::new_v4(),
            unit_price: price,
            total: price,
            expires_at,
            initiated_at: expires_at - chrono::Duration::minutes(5),
        }
    }

    #[tokio::test]
    async fn deadline_fires_on_the_injected_clock_and_ending_disarms_it() {
        let start = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let clock = FixedClock::new(start);
        let index = ExpiryIndex::new(Arc::new(clock.clone()));
        let (a, b) = (ReservationId::new_v4(), ReservationId::new_v4());
        index.observe(&initiated(a, start + chrono::Duration::minutes(5)));
        index.observe(&initiated(b, start + chrono::Duration::minutes(5)));
        index.observe(&ReservationAction::ReservationCancelled {
            reservation_id: b,
            event_id: EventId::new_v4(),
            section: SectionName::new("A").unwrap(),
            seats: vec![],
            cancelled_at: start,
        });
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
        assert_eq!(index.due(), vec![a]);
        assert_eq!(index.len(), 1);
    }
}
