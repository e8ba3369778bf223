//! An event about to be appended.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event handed to [`EventStore::append`](super::EventStore::append); the store adds the stream
/// version, global position and recording time and returns it later as an [`Envelope`](super::Envelope).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Caller-chosen unique id of the event (kept as is; deduplication is done by idempotency keys).
    pub event_id: Uuid,
    /// Stable name of the event type, such as `SeatsReserved`.
    pub event_type: String,
    /// Version of the payload's shape; [`Upcasters`](super::Upcasters) lift old versions on read.
    pub schema_version: u32,
    /// The event itself as JSON.
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// An event with a fresh random id.
    ///
    /// ```
    /// use boxoffice::event_store::NewEvent;
    ///
    /// let event = NewEvent::new("SeatsReserved", 1, serde_json::json!({ "seats": 2 }));
    /// assert_eq!(event.event_type, "SeatsReserved");
    /// ```
    #[must_use]
    pub fn new(event_type: impl Into<String>, schema_version: u32, payload: serde_json::Value) -> Self {
        Self { event_id: Uuid::new_v4(), event_type: event_type.into(), schema_version, payload }
    }
}
