//! Gauges of the log through the [`metrics`] facade (no-ops without a recorder):
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `boxoffice_log_head` | gauge | | the highest position this process has appended or read |
//! | `boxoffice_consumer_position` | gauge | `consumer` | the last position a log consumer handled |
//! | `boxoffice_consumer_lag_events` | gauge | `consumer` | `boxoffice_log_head` minus the consumer's position |
//! | `boxoffice_quarantined_events_total` | counter | `consumer` | bad events the consumer moved past |
//!
//! `consumer` is the consumer's name (the saga's follower, each read model, the relay).

use std::sync::{Mutex, PoisonError};

/// The highest position this process has appended or read, for the lag gauges. A mutex, not an atomic: the
/// gauge must be set in the order the maximum moves, or a slower appender could set it back.
static LOG_HEAD: Mutex<u64> = Mutex::new(0);

/// This process appended or read up to `position`; returns the head.
pub(crate) fn log_head_reached(position: u64) -> u64 {
    let mut head = LOG_HEAD.lock().unwrap_or_else(PoisonError::into_inner);
    if position > *head {
        *head = position;
        #[allow(clippy::cast_precision_loss)] // positions stay far below 2^52
        metrics::gauge!("boxoffice_log_head").set(position as f64);
    }
    *head
}

/// The log consumer `consumer` has handled everything up to `position`.
pub(crate) fn consumed(consumer: &str, position: u64) {
    // An append whose acknowledgement was lost is only known here, once it is read.
    let head = log_head_reached(position);
    #[allow(clippy::cast_precision_loss)] // positions stay far below 2^52
    {
        metrics::gauge!("boxoffice_consumer_position", "consumer" => consumer.to_owned()).set(position as f64);
        metrics::gauge!("boxoffice_consumer_lag_events", "consumer" => consumer.to_owned())
            .set((head - position) as f64);
    }
}

/// The log consumer `consumer` quarantined a bad event.
pub(crate) fn quarantined(consumer: &str) {
    metrics::counter!("boxoffice_quarantined_events_total", "consumer" => consumer.to_owned()).increment(1);
}
