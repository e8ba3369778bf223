//! Snapshots of folded stream state.

use serde::{Deserialize, Serialize};

use super::StreamId;

/// A folded state of a stream up to and including `stream_version`, so loading can start after it.
///
/// Only the snapshot with the highest version is kept per stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream the state was folded from.
    pub stream_id: StreamId,
    /// Version of the last event folded into `state`.
    pub stream_version: u64,
    /// The state as JSON text. Text, not a [`serde_json::Value`] tree: a hot section's state holds
    /// every seat, and building (then dropping) a tree of it costs several times writing the text.
    pub state: String,
    /// Version of the state's shape, so a reader can ignore snapshots it no longer understands.
    pub schema_version: u32,
}
