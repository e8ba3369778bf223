//! Time as a dependency: reducers read the clock from their environment and the runtime sleeps on it,
//! so tests move time forward instead of waiting for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// A source of the current time and of timers that fire against that time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// A future that completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The wall clock, with timers on tokio's timer wheel.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to. Timers waiting on it fire as soon as
/// [`FixedClock::advance`] or [`FixedClock::set`] carries the time past their deadline.
///
/// ```
/// use boxoffice::framework::{Clock, FixedClock};
/// use chrono::{TimeZone, Utc};
/// use std::time::Duration;
///
/// let start = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap();
/// let clock = FixedClock::new(start);
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now(), start + chrono::Duration::minutes(5));
/// ```
#[derive(Debug, Clone)]
pub struct FixedClock {
    time: Arc<watch::Sender<DateTime<Utc>>>,
}

impl FixedClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { time: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves time forward by `by` and fires every timer that is now due.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.time.send_modify(|now| *now = now.checked_add_signed(by).unwrap_or(*now));
    }

    /// Sets the time to `to` (which may be earlier than now) and fires every timer that is due.
    pub fn set(&self, to: DateTime<Utc>) {
        self.time.send_replace(to);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.time.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut time = self.time.subscribe();
        Box::pin(async move {
            // The sender lives as long as any clone of the clock; if every clone is gone the
            // deadline can never be reached, so the timer simply never fires.
            if time.wait_for(|now| *now >= deadline).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().unwrap_or_default()
    }

    #[tokio::test]
    async fn fixed_clock_timer_fires_only_after_advance_reaches_deadline() {
        let clock = FixedClock::new(start());
        let timer = tokio::spawn(clock.sleep_until(start() + chrono::Duration::seconds(10)));
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!timer.is_finished());
        clock.advance(Duration::from_secs(1));
        assert!(tokio::time::timeout(Duration::from_secs(5), timer).await.is_ok());
    }

    #[test]
    fn fixed_clock_set_can_move_backwards() {
        let clock = FixedClock::new(start());
        clock.advance(Duration::from_secs(60));
        clock.set(start());
        assert_eq!(clock.now(), start());
    }
}
