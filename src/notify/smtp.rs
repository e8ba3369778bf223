//! [`SmtpSink`]: mails notifications as plain text over SMTP (feature `smtp`, with `lettre`).

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{EmailAddress, Notification, NotificationSink, NotifyError, SmtpConfig};

/// Sends each notification as one plain-text mail ([`Notification::subject`],
/// [`Notification::body`]) to its recipient, with a `Message-ID` derived from its
/// [`NotificationId`](super::NotificationId) (`<id@domain of the sender>`), so that a
/// notification sent twice (see the [module docs](super)) is recognisable downstream.
///
/// A permanent SMTP answer (`5xx`) is a refusal ([`NotifyError::Refused`]); a transient one, a
/// connection failure or a timeout is [`NotifyError::Unavailable`] and the notifier retries.
#[derive(Clone)]
pub struct SmtpSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// A sink sending through the server `config` names. Connects on each delivery.
    ///
    /// # Errors
    /// [`NotifyError::InvalidAddress`] when the sender's address is not one SMTP can use.
    pub fn new(config: &SmtpConfig) -> Result<Self, NotifyError> {
        let from = address(&config.from)?;
        let domain = from.domain().to_owned();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            .port(config.port)
            .timeout(Some(config.timeout))
            .build();
        Ok(Self { transport, from: Mailbox::new(None, from), domain })
    }

    /// The `Message-ID` of `notification`'s mail.
    #[must_use]
    pub fn message_id(&self, notification: &Notification) -> String {
        format!("<{}@{}>", notification.id(), self.domain)
    }
}

fn address(email: &EmailAddress) -> Result<Address, NotifyError> {
    email.as_str().parse().map_err(|_| NotifyError::InvalidAddress { address: email.to_string() })
}

#[async_trait]
impl NotificationSink for SmtpSink {
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        let notification_id = notification.id();
        let to = Mailbox::new(None, address(&notification.recipient().email)?);
        let mail = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(notification.subject())
            .message_id(Some(self.message_id(notification)))
            .header(ContentType::TEXT_PLAIN)
            .body(notification.body())
            .map_err(|source| NotifyError::Refused { notification_id, source: Box::new(source) })?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(source) if source.is_permanent() => {
                Err(NotifyError::Refused { notification_id, source: Box::new(source) })
            }
            Err(source) => Err(NotifyError::Unavailable { notification_id, source: Box::new(source) }),
        }
    }
}
