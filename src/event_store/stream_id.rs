//! The validated identifier of one event stream.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::EventStoreError;

/// The longest stream id accepted, in bytes.
pub(crate) const MAX_STREAM_ID_BYTES: usize = 200;

/// The identifier of one event stream (usually one aggregate instance, such as `inventory-<uuid>`).
///
/// A valid id is non-empty, at most 200 bytes long and contains no whitespace or
/// control characters, so it can be logged, used as a key in every backend and compared byte for byte.
/// The text is shared, so a clone (one per event read from a log) copies a pointer, not the string.
///
/// ```
/// use boxoffice::event_store::StreamId;
///
/// let id = StreamId::new("inventory-42")?;
/// assert_eq!(id.as_str(), "inventory-42");
/// assert!(StreamId::new("has space").is_err());
/// # Ok::<(), boxoffice::event_store::EventStoreError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates `value` and wraps it.
    ///
    /// # Errors
    /// [`EventStoreError::InvalidStreamId`] when the value is empty, too long, or contains whitespace or
    /// control characters.
    pub fn new(value: impl Into<String>) -> Result<Self, EventStoreError> {
        let value = value.into();
        let reason = if value.is_empty() {
            Some("must not be empty")
        } else if value.len() > MAX_STREAM_ID_BYTES {
            Some("must be at most 200 bytes")
        } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            Some("must not contain whitespace or control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(EventStoreError::InvalidStreamId { value, reason }),
            None => Ok(Self(Arc::from(value))),
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamId {
    type Error = EventStoreError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = EventStoreError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids_and_rejects_bad_ones() {
        assert!(StreamId::new("reservation-1f2e").is_ok());
        assert!(StreamId::new("a".repeat(MAX_STREAM_ID_BYTES)).is_ok());
        for bad in [String::new(), "a".repeat(MAX_STREAM_ID_BYTES + 1), "a b".into(), "a\u{0}b".into(), "a\tb".into()] {
            assert!(matches!(StreamId::new(bad), Err(EventStoreError::InvalidStreamId { .. })));
        }
    }

    #[test]
    fn serde_validates() {
        let id: Result<StreamId, _> = serde_json::from_str("\"\"");
        assert!(id.is_err());
        let id: StreamId = serde_json::from_str("\"s-1\"").unwrap_or_else(|_| StreamId(Arc::from("")));
        assert_eq!(id.as_str(), "s-1");
    }
}
