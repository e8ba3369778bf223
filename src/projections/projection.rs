//! The `Projection` trait: a read model folded from the global log, idempotently.

use crate::event_store::Envelope;

use super::ProjectionError;

/// A read model built by folding the events of the global log, in order.
///
/// Implementors write [`handle`](Self::handle) (what one event does to the model) and keep the
/// last applied global position; callers use [`apply`](Self::apply), which makes every event count
/// once: an envelope at or below [`position`](Self::position) is ignored (redelivery after a crash
/// between applying and checkpointing, or a replay over a model that already has the event), and
/// every other envelope advances the position, whether the model handles its type or not.
/// Global positions strictly increase in the order the log is read, so this one number is enough
/// to make at-least-once delivery exactly-once in effect (invariant I8).
///
/// The trait takes the stored [`Envelope`] rather than a decoded ticketing action because the
/// position that makes it idempotent lives there, because users' own read models may follow
/// streams that are not ticketing aggregates, and because a model can skip an event by its
/// `event_type` string before paying for decoding its JSON payload.
///
/// ```
/// use boxoffice::event_store::Envelope;
/// use boxoffice::projections::{Projection, ProjectionError};
///
/// /// Counts reserved seats events.
/// #[derive(Default)]
/// struct ReservationsSeen {
///     count: u64,
///     position: u64,
/// }
///
/// impl Projection for ReservationsSeen {
///     fn name(&self) -> &str {
///         "reservations-seen"
///     }
///     fn event_types(&self) -> &[&str] {
///         &["SeatsReserved"]
///     }
///     fn position(&self) -> u64 {
///         self.position
///     }
///     fn set_position(&mut self, position: u64) {
///         self.position = position;
///     }
///     fn handle(&mut self, _envelope: &Envelope) -> Result<(), ProjectionError> {
///         self.count += 1;
///         Ok(())
///     }
///     fn reset(&mut self) {
///         *self = Self::default();
///     }
/// }
///
/// # fn envelope(position: u64, event_type: &str) -> Envelope {
/// #     Envelope {
/// #         event_id: uuid::Uuid::new_v4(),
/// #         stream_id: boxoffice::event_store::StreamId::new("inventory-1").unwrap(),
/// #         stream_version: position,
/// #         global_position: position,
/// #         event_type: event_type.into(),
/// #         schema_version: 1,
/// #         payload: serde_json::Value::Null.into(),
/// #         metadata: Default::default(),
/// #         recorded_at: chrono::Utc::now(),
/// #     }
/// # }
/// let mut seen = ReservationsSeen::default();
/// let log = [envelope(1, "SeatsReserved"), envelope(2, "SeatsConfirmed"), envelope(3, "SeatsReserved")];
/// for event in log.iter().chain(log.iter()) {
///     seen.apply(event)?; // the second pass is a redelivery: nothing counts twice
/// }
/// assert_eq!((seen.count, seen.position()), (2, 3));
/// # Ok::<(), ProjectionError>(())
/// ```
pub trait Projection: Send + Sync + 'static {
    /// A stable name, unique among the projections sharing a checkpoint store.
    fn name(&self) -> &str;

    /// The event types [`handle`](Self::handle) cares about; others only advance the position.
    fn event_types(&self) -> &[&str];

    /// The global position of the last event applied (0 before any).
    fn position(&self) -> u64;

    /// Records that everything up to `position` has been applied.
    fn set_position(&mut self, position: u64);

    /// Folds one event of a handled type into the model. Called at most once per event by
    /// [`apply`](Self::apply). On error the model must be unchanged.
    ///
    /// # Errors
    /// Whatever the model cannot make sense of, as a [`ProjectionError`].
    fn handle(&mut self, envelope: &Envelope) -> Result<(), ProjectionError>;

    /// Empties the model and sets its position back to 0.
    fn reset(&mut self);

    /// Whether events of `event_type` reach [`handle`](Self::handle).
    fn handles(&self, event_type: &str) -> bool {
        self.event_types().contains(&event_type)
    }

    /// Applies `envelope` once: ignores it when its position is not above
    /// [`position`](Self::position), hands it to [`handle`](Self::handle) when its type is handled,
    /// and advances the position. Returns whether the envelope was new.
    ///
    /// # Errors
    /// The error of [`handle`](Self::handle); the position is then not advanced.
    fn apply(&mut self, envelope: &Envelope) -> Result<bool, ProjectionError> {
        if envelope.global_position <= self.position() {
            return Ok(false);
        }
        if self.handles(&envelope.event_type) {
            self.handle(envelope)?;
        }
        self.set_position(envelope.global_position);
        Ok(true)
    }
}

/// The bookkeeping every in-memory read model of this crate shares, inside its `impl Projection`:
/// its name is `Self::NAME`, it follows `$events`, it keeps its position in a `position` field,
/// and a reset starts it from `Self::default()`. Only `handle` is written per model.
macro_rules! projection_bookkeeping {
    ($events:expr) => {
        fn name(&self) -> &str {
            Self::NAME
        }

        fn event_types(&self) -> &[&str] {
            $events
        }

        fn position(&self) -> u64 {
            self.position
        }

        fn set_position(&mut self, position: u64) {
            self.position = position;
        }

        fn reset(&mut self) {
            *self = Self::default();
        }
    };
}
pub(crate) use projection_bookkeeping;
