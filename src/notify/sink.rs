//! [`NotificationSink`]: where notifications go out (mail, SMS, a webhook).

use async_trait::async_trait;

use super::{Notification, NotifyError};

/// Sends notifications. The [`Notifier`](super::Notifier) calls [`deliver`](Self::deliver)
/// once per notification and records the outcome; a notification may still come twice (see the
/// [module docs](super) for the window), so a sink that can pass
/// [`Notification::id`] on (as the SMTP sink's `Message-ID`) should.
///
/// ```
/// use boxoffice::notify::{Notification, NotificationSink, NotifyError};
///
/// /// Prints every notification (a demo).
/// struct Print;
///
/// #[async_trait::async_trait]
/// impl NotificationSink for Print {
///     async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
///         println!("to {}: {}", notification.recipient().email, notification.subject());
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// Sends `notification` to its [`recipient`](Notification::recipient).
    ///
    /// # Errors
    /// [`NotifyError::Refused`] or [`NotifyError::InvalidAddress`] when it can never be
    /// delivered (reported, not retried); [`NotifyError::Unavailable`] when it cannot be
    /// delivered right now (retried).
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError>;
}
