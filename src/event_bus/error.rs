//! What can go wrong while publishing or consuming.

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventBusError {
    /// The broker did not accept a message for `topic`.
    #[error("publishing to topic {topic} failed: {reason}")]
    Publish {
        /// Where the message was going.
        topic: String,
        /// What the broker or client said.
        reason: String,
    },
    /// Joining a consumer group or reading from it failed.
    #[error("consuming for group {group} failed: {reason}")]
    Consume {
        /// The consumer group involved.
        group: String,
        /// What the broker or client said.
        reason: String,
    },
    /// Committing an acknowledged offset failed; the message will be delivered again.
    #[error("committing offset {offset} of {topic}/{partition} failed: {reason}")]
    Commit {
        /// Topic of the acknowledged message.
        topic: String,
        /// Partition of the acknowledged message.
        partition: i32,
        /// Offset of the acknowledged message.
        offset: i64,
        /// What the broker or client said.
        reason: String,
    },
    /// The subscription a delivery came from is gone, so its acknowledgement cannot be recorded.
    #[error("subscription for group {group} is closed")]
    SubscriptionClosed {
        /// The consumer group of the closed subscription.
        group: String,
    },
    /// A received message could not be turned back into an envelope.
    #[error("malformed message at {topic}/{partition}@{offset}: {reason}")]
    Malformed {
        /// Topic of the message.
        topic: String,
        /// Partition of the message.
        partition: i32,
        /// Offset of the message.
        offset: i64,
        /// Which part was missing or invalid.
        reason: String,
    },
    /// No broker answered at the configured addresses.
    #[error("cannot reach the Kafka brokers {brokers} (KAFKA_BROKERS): {reason}")]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// What the client said.
        reason: String,
    },
    /// The bus configuration is invalid or incomplete.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// Creating or inspecting topics failed.
    #[error("administering topic {topic} failed: {reason}")]
    Admin {
        /// The topic involved.
        topic: String,
        /// What the broker or client said.
        reason: String,
    },
    /// A deduplication store failed.
    #[error("deduplication store failed for consumer {consumer}: {reason}")]
    Dedup {
        /// The consumer whose progress could not be read or written.
        consumer: String,
        /// What the storage said.
        reason: String,
    },
    /// The outbox relay stopped while retrying a failure, or its retry policy gave up.
    #[error("outbox relay {relay} stopped while failing")]
    Relay {
        /// The relay's checkpoint name.
        relay: String,
        /// What it was retrying.
        #[source]
        source: crate::event_store::FollowError<EventBusError>,
    },
    /// The relay's task panicked or was cancelled.
    #[error("the outbox relay task failed")]
    RelayTask(#[source] tokio::task::JoinError),
    /// The event store or checkpoint store failed.
    #[error("event store failed: {0}")]
    Store(#[from] crate::event_store::EventStoreError),
}
