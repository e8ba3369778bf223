//! One message handed to a subscriber, and how it is acknowledged.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::EventBusError;
use crate::event_store::Envelope;

/// Where a delivered message sits in the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryPosition {
    /// Topic the message was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// Records that a subscriber has handled a message, so its group does not see it again.
///
/// Backends implement this; users call [`Delivery::ack`].
#[async_trait]
pub trait Acknowledger: Send + Sync {
    /// Commits the group's offset past `position`.
    async fn acknowledge(&self, position: &DeliveryPosition) -> Result<(), EventBusError>;
}

/// A message received from a subscription.
///
/// Dropping a delivery without calling [`ack`](Self::ack) leaves its offset uncommitted: the
/// group receives it again after the subscription restarts (at-least-once). As in Kafka, the
/// committed offset is per partition, so acknowledging a message also acknowledges the earlier
/// messages of its partition; acknowledge in the order messages arrive.
pub struct Delivery {
    envelope: Envelope,
    key: String,
    previous_position: Option<u64>,
    position: DeliveryPosition,
    acknowledger: Arc<dyn Acknowledger>,
}

impl Delivery {
    /// Assembles a delivery; used by bus backends, which pass on the publisher's
    /// [`Outgoing::previous_position`](super::Outgoing::previous_position).
    #[must_use]
    pub fn new(
        envelope: Envelope,
        key: String,
        previous_position: Option<u64>,
        position: DeliveryPosition,
        acknowledger: Arc<dyn Acknowledger>,
    ) -> Self {
        Self { envelope, key, previous_position, position, acknowledger }
    }

    /// The event carried by the message.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The message key (the stream id when published by the relay).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Global position of the event published just before this one, as stamped by the
    /// [`OutboxRelay`](super::OutboxRelay) (0 for the first event of the log); `None` when the
    /// publisher did not follow the log.
    #[must_use]
    pub fn previous_position(&self) -> Option<u64> {
        self.previous_position
    }

    /// Topic the message was read from.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.position.topic
    }

    /// Partition the message was read from.
    #[must_use]
    pub fn partition(&self) -> i32 {
        self.position.partition
    }

    /// Offset of the message within its partition.
    #[must_use]
    pub fn offset(&self) -> i64 {
        self.position.offset
    }

    /// Topic, partition and offset together.
    #[must_use]
    pub fn position(&self) -> &DeliveryPosition {
        &self.position
    }

    /// Marks the message handled: the group's committed offset moves past it.
    ///
    /// # Errors
    /// [`EventBusError::Commit`] when the broker refused the commit and
    /// [`EventBusError::SubscriptionClosed`] when the subscription is gone; in both cases the
    /// message will be delivered again.
    pub async fn ack(self) -> Result<Envelope, EventBusError> {
        self.acknowledger.acknowledge(&self.position).await?;
        Ok(self.envelope)
    }

    /// Gives up the message without acknowledging it.
    #[must_use]
    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("position", &self.position)
            .field("key", &self.key)
            .field("previous_position", &self.previous_position)
            .field("event_id", &self.envelope.event_id)
            .finish_non_exhaustive()
    }
}
