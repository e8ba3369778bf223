//! How a message travels: its envelope and previous position as headers, its payload as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::DateTime;
use uuid::Uuid;

use super::Outgoing;
use crate::event_store::{Envelope, Metadata, StreamId};

/// Header with the event id.
pub const EVENT_ID: &str = "event-id";
/// Header with the event type.
pub const EVENT_TYPE: &str = "event-type";
/// Header with the payload's schema version.
pub const SCHEMA_VERSION: &str = "schema-version";
/// Header with the correlation id, when there is one.
pub const CORRELATION_ID: &str = "correlation-id";
/// Header with the causation id, when there is one.
pub const CAUSATION_ID: &str = "causation-id";
/// Header with the node that appended the event, when there is one.
pub const NODE_ID: &str = "node-id";
/// Header with the stream id.
pub const STREAM_ID: &str = "stream-id";
/// Header with the version of the event within its stream.
pub const STREAM_VERSION: &str = "stream-version";
/// Header with the event's position in the global log.
pub const GLOBAL_POSITION: &str = "global-position";
/// Header with the global position of the event published just before this one (see
/// [`Outgoing::previous_position`]).
pub const PREVIOUS_POSITION: &str = "previous-position";
/// Header with the commit time (RFC 3339).
pub const RECORDED_AT: &str = "recorded-at";
/// Prefix of headers copied from the envelope's metadata headers.
pub const METADATA_PREFIX: &str = "meta-";

/// The headers that describe `message`'s envelope and previous position, in a stable order.
#[must_use]
pub fn message_headers(message: &Outgoing<'_>) -> Vec<(String, String)> {
    let envelope = message.envelope;
    let mut headers = vec![
        (EVENT_ID.to_owned(), envelope.event_id.to_string()),
        (EVENT_TYPE.to_owned(), envelope.event_type.to_string()),
        (SCHEMA_VERSION.to_owned(), envelope.schema_version.to_string()),
        (STREAM_ID.to_owned(), envelope.stream_id.as_str().to_owned()),
        (STREAM_VERSION.to_owned(), envelope.stream_version.to_string()),
        (GLOBAL_POSITION.to_owned(), envelope.global_position.to_string()),
        (RECORDED_AT.to_owned(), envelope.recorded_at.to_rfc3339()),
    ];
    if let Some(previous) = message.previous_position {
        headers.push((PREVIOUS_POSITION.to_owned(), previous.to_string()));
    }
    if let Some(id) = envelope.metadata.correlation_id {
        headers.push((CORRELATION_ID.to_owned(), id.to_string()));
    }
    if let Some(id) = envelope.metadata.causation_id {
        headers.push((CAUSATION_ID.to_owned(), id.to_string()));
    }
    if let Some(id) = envelope.metadata.node_id {
        headers.push((NODE_ID.to_owned(), id.to_string()));
    }
    for (name, value) in &envelope.metadata.headers {
        headers.push((format!("{METADATA_PREFIX}{name}"), value.clone()));
    }
    headers
}

/// The previous position carried by `headers`, if any.
///
/// # Errors
/// A description of the header when it is present but not a number.
pub fn previous_position(headers: &[(String, String)]) -> Result<Option<u64>, String> {
    headers
        .iter()
        .find(|(name, _)| name == PREVIOUS_POSITION)
        .map(|(_, value)| value.parse().map_err(|e| format!("header {PREVIOUS_POSITION}: {e}")))
        .transpose()
}

/// Rebuilds an envelope from its headers and JSON payload; the error names what was wrong.
///
/// # Errors
/// A description of the first missing or unparsable header, or of an invalid payload.
pub fn envelope_from_parts(headers: &[(String, String)], payload: &[u8]) -> Result<Envelope, String> {
    let mut map = BTreeMap::new();
    let mut extra = BTreeMap::new();
    for (name, value) in headers {
        if let Some(name) = name.strip_prefix(METADATA_PREFIX) {
            extra.insert(name.to_owned(), value.clone());
        } else {
            map.insert(name.as_str(), value.as_str());
        }
    }
    let get = |name: &str| map.get(name).copied().ok_or_else(|| format!("missing header {name}"));
    let uuid = |name: &str| -> Result<Option<Uuid>, String> {
        map.get(name).map(|v| Uuid::parse_str(v).map_err(|e| format!("header {name}: {e}"))).transpose()
    };
    let number = |name: &str| -> Result<u64, String> { get(name)?.parse().map_err(|e| format!("header {name}: {e}")) };
    let event_id = uuid(EVENT_ID)?.ok_or_else(|| format!("missing header {EVENT_ID}"))?;
    let schema_version = get(SCHEMA_VERSION)?.parse::<u32>().map_err(|e| format!("header {SCHEMA_VERSION}: {e}"))?;
    let recorded_at =
        DateTime::parse_from_rfc3339(get(RECORDED_AT)?).map_err(|e| format!("header {RECORDED_AT}: {e}"))?.to_utc();
    let payload = serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
    Ok(Envelope {
        event_id,
        stream_id: StreamId::new(get(STREAM_ID)?).map_err(|e| format!("header {STREAM_ID}: {e}"))?,
        stream_version: number(STREAM_VERSION)?,
        global_position: number(GLOBAL_POSITION)?,
        event_type: get(EVENT_TYPE)?.into(),
        schema_version,
        payload: Arc::new(payload),
        metadata: Arc::new(Metadata {
            correlation_id: uuid(CORRELATION_ID)?,
            causation_id: uuid(CAUSATION_ID)?,
            node_id: uuid(NODE_ID)?,
            headers: extra,
        }),
        recorded_at,
    })
}
