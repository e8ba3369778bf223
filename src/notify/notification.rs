//! [`Notification`]: what a customer is told, and the [`NotificationId`] that makes a duplicate
//! recognisable.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::EmailAddress;
use crate::domain::{CustomerId, EventId, Money, PaymentId, RefundId, ReservationId, SeatId, SectionName, TicketId};

/// Namespace of the UUID v5 that names a notification.
const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x5d0c_7a3e_91b4_4f62_8e1d_2b7f_64c9_a013);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// A purchase was completed: the customer's tickets.
    PurchaseConfirmed,
    /// Money went back to the customer.
    RefundSucceeded,
    /// An event the customer holds tickets for is called off.
    EventCancelled,
}

impl NotificationKind {
    /// The kind's name, as it is stored in the ledger.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PurchaseConfirmed => "PurchaseConfirmed",
            Self::RefundSucceeded => "RefundSucceeded",
            Self::EventCancelled => "EventCancelled",
        }
    }
}

/// Identifies one notification: the same log event, kind and customer always give the same id,
/// in every process and on every redelivery, so a duplicate is recognisable (by the
/// notifier's ledger, and downstream by the mail's `Message-ID`).
///
/// ```
/// use boxoffice::domain::CustomerId;
/// use boxoffice::notify::{NotificationId, NotificationKind};
///
/// let source = uuid::Uuid::new_v4(); // the id of the log event that caused it
/// let customer = CustomerId::new_v4();
/// let id = NotificationId::derive(source, NotificationKind::PurchaseConfirmed, customer);
/// assert_eq!(id, NotificationId::derive(source, NotificationKind::PurchaseConfirmed, customer));
/// assert_ne!(id, NotificationId::derive(source, NotificationKind::EventCancelled, customer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(Uuid);

impl NotificationId {
    /// The id of the notification of `kind` to `customer` caused by the log event `source_event`
    /// (its [`Envelope::event_id`](crate::event_store::Envelope::event_id)).
    #[must_use]
    pub fn derive(source_event: Uuid, kind: NotificationKind, customer: CustomerId) -> Self {
        let mut name = Vec::with_capacity(48);
        name.extend_from_slice(source_event.as_bytes());
        name.extend_from_slice(kind.as_str().as_bytes());
        name.extend_from_slice(customer.as_uuid().as_bytes());
        Self(Uuid::new_v5(&NOTIFICATION_NAMESPACE, &name))
    }

    /// The underlying UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Who a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The customer.
    pub customer_id: CustomerId,
    /// Their address, from the [`CustomerDirectory`](super::CustomerDirectory) when it was sent.
    pub email: EmailAddress,
}

/// The ticketed event a notification is about, as it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// The event.
    pub event_id: EventId,
    /// Its name.
    pub name: String,
    /// Its venue's name.
    pub venue: String,
    /// When it takes place.
    pub date: DateTime<Utc>,
}

/// One completed purchase: the seats a reservation bought and what was paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The section (the first line's, for an order of several sections; each ticket names its
    /// own).
    pub section: SectionName,
    /// The seats bought, in every section.
    pub seats: Vec<SeatId>,
    /// What was paid (the reservation's total when no payment amount is recorded on it).
    pub amount: Money,
}

/// A purchase went through: the customer's tickets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseConfirmation {
    /// The notification.
    pub id: NotificationId,
    /// Who it goes to.
    pub recipient: Recipient,
    /// The event.
    pub event: EventSummary,
    /// What was bought.
    pub purchase: Purchase,
    /// Its tickets with the codes that admit, when the system signs tickets (empty otherwise).
    pub tickets: Vec<TicketLine>,
}

/// One ticket in a purchase confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketLine {
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its seat's section.
    pub section: SectionName,
    /// Its seat.
    pub seat_id: SeatId,
    /// The code to show at the door (see [`TicketCode`](crate::domain::TicketCode)).
    pub code: String,
}

/// Money went back to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    /// The notification.
    pub id: NotificationId,
    /// Who it goes to.
    pub recipient: Recipient,
    /// The event.
    pub event: EventSummary,
    /// The reservation the refunded payment paid for.
    pub reservation_id: ReservationId,
    /// The payment.
    pub payment_id: PaymentId,
    /// The refund.
    pub refund_id: RefundId,
    /// How much went back.
    pub amount: Money,
    /// Why (as recorded with the refund).
    pub reason: String,
}

/// An event is called off; one notice per customer holding a completed purchase for it when it
/// was cancelled, listing all of their purchases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancellationNotice {
    /// The notification.
    pub id: NotificationId,
    /// Who it goes to.
    pub recipient: Recipient,
    /// The event.
    pub event: EventSummary,
    /// Why it was cancelled.
    pub reason: String,
    /// The customer's purchases for it (refunds follow, each with its own notice).
    pub purchases: Vec<Purchase>,
}

/// What a customer is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// From a reservation's `ReservationCompleted`.
    PurchaseConfirmed(PurchaseConfirmation),
    /// From a payment's `PaymentRefunded`.
    RefundSucceeded(RefundNotice),
    /// From an event's `EventCancelled`.
    EventCancelled(CancellationNotice),
}

impl Notification {
    /// Its id.
    #[must_use]
    pub fn id(&self) -> NotificationId {
        match self {
            Self::PurchaseConfirmed(n) => n.id,
            Self::RefundSucceeded(n) => n.id,
            Self::EventCancelled(n) => n.id,
        }
    }

    /// What it is about.
    #[must_use]
    pub fn kind(&self) -> NotificationKind {
        match self {
            Self::PurchaseConfirmed(_) => NotificationKind::PurchaseConfirmed,
            Self::RefundSucceeded(_) => NotificationKind::RefundSucceeded,
            Self::EventCancelled(_) => NotificationKind::EventCancelled,
        }
    }

    /// Who it goes to.
    #[must_use]
    pub fn recipient(&self) -> &Recipient {
        match self {
            Self::PurchaseConfirmed(n) => &n.recipient,
            Self::RefundSucceeded(n) => &n.recipient,
            Self::EventCancelled(n) => &n.recipient,
        }
    }

    /// The event it is about.
    #[must_use]
    pub fn event(&self) -> &EventSummary {
        match self {
            Self::PurchaseConfirmed(n) => &n.event,
            Self::RefundSucceeded(n) => &n.event,
            Self::EventCancelled(n) => &n.event,
        }
    }
}
