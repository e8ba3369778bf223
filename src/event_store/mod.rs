//! The event store layer: an append-only log of JSON events grouped into streams, with optimistic
//! concurrency, idempotent appends, a gap-safe global order, subscriptions, snapshots, upcasting and
//! consumer checkpoints. Backends: [`MemoryEventStore`] (default) and, with the `postgres` feature,
//! `PostgresEventStore`; every backend's `subscribe` is one shared cursor over the backend's pages,
//! and every consumer of the log (relay, read models, fan-out, the system's saga) runs under the
//! one runner [`follow`], retrying with the one [`RetryPolicy`]. Nothing in here knows about tickets.

mod append;
mod checkpoint;
mod envelope;
mod error;
mod expected_version;
mod fan_out;
mod follow;
#[cfg(feature = "postgres")]
mod group_commit;
mod memory;
mod metadata;
mod new_event;
#[cfg(feature = "postgres")]
mod postgres;
mod quarantine;
mod retry;
mod snapshot;
mod store;
mod stream_id;
mod subscription;
pub(crate) mod telemetry;
mod upcaster;

pub use append::{AppendResult, StreamAppend};
pub use checkpoint::{CheckpointStore, MemoryCheckpointStore};
pub use envelope::Envelope;
pub use error::EventStoreError;
pub use expected_version::ExpectedVersion;
pub use fan_out::FanOutEventStore;
pub use follow::{FollowConfig, FollowError, FollowStatus, LogConsumer, follow};
pub use memory::MemoryEventStore;
pub use metadata::Metadata;
pub use new_event::NewEvent;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresEventStore};
pub use quarantine::{BadEventPolicy, QUARANTINE_LISTED, QuarantinedEvent};
pub use retry::RetryPolicy;
pub use snapshot::Snapshot;
pub use store::EventStore;
pub(crate) use store::readable_prefix;
pub use stream_id::StreamId;
pub(crate) use subscription::{PageSource, subscription};
pub use upcaster::Upcasters;

/// Whether `name` is a plain lower-case SQL identifier (a letter or `_`, then letters, digits or
/// `_`, at most 63 bytes): safe to splice into a statement unquoted, and the same name unquoted
/// and quoted.
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}
