//! Lifting old event payloads to their current shape on read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Envelope, EventStoreError};

type UpcastFn = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// A registry of upcasters: each maps one event type's payload from schema version `n` to `n + 1`.
///
/// Backends apply the chain on every read path (stream load, global read, subscription), so stored
/// events are never rewritten and consumers only see current shapes. A payload is copied (out of
/// the store's shared copy) only when a step actually applies to it; every other event is handed
/// out as stored.
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
    /// Steps by event type, then by the schema version they lift from; keyed by type first so a
    /// read can look its event type up by `&str` without allocating.
    steps: HashMap<String, HashMap<u32, UpcastFn>>,
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
        self.steps.entry(event_type.into()).or_default().insert(from_schema_version, Arc::new(step));
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
        let Some(steps) = self.steps.get(event_type) else { return Ok((version, payload)) };
        while let Some(step) = steps.get(&version) {
            payload = step(payload).map_err(|reason| format!("step from v{version}: {reason}"))?;
            version = version.checked_add(1).ok_or_else(|| "schema version overflow".to_owned())?;
        }
        Ok((version, payload))
    }

    /// Whether a step lifts `event_type` at `schema_version`, i.e. whether reading such an event
    /// changes its payload.
    fn lifts(&self, event_type: &str, schema_version: u32) -> bool {
        self.steps.get(event_type).is_some_and(|steps| steps.contains_key(&schema_version))
    }

    /// Upcasts an envelope in place. The payload is copied only when a step applies: an envelope
    /// no step lifts keeps sharing its payload with the store.
    ///
    /// # Errors
    /// [`EventStoreError::Upcast`] when a step fails; the envelope is then unchanged.
    pub fn apply(&self, envelope: &mut Envelope) -> Result<(), EventStoreError> {
        if !self.lifts(&envelope.event_type, envelope.schema_version) {
            return Ok(());
        }
        let payload = Arc::unwrap_or_clone(Arc::clone(&envelope.payload));
        let (version, payload) =
            self.upcast(&envelope.event_type, envelope.schema_version, payload).map_err(|reason| {
                EventStoreError::Upcast {
                    event_id: envelope.event_id,
                    global_position: envelope.global_position,
                    event_type: envelope.event_type.to_string(),
                    schema_version: envelope.schema_version,
                    reason,
                }
            })?;
        envelope.schema_version = version;
        envelope.payload = Arc::new(payload);
        Ok(())
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<(&str, u32)> = self
            .steps
            .iter()
            .flat_map(|(event_type, steps)| steps.keys().map(move |version| (event_type.as_str(), *version)))
            .collect();
        keys.sort_unstable();
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
            event_type: event_type.into(),
            schema_version,
            payload: json!({ "v": schema_version }).into(),
            metadata: Metadata::default().into(),
            recorded_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn chains_steps_and_leaves_other_types_alone() -> Result<(), EventStoreError> {
        let mut upcasters = Upcasters::new();
        upcasters.register("A", 1, |_| json!({ "v": 2 })).register("A", 2, |_| json!({ "v": 3 }));
        let stored = envelope("A", 1)?;
        let mut a = stored.clone();
        upcasters.apply(&mut a)?;
        assert_eq!((a.schema_version, &*a.payload), (3, &json!({ "v": 3 })));
        assert_eq!(*stored.payload, json!({ "v": 1 }), "the stored copy is not rewritten");
        let stored = envelope("B", 1)?;
        let mut b = stored.clone();
        upcasters.apply(&mut b)?;
        assert_eq!((b.schema_version, &*b.payload), (1, &json!({ "v": 1 })));
        assert!(Arc::ptr_eq(&b.payload, &stored.payload), "a payload no step lifts is not copied");
        let mut current = envelope("A", 3)?;
        let shared = Arc::clone(&current.payload);
        upcasters.apply(&mut current)?;
        assert!(Arc::ptr_eq(&current.payload, &shared), "a payload already current is not copied");
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
