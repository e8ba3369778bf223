//! A recorded event as every backend returns it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Metadata, StreamId};

/// A stored event with everything the store knows about it.
///
/// Numbering, identical in every backend: the first event of a stream has `stream_version` 1 (an
/// absent stream is at version 0); `global_position` starts at 1 and strictly increases in the order
/// readers of the global log observe events. Positions may have gaps (a `PostgreSQL` append that rolls
/// back burns its positions), so never assume `position + 1` exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The id given when the event was appended.
    pub event_id: Uuid,
    /// The stream the event belongs to.
    pub stream_id: StreamId,
    /// 1-based position of the event within its stream.
    pub stream_version: u64,
    /// Position in the global log (1-based, strictly increasing, possibly with gaps).
    pub global_position: u64,
    /// Stable name of the event type.
    pub event_type: String,
    /// Schema version of `payload` (after upcasting on read).
    pub schema_version: u32,
    /// The event as JSON (after upcasting on read).
    pub payload: serde_json::Value,
    /// Correlation and causation ids and headers given at append time.
    pub metadata: Metadata,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
}
