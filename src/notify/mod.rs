//! Notifications to customers, fed from the log: a purchase confirmed (with its seats), a refund
//! that went through, an event called off (one message per customer holding tickets for it).
//!
//! A [`Notifier`] follows the log with the crate's [`follow`](crate::event_store::follow) runner
//! and its checkpoint in a [`CheckpointStore`](crate::event_store::CheckpointStore). For each
//! `ReservationCompleted`, `PaymentRefunded` and `EventCancelled` it builds the
//! [`Notification`]s the event calls for (reading the streams that hold the customer and the
//! details), asks the application's [`CustomerDirectory`] for the customer's address (the crate
//! never stores addresses) and hands each to a [`NotificationSink`]: [`RecordingSink`] in memory,
//! or, with the `smtp` feature, `SmtpSink`, which mails it.
//!
//! Delivery is **at least once and deduplicated**:
//! - the checkpoint moves only after every notification of a batch was delivered (or refused), so
//!   a crash or a failed delivery hands the batch over again;
//! - before sending, a notifier *claims* the notification's [`NotificationId`] (stable: a UUID v5
//!   of the log event that caused it, its kind and its customer) by appending to the stream
//!   `notified-<id>` of its ledger store with
//!   [`ExpectedVersion::NoStream`](crate::event_store::ExpectedVersion::NoStream); after sending
//!   it appends the outcome. A notification already marked delivered is skipped; one claimed by
//!   another notifier that is still within its lease ([`NotifierConfig::claim_lease`]) is waited
//!   for, so two notifiers over one store (two processes) send it once and neither moves its
//!   checkpoint past a notification that might still be lost;
//! - the mail's `Message-ID` is derived from the [`NotificationId`], so a mail server or client
//!   can drop a duplicate too.
//!
//! One window remains, as in any at-least-once sender: a notifier that crashes after the sink
//! accepted a notification and before its outcome is recorded leaves a claim with no outcome;
//! once the claim's lease has run out, the next notifier sends the notification again (with the
//! same `Message-ID`).
//!
//! The ledger is an [`EventStore`](crate::event_store::EventStore): by default the system's own,
//! whose log then holds the `notified-*` streams (no ticketing consumer reads them). With an
//! event bus, pass a store of its own to
//! [`TicketingSystemBuilder::notification_ledger`](crate::system::TicketingSystemBuilder::notification_ledger)
//! so that the relay does not publish them.

mod address;
mod compose;
mod directory;
mod error;
mod ledger;
mod notification;
mod recording;
mod runner;
mod sink;
#[cfg(feature = "smtp")]
mod smtp;
#[cfg(feature = "smtp")]
mod smtp_config;
mod text;

pub use address::EmailAddress;
pub use directory::{CustomerDirectory, DirectoryError};
pub use error::{NotifierError, NotifierRunError, NotifyError};
pub use ledger::NOTIFIED_CATEGORY;
pub use notification::{
    CancellationNotice, EventSummary, Notification, NotificationId, NotificationKind, Purchase, PurchaseConfirmation,
    Recipient, RefundNotice, TicketLine,
};
pub use recording::RecordingSink;
pub use runner::{Notifier, NotifierConfig, NotifierHandle, NotifierStats};
pub use sink::NotificationSink;
#[cfg(feature = "smtp")]
pub use smtp::SmtpSink;
#[cfg(feature = "smtp")]
pub use smtp_config::{SmtpConfig, SmtpConfigError};
