//! Stand-in for the event store contract until the `store` branch is merged.

#![allow(missing_docs, dead_code)]

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct StreamId(String);

impl StreamId {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub global_position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("event store: {0}")]
pub struct EventStoreError(pub String);

#[async_trait]
pub trait EventStore: Send + Sync {
    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>>;
}

#[async_trait]
pub trait CheckpointStore: Send + Sync {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>, EventStoreError>;
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError>;
}
