//! Lifting old event payloads to their current shape on read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Envelope, EventStoreError};

type UpcastFn = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// A registry of upcasters: each maps one event type's payload from schema version `n` to `n + 1`.
///
/// Backends apply the chain on every read path (stream load, global read, subscription), so stored
/// events are never rewritten and consumers only see current shapes.
///
/// ```
/// use boxoffice::event_store::Upcasters;
/// use serde_json::json;
///
/// let mut upcasters = Upcasters::new();
/// upcasters.register("SeatsReserved", 1, |mut payload| {
///     payload["currency"] = json!("EUR");
///     payload
/// });
/// let (version, payload) = upcasters.upcast("SeatsReserved", 1, json!({ "seats": 2 }))?;
/// assert_eq!(version, 2);
/// assert_eq!(payload, json!({ "seats": 2, "currency": "EUR" }));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), UpcastFn>,
}

impl Upcasters {
    /// An empty registry (reads return payloads as stored).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that lifts `event_type` from `from_schema_version` to the next version.
    pub fn register<F>(&mut self, event_type: impl Into<String>, from_schema_version: u32, step: F) -> &mut Self
    where
        F: Fn(serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    {
        self.register_fallible(event_type, from_schema_version, move |payload| Ok(step(payload)))
    }

    /// Like [`register`](Self::register) for steps that can reject a payload; the reason surfaces as
    /// [`EventStoreError::Upcast`].
    pub fn register_fallible<F>(
        &mut self,
        event_type: impl Into<String>,
        from_schema_version: u32,
        step: F,
    ) -> &mut Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        self.steps.insert((event_type.into(), from_schema_version), Arc::new(step));
        self
    }

    /// Whether no upcaster is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every registered step for `event_type` starting at `schema_version`, returning the
    /// final schema version and payload.
    ///
    /// # Errors
    /// The reason given by the first failing step.
    pub fn upcast(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<(u32, serde_json::Value), String> {
        let mut version = schema_version;
        let mut payload = payload;
        // Looking up with an owned key is avoided on the common no-upcaster path.
        if self.steps.is_empty() {
            return Ok((version, payload));
        }
        let mut key = (event_type.to_owned(), version);
        while let Some(step) = self.steps.get(&key) {
            payload = step(payload).map_err(|reason| format!("step from v{version}: {reason}"))?;
            version = version.checked_add(1).ok_or_else(|| "schema version overflow".to_owned())?;
            key.1 = version;
        }
        Ok((version, payload))
    }

    /// Upcasts an envelope in place.
    ///
    /// # Errors
    /// [`EventStoreError::Upcast`] when a step fails.
    pub fn apply(&self, envelope: &mut Envelope) -> Result<(), EventStoreError> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let payload = std::mem::take(&mut envelope.payload);
        let (version, payload) =
            self.upcast(&envelope.event_type, envelope.schema_version, payload).map_err(|reason| {
                EventStoreError::Upcast {
                    event_id: envelope.event_id,
                    event_type: envelope.event_type.clone(),
                    schema_version: envelope.schema_version,
                    reason,
                }
            })?;
        envelope.schema_version = version;
        envelope.payload = payload;
        Ok(())
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event_store::{Metadata, StreamId};

    fn envelope(event_type: &str, schema_version: u32) -> Result<Envelope, EventStoreError> {
        Ok(Envelope {
            event_id: uuid::Uuid::nil(),
            stream_id: StreamId::new("s")?,
            stream_version: 1,
            global_position: 1,
            event_type: event_type.to_owned(),
            schema_version,
            payload: json!({ "v": schema_version }),
            metadata: Metadata::default(),
            recorded_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn chains_steps_and_leaves_other_types_alone() -> Result<(), EventStoreError> {
        let mut upcasters = Upcasters::new();
        upcasters.register("A", 1, |_| json!({ "v": 2 })).register("A", 2, |_| json!({ "v": 3 }));
        let mut a = envelope("A", 1)?;
        upcasters.apply(&mut a)?;
        assert_eq!((a.schema_version, a.payload), (3, json!({ "v": 3 })));
        let mut b = envelope("B", 1)?;
        upcasters.apply(&mut b)?;
        assert_eq!((b.schema_version, b.payload), (1, json!({ "v": 1 })));
        Ok(())
    }

    #[test]
    fn a_failing_step_names_the_event() -> Result<(), EventStoreError> {
        let mut upcasters = Upcasters::new();
        upcasters.register_fallible("A", 1, |_| Err("gone".to_owned()));
        let mut a = envelope("A", 1)?;
        let error = upcasters.apply(&mut a).err();
        assert!(
            matches!(error, Some(EventStoreError::Upcast { schema_version: 1, ref event_type, .. }) if event_type == "A")
        );
        Ok(())
    }
}
