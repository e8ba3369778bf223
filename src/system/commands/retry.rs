//! The one backoff policy of the runtime: exponential with full jitter, built by `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How hard an operation is retried: command batches that lost a race or met a transient storage
/// failure, and saga steps (which are retried without a limit on attempts, at this pace, until
/// they are recorded or the system stops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total for one command batch, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with jitter.
    pub min_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 10, min_delay: Duration::from_millis(2), max_delay: Duration::from_millis(200) }
    }
}

impl RetryPolicy {
    /// Backoffs for a bounded operation: `max_attempts - 1` of them.
    pub(crate) fn bounded(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.builder().with_max_times(self.max_attempts.saturating_sub(1) as usize).build()
    }

    /// Backoffs for a step that must eventually happen: as many as it takes.
    pub(crate) fn unbounded(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.builder().without_max_times().build()
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new().with_min_delay(self.min_delay).with_max_delay(self.max_delay).with_jitter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_gives_one_backoff_fewer_than_attempts_and_all_stay_under_the_cap() {
        let policy = RetryPolicy { max_attempts: 4, ..RetryPolicy::default() };
        let delays: Vec<Duration> = policy.bounded().collect();
        assert_eq!(delays.len(), 3);
        // Jitter adds up to one more delay on top of the capped one.
        assert!(delays.iter().all(|d| *d <= policy.max_delay * 2), "{delays:?}");
        assert!(policy.unbounded().take(100).count() == 100);
    }
}
