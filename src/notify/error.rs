//! The errors of the notification layer: a sink's ([`NotifyError`]) and the notifier's
//! ([`NotifierError`]). Each says whether it is a refusal (reported, never retried: retrying
//! cannot help) or an operational failure (retried until it passes).

use uuid::Uuid;

use super::{DirectoryError, NotificationId};
use crate::aggregates::StreamDecodeError;
use crate::domain::CustomerId;
use crate::event_store::{EventStoreError, StreamId};

/// Why a [`NotificationSink`](super::NotificationSink) did not deliver, or an address was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Not an address [`EmailAddress`](super::EmailAddress) accepts, or one the sink's
    /// transport cannot use. *Handling*: a refusal; fix the directory's entry.
    #[error("{address:?} is not a usable email address")]
    InvalidAddress {
        /// What was given.
        address: String,
    },
    /// The sink's far end refused the notification for good (an SMTP server's permanent `5xx`
    /// answer: no such mailbox, message rejected). *Handling*: a refusal; the notifier reports
    /// it, records it in its ledger and goes on.
    #[error("notification {notification_id} was refused by the sink")]
    Refused {
        /// The notification.
        notification_id: NotificationId,
        /// The far end's answer.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The sink could not deliver right now (the SMTP server is down, busy, or answered with a
    /// transient `4xx`). *Handling*: retried, the same notification, until it passes.
    #[error("notification {notification_id} could not be delivered right now")]
    Unavailable {
        /// The notification.
        notification_id: NotificationId,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl NotifyError {
    /// Whether retrying cannot help (the notification is refused, not delayed).
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::InvalidAddress { .. } | Self::Refused { .. })
    }
}

/// Why the [`Notifier`](super::Notifier) could not handle part of the log.
///
/// Under [`follow`](crate::event_store::follow) a batch that fails with an operational variant
/// is handed over again (what was delivered before is in the ledger and not sent twice); a log
/// event that can never be turned into notifications ([`NotifierError::Decode`],
/// [`NotifierError::Incomplete`]) is quarantined or halts the notifier, by its
/// [`BadEventPolicy`](crate::event_store::BadEventPolicy). Refusals
/// ([`NotifierError::NoAddress`], a [`NotifierError::Delivery`] whose cause
/// [`is_refusal`](NotifyError::is_refusal)) are not failures of the batch: they are counted in
/// [`NotifierStats`](super::NotifierStats) and shown as the notifier's last error in
/// [`health`](crate::system::TicketingSystem::health).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierError {
    /// Reading a stream, writing the ledger or saving the checkpoint failed. *Handling*: retried.
    #[error("the notifier could not use its store")]
    Store {
        /// The store's error.
        #[source]
        source: EventStoreError,
    },
    /// A log event (or one of the streams it refers to) cannot be read as a ticketing event.
    /// *Handling*: a bad event, quarantined or halting by policy.
    #[error("the notifier cannot read the log event at position {global_position}")]
    Decode {
        /// Position of the log event being handled.
        global_position: u64,
        /// What could not be read.
        #[source]
        source: StreamDecodeError,
    },
    /// A stream the log event refers to lacks what the event implies (a completed reservation
    /// whose stream has no `ReservationInitiated`). *Handling*: a bad event.
    #[error("the log event at position {global_position} refers to stream {stream}, which has no {missing}")]
    Incomplete {
        /// Position of the log event being handled.
        global_position: u64,
        /// The stream read.
        stream: StreamId,
        /// What it lacks.
        missing: &'static str,
    },
    /// A purchase's ticket codes could not be signed (the event's key could not be derived).
    /// *Handling*: retried.
    #[error("the notifier cannot sign ticket codes")]
    TicketKey {
        /// Why.
        #[source]
        source: crate::domain::TicketKeyError,
    },
    /// The customer directory could not be asked. *Handling*: retried.
    #[error("notification {notification_id}: the customer directory failed")]
    Directory {
        /// The notification.
        notification_id: NotificationId,
        /// The directory's error.
        #[source]
        source: DirectoryError,
    },
    /// The directory knows no address for the customer. *Handling*: a refusal; reported, not
    /// retried (a redelivered batch asks again).
    #[error("notification {notification_id}: no address is known for customer {customer_id}")]
    NoAddress {
        /// The notification.
        notification_id: NotificationId,
        /// The customer.
        customer_id: CustomerId,
    },
    /// The sink failed. *Handling*: retried unless the cause is a refusal.
    #[error("notification {notification_id} (caused by log event {source_event}) was not delivered")]
    Delivery {
        /// The notification.
        notification_id: NotificationId,
        /// The log event that caused it.
        source_event: Uuid,
        /// The sink's error.
        #[source]
        source: NotifyError,
    },
}

impl NotifierError {
    /// The log position of the event this error makes unhandleable, if it is such an error.
    #[must_use]
    pub fn bad_event_position(&self) -> Option<u64> {
        match self {
            Self::Decode { global_position, .. } | Self::Incomplete { global_position, .. } => Some(*global_position),
            _ => None,
        }
    }
}

impl From<EventStoreError> for NotifierError {
    fn from(source: EventStoreError) -> Self {
        Self::Store { source }
    }
}

/// Why a [`Notifier`](super::Notifier) run ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierRunError {
    /// It was retrying a failure when it was stopped, its retry policy gave up, or a bad event
    /// halted it.
    #[error("the notifier stopped unhealthy")]
    Follow(#[source] crate::event_store::FollowError<NotifierError>),
    /// Its task panicked or was aborted.
    #[error("the notifier's task failed")]
    Task(#[source] tokio::task::JoinError),
}
