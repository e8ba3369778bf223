//! Moving event envelopes between processes: the [`EventBus`] trait, an in-memory backend, a
//! Kafka backend (feature `kafka`), the [`OutboxRelay`] that publishes the event store's log, and
//! consumer-side deduplication. Nothing in here knows about tickets.

mod bus;
mod dedup;
#[cfg(feature = "postgres")]
mod dedup_postgres;
mod delivery;
mod error;
#[cfg(feature = "kafka")]
pub(crate) mod headers;
#[cfg(feature = "kafka")]
mod kafka;
mod kafka_config;
mod memory;
mod relay;
mod topic;

pub use bus::{EventBus, Outgoing};
pub use dedup::{DedupStore, Deduplicator, HandleError, Handled, MemoryDedupStore};
#[cfg(feature = "postgres")]
pub use dedup_postgres::PostgresDedupStore;
pub use delivery::{Acknowledger, Delivery, DeliveryPosition};
pub use error::{BoxError, EventBusError};
#[cfg(feature = "kafka")]
pub use kafka::KafkaEventBus;
pub use kafka_config::{KafkaCommitMode, KafkaConfig};
pub use memory::MemoryEventBus;
pub use relay::{OutboxRelay, RelayConfig, RelayHandle, RelayStats};

pub use topic::TopicRouter;
