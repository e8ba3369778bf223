//! Gauges of the log through the [`metrics`] facade (no-ops without a recorder):
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `boxoffice_log_head` | gauge | | the last position this process appended |
//! | `boxoffice_consumer_position` | gauge | `consumer` | the last position a log consumer handled |
//! | `boxoffice_consumer_lag_events` | gauge | `consumer` | `boxoffice_log_head` minus the consumer's position |
//!
//! `consumer` is the consumer's name (the saga's follower, each read model, the relay).

use std::sync::atomic::{AtomicU64, Ordering};

/// The last position this process appended, for the lag gauges.
static LOG_HEAD: AtomicU64 = AtomicU64::new(0);

/// This process appended up to `position`.
pub(crate) fn log_head_reached(position: u64) {
    let head = LOG_HEAD.fetch_max(position, Ordering::Relaxed).max(position);
    #[allow(clippy::cast_precision_loss)] // positions stay far below 2^52
    metrics::gauge!("boxoffice_log_head").set(head as f64);
}

/// The log consumer `consumer` has handled everything up to `position`.
pub(crate) fn consumed(consumer: &str, position: u64) {
    let head = LOG_HEAD.load(Ordering::Relaxed).max(position);
    #[allow(clippy::cast_precision_loss)] // positions stay far below 2^52
    {
        metrics::gauge!("boxoffice_consumer_position", "consumer" => consumer.to_owned()).set(position as f64);
        metrics::gauge!("boxoffice_consumer_lag_events", "consumer" => consumer.to_owned())
            .set((head - position) as f64);
    }
}
