//! What can go wrong while publishing or consuming.

/// The cause of a failure, as the client or storage reported it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventBusError {
    /// The broker did not accept a message for `topic`.
    #[error("publishing to topic {topic} failed")]
    Publish {
        /// Where the message was going.
        topic: String,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
    },
    /// Joining a consumer group or reading from it failed.
    #[error("consuming for group {group} failed")]
    Consume {
        /// The consumer group involved.
        group: String,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
    },
    /// Committing an acknowledged offset failed; the message will be delivered again.
    #[error("committing offset {offset} of {topic}/{partition} failed")]
    Commit {
        /// Topic of the acknowledged message.
        topic: String,
        /// Partition of the acknowledged message.
        partition: i32,
        /// Offset of the acknowledged message.
        offset: i64,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
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
    #[error("cannot reach the Kafka brokers {brokers} (KAFKA_BROKERS)")]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
    },
    /// The bus configuration is invalid or incomplete.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// Creating or inspecting topics failed.
    #[error("administering topic {topic} failed")]
    Admin {
        /// The topic involved.
        topic: String,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
    },
    /// A deduplication store failed.
    #[error("deduplication store failed for consumer {consumer}")]
    Dedup {
        /// The consumer whose progress could not be read or written.
        consumer: String,
        /// What the broker, client or storage said.
        #[source]
        source: BoxError,
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
