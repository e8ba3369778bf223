//! [`Health`]: how the system's background work is doing, for a readiness probe or a dashboard.

use std::sync::Arc;

use crate::event_store::{FollowStatus, QuarantinedEvent};

/// How one background consumer of the log is doing.
#[derive(Debug, Clone)]
pub struct ConsumerHealth {
    /// The consumer: the saga's follower (its checkpoint name), a read model, the relay.
    pub name: String,
    /// Every event up to here is handled (for the saga: its reactions recorded).
    pub position: u64,
    /// Events committed after `position`.
    pub lag: u64,
    /// Failed attempts it retried so far.
    pub retries: u64,
    /// The failure it is retrying right now, if any.
    pub failing: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The most recent failure (or quarantined event), kept after recovery.
    pub last_error: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// Bad events it moved past since the system started, each with its position and cause
    /// (the first [`QUARANTINE_LISTED`](crate::event_store::QUARANTINE_LISTED)); see
    /// [`BadEventPolicy`](crate::event_store::BadEventPolicy).
    pub quarantined: Vec<QuarantinedEvent>,
    /// How many bad events it moved past.
    pub quarantined_total: u64,
}

impl ConsumerHealth {
    pub(crate) fn from_status(name: impl Into<String>, status: &FollowStatus, position: u64, head: u64) -> Self {
        Self {
            name: name.into(),
            position,
            lag: head.saturating_sub(position),
            retries: status.retries,
            failing: status.failing.clone(),
            last_error: status.last_error.clone(),
            quarantined: status.quarantined.clone(),
            quarantined_total: status.quarantined_total,
        }
    }
}

/// A snapshot of the system's background work, from [`TicketingSystem::health`](super::TicketingSystem::health).
#[derive(Debug, Clone)]
pub struct Health {
    /// The last committed position of the log.
    pub head: u64,
    /// The saga's follower, each read model, with a bus the relay, with a notifier the notifier.
    pub consumers: Vec<ConsumerHealth>,
    /// Holds past their deadline that the expiry sweeper has not expired yet.
    pub overdue_holds: usize,
    /// Charges and refunds whose gateway answer is not recorded yet (reconciliation settles them).
    pub unsettled_payments: usize,
}

impl Health {
    /// Whether no consumer is failing right now.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.consumers.iter().all(|c| c.failing.is_none())
    }

    /// The consumer named `name`, if the system runs one.
    #[must_use]
    pub fn consumer(&self, name: &str) -> Option<&ConsumerHealth> {
        self.consumers.iter().find(|c| c.name == name)
    }
}
