//! The ids that tie every event to the request that caused it. They travel with each command as
//! an argument (never through a task-local), so batching, spawning and the saga cannot mix them.

use uuid::Uuid;

use crate::event_store::Metadata;

/// Correlation and causation of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandContext {
    /// Shared by every command and event that stems from one request.
    pub(crate) correlation_id: Uuid,
    /// The request, or the event, that directly caused this command.
    pub(crate) causation_id: Uuid,
    /// The node whose saga the command's events belong to, when it is not the node appending
    /// them: an inventory's writer appends on behalf of the reservation's node
    /// ([`writers`](super::writers)), so what follows goes back to that node.
    pub(crate) origin: Option<Uuid>,
}

impl CommandContext {
    /// A command sent by the request `request_id`.
    pub(crate) fn request(request_id: Uuid) -> Self {
        Self { correlation_id: request_id, causation_id: request_id, origin: None }
    }

    /// A command caused by the stored event `event_id` that carried `metadata`.
    pub(crate) fn caused_by(event_id: Uuid, metadata: &Metadata) -> Self {
        Self { correlation_id: metadata.correlation_id.unwrap_or(event_id), causation_id: event_id, origin: None }
    }

    /// The same command, carried out on behalf of `origin`'s saga.
    pub(crate) fn on_behalf_of(self, origin: Uuid) -> Self {
        Self { origin: Some(origin), ..self }
    }

    /// The metadata stored with the events this command appends on `node`.
    pub(crate) fn metadata(&self, node: Uuid) -> Metadata {
        Metadata {
            correlation_id: Some(self.correlation_id),
            causation_id: Some(self.causation_id),
            node_id: Some(self.origin.unwrap_or(node)),
            ..Metadata::default()
        }
    }
}
