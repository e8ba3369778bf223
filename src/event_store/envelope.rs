//! A recorded event as every backend returns it.

use std::sync::Arc;

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
///
/// The payload, event type, metadata and stream id are shared (`Arc`): a store hands the same event
/// to every reader, and cloning an envelope copies pointers rather than a JSON tree. Build the
/// shared fields with `.into()`, and decode a payload without copying it with
/// `T::deserialize(&*envelope.payload)`:
///
/// ```
/// use boxoffice::event_store::{Envelope, Metadata, StreamId};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct ItemAdded {
///     sku: String,
/// }
///
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
/// let copy = envelope.clone();
/// assert!(std::sync::Arc::ptr_eq(&copy.payload, &envelope.payload));
/// assert_eq!(&*envelope.event_type, "ItemAdded");
/// let item = ItemAdded::deserialize(&*envelope.payload)?;
/// assert_eq!(item.sku, "A-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    pub event_type: Arc<str>,
    /// Schema version of `payload` (after upcasting on read).
    pub schema_version: u32,
    /// The event as JSON (after upcasting on read), shared by every reader of the event.
    pub payload: Arc<serde_json::Value>,
    /// Correlation and causation ids and headers given at append time, shared by the events of
    /// one append.
    pub metadata: Arc<Metadata>,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
}
