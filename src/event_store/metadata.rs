//! Metadata stored beside every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Metadata recorded with every event of one append: the ids that tie it to the request that caused
/// it, plus free-form headers (tracing context, user agent, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Id shared by every message that results from one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// Id of the message that directly caused these events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The process (node) whose saga these events belong to: the node that appended them, or
    /// the node on whose behalf an inventory's writer appended them. It carries out what follows
    /// them (the saga's reactions, but for the inventory steps, which go to the inventory's
    /// writer) while its lease lives; another node takes them over when it is gone.
    /// `None` for events appended by anything but a [`TicketingSystem`](crate::system::TicketingSystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    /// Free-form headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}
