//! The inputs and outputs of appends.

use serde::{Deserialize, Serialize};

use super::{ExpectedVersion, Metadata, NewEvent, StreamId};

/// One stream's part of [`EventStore::append_batch`](super::EventStore::append_batch).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamAppend {
    /// Stream to append to.
    pub stream: StreamId,
    /// Precondition on the stream's version.
    pub expected: ExpectedVersion,
    /// Events to append, in order; must not be empty.
    pub events: Vec<NewEvent>,
    /// Metadata recorded with each event.
    pub metadata: Metadata,
    /// Optional key that makes a retry of this append a no-op returning the original result.
    pub idempotency_key: Option<String>,
}

impl StreamAppend {
    /// An append with default metadata and no idempotency key.
    #[must_use]
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self { stream, expected, events, metadata: Metadata::default(), idempotency_key: None }
    }

    /// The append that [`EventStore::append`](super::EventStore::append)'s arguments describe.
    pub(crate) fn of(
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Self {
        Self {
            stream: stream.clone(),
            expected,
            events,
            metadata: metadata.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
        }
    }
}

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppendResult {
    /// Stream version of the last appended event (the stream's new version).
    pub stream_version: u64,
    /// Global position of the first appended event.
    pub first_global_position: u64,
    /// Global position of the last appended event.
    pub last_global_position: u64,
}
