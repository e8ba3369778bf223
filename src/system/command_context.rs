//! The ids that tie events to the request that caused them, carried through command handling
//! without threading them through every reducer.

use uuid::Uuid;

use crate::event_store::Metadata;

tokio::task_local! {
    static CURRENT: CommandContext;
}

/// Correlation and causation of the command being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandContext {
    /// Shared by every command and event that stems from one API call.
    pub correlation_id: Uuid,
    /// The event (or API call) that directly caused this command.
    pub causation_id: Option<Uuid>,
}

impl CommandContext {
    /// A context for a fresh API call: a new correlation id and no cause.
    #[must_use]
    pub fn new_request() -> Self {
        Self { correlation_id: Uuid::new_v4(), causation_id: None }
    }

    /// The context for a command caused by the event `event_id` that carried `metadata`.
    #[must_use]
    pub fn caused_by(event_id: Uuid, metadata: &Metadata) -> Self {
        Self { correlation_id: metadata.correlation_id.unwrap_or(event_id), causation_id: Some(event_id) }
    }

    /// The context of the command this task is handling, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|context| *context).ok()
    }

    /// Runs `future` with this context as the current one.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// The event metadata recording this context.
    #[must_use]
    pub fn metadata(&self) -> Metadata {
        Metadata { correlation_id: Some(self.correlation_id), causation_id: self.causation_id, ..Metadata::default() }
    }
}
