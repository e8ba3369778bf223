//! Bad events: what a log reader does with a stored event it can never apply (invariant I14).

use std::sync::Arc;

/// What [`follow`](super::follow) does with a bad event: one the store cannot decode (or upcast),
/// or one the consumer says it can never apply (a payload of the wrong shape, a schema version
/// newer than this release reads). Retrying cannot help with either, so the choice is between
/// moving on and stopping.
///
/// ```
/// use boxoffice::event_store::{BadEventPolicy, FollowConfig};
///
/// let strict = FollowConfig { bad_events: BadEventPolicy::Halt, ..FollowConfig::default() };
/// assert_eq!(FollowConfig::default().bad_events, BadEventPolicy::Quarantine);
/// # let _ = strict;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BadEventPolicy {
    /// Report the event (an `error` trace, the `boxoffice_quarantined_events_total` counter and
    /// [`FollowStatus::quarantined`](super::FollowStatus::quarantined)) and go on with the next
    /// one: one bad row never stops the log. The default.
    #[default]
    Quarantine,
    /// Stop the consumer at the event, loudly (an `error` trace, the failure in
    /// [`FollowStatus::failing`](super::FollowStatus::failing), and
    /// [`FollowError::BadEvent`](super::FollowError::BadEvent) as the run's result), for readers
    /// that must not go on without it.
    Halt,
}

/// A bad event a consumer moved past under [`BadEventPolicy::Quarantine`]. The event stays in
/// the log untouched; this is the report of where it is and why it was not applied.
#[derive(Debug, Clone)]
pub struct QuarantinedEvent {
    /// Its global position.
    pub global_position: u64,
    /// Why it could not be read or applied.
    pub cause: Arc<dyn std::error::Error + Send + Sync>,
}

/// Most quarantined events a [`FollowStatus`](super::FollowStatus) lists (the earliest are
/// kept); [`FollowStatus::quarantined_total`](super::FollowStatus::quarantined_total) counts them
/// all.
pub const QUARANTINE_LISTED: usize = 100;
