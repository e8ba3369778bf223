//! The crate's one retry policy: exponential backoff with jitter, built on `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

/// How long to wait between attempts after a failure, and when to give up.
///
/// Delays grow exponentially (factor 2) from `min_delay` up to `max_delay`, and each one gets a
/// random jitter of up to its own length, so failing consumers of one process or of many do not
/// retry in lockstep. Built on [`backon::ExponentialBuilder`].
///
/// ```
/// use std::time::Duration;
/// use boxoffice::event_store::RetryPolicy;
///
/// let policy = RetryPolicy { min_delay: Duration::from_millis(10), max_attempts: Some(3), ..RetryPolicy::default() };
/// let delays: Vec<Duration> = policy.backoff().collect();
/// assert_eq!(delays.len(), 3);
/// // 10 ms, 20 ms, 40 ms before jitter; jitter adds up to as much again.
/// assert!(delays[0] >= Duration::from_millis(10) && delays[0] <= Duration::from_millis(20));
/// assert!(delays[2] >= Duration::from_millis(40) && delays[2] <= Duration::from_millis(80));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay (before jitter).
    pub min_delay: Duration,
    /// The longest delay (before jitter).
    pub max_delay: Duration,
    /// Retries after the first failure before giving up; `None` retries until stopped.
    pub max_attempts: Option<usize>,
}

impl Default for RetryPolicy {
    /// 50 ms doubling up to 5 s, retrying until stopped.
    fn default() -> Self {
        Self { min_delay: Duration::from_millis(50), max_delay: Duration::from_secs(5), max_attempts: None }
    }
}

impl RetryPolicy {
    /// The `backon` builder this policy stands for.
    #[must_use]
    pub fn builder(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_factor(2.0)
            .with_jitter();
        match self.max_attempts {
            Some(times) => builder.with_max_times(times),
            None => builder.without_max_times(),
        }
    }

    /// A fresh sequence of delays: one per retry, ending when the policy gives up.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.builder().build()
    }
}

/// Resolves once a stop was requested or nobody can request one any more.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _closed_counts_as_stop = stop.wait_for(|stop| *stop).await;
}

/// Sleeps for `delay` unless a stop comes first; `false` when stopped.
pub(crate) async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        () = stopped(stop) => false,
        () = tokio::time::sleep(delay) => true,
    }
}
