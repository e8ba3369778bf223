//! One event as the in-memory log keeps it: compact once it is old.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::{Envelope, EventStoreError, Metadata, StreamId};
use super::texts::{Text, TextSpan};

/// How many of the most recent events keep their payload as a JSON tree beside its text, unless
/// [`MemoryEventStore::with_tree_window`](super::MemoryEventStore::with_tree_window) says otherwise.
///
/// A tree costs several times its text (every object a map node of its own, every key and
/// string a heap allocation: about 3 KB for a `SeatsReserved` of four seats against 0.4 KB of
/// text). Live readers (the saga's follower, the read models, a stream's worker catching up)
/// read within the last few pages of the log, so they keep reading pointers; a reader of older
/// events (a rebuild, a replay) parses each one from its text.
pub(super) const TREE_WINDOW: usize = 16_384;

/// One recorded event. Its global position is its index in the log plus one.
#[derive(Clone, Debug)]
pub(super) struct Logged {
    pub(super) event_id: Uuid,
    pub(super) stream_id: StreamId,
    pub(super) stream_version: u64,
    /// Shared by every event of the type (the log interns them).
    pub(super) event_type: Arc<str>,
    pub(super) schema_version: u32,
    /// Where the payload's JSON text is, kept for every event.
    pub(super) text: TextSpan,
    /// The payload as a tree, while the event is among the last few thousand
    /// ([`TREE_WINDOW`] by default).
    pub(super) tree: Option<Arc<serde_json::Value>>,
    /// Shared by the events of one append.
    pub(super) metadata: Arc<Metadata>,
    pub(super) recorded_at: DateTime<Utc>,
}

impl Logged {
    /// The envelope a reader gets: the tree shared while the event is recent, else parsed from
    /// `text`, the event's text taken out of the log with it (parsed outside the store's lock).
    pub(super) fn into_envelope(self, global_position: u64, text: Option<Text>) -> Result<Envelope, EventStoreError> {
        let payload = match (self.tree, text) {
            (Some(tree), _) => tree,
            (None, text) => {
                let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| EventStoreError::Corrupt {
                    global_position,
                    source,
                };
                // Validating the UTF-8 once, ahead, is faster than the parser checking each string.
                let text = std::str::from_utf8(text.as_ref().map_or(&[][..], Text::bytes))
                    .map_err(|error| corrupt(Box::new(error)))?;
                Arc::new(serde_json::from_str(text).map_err(|error| corrupt(Box::new(error)))?)
            }
        };
        Ok(Envelope {
            event_id: self.event_id,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            global_position,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        })
    }
}
