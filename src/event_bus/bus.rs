//! The [`EventBus`] trait: publish envelopes to topics, consume them in groups.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{Delivery, EventBusError};
use crate::event_store::Envelope;

/// One message to publish: its topic, its key, the event it carries and, when the publisher
/// follows the global log, the position of the event it published just before this one.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Partitioning key; messages with one key keep their order.
    pub key: &'a str,
    /// The event.
    pub envelope: &'a Envelope,
    /// Global position of the event that precedes this one in the log (0 for the first event),
    /// stamped by the [`OutboxRelay`](super::OutboxRelay) so consumers of several topics and
    /// partitions can put events back in global order despite gaps in the positions; `None` for
    /// messages published outside the log's order. Delivered as
    /// [`Delivery::previous_position`].
    pub previous_position: Option<u64>,
}

/// A message broker that moves event envelopes between processes.
///
/// Messages with the same key land in the same partition and keep their publish order.
/// Subscribers in one consumer group share the partitions of their topics; every group sees every
/// message. A group's offset moves only when a [`Delivery`] is acknowledged, so a message that was
/// delivered but not acknowledged is delivered again after the subscription restarts
/// (at-least-once; pair with [`Deduplicator`](super::Deduplicator) for idempotent handling).
///
/// ```
/// use boxoffice::event_bus::{EventBus, MemoryEventBus};
/// use boxoffice::event_store::{Envelope, Metadata, StreamId};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let envelope = Envelope {
///     event_id: uuid::Uuid::new_v4(),
///     stream_id: StreamId::new("cart-1")?,
///     stream_version: 1,
///     global_position: 1,
///     event_type: "ItemAdded".into(),
///     schema_version: 1,
///     payload: serde_json::json!({ "sku": "A-1" }).into(),
///     metadata: Metadata::default().into(),
///     recorded_at: chrono::Utc::now(),
/// };
/// let bus = MemoryEventBus::new();
/// bus.publish("shop-cart-events", "cart-1", &envelope).await?;
///
/// let mut deliveries = bus.subscribe(&["shop-cart-events".to_owned()], "billing").await?;
/// let delivery = deliveries.next().await.expect("one message")?;
/// assert_eq!(delivery.envelope(), &envelope);
/// delivery.ack().await?; // the group's offset moves past the message only now
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes `envelope` to `topic` under `key` (without a previous position) and returns
    /// once the broker has accepted it.
    ///
    /// # Errors
    /// [`EventBusError::Publish`] when the broker did not acknowledge the message.
    async fn publish(&self, topic: &str, key: &str, envelope: &Envelope) -> Result<(), EventBusError> {
        self.publish_batch(&[Outgoing { topic, key, envelope, previous_position: None }]).await
    }

    /// Publishes several messages, keeping their order per key, and returns once all are accepted.
    /// Every field of each [`Outgoing`] reaches the subscriber's [`Delivery`].
    ///
    /// # Errors
    /// The first [`EventBusError::Publish`]; some messages of the batch may have been published.
    async fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<(), EventBusError>;

    /// Joins consumer group `group` on `topics` and streams the messages assigned to this member,
    /// starting at the group's committed offsets (the beginning for a new group).
    ///
    /// Dropping the stream leaves the group; its unacknowledged messages go to the remaining or
    /// next members.
    ///
    /// # Errors
    /// [`EventBusError::Consume`] when the group cannot be joined.
    async fn subscribe(
        &self,
        topics: &[String],
        group: &str,
    ) -> Result<BoxStream<'static, Result<Delivery, EventBusError>>, EventBusError>;
}
