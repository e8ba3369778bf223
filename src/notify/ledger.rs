//! The notifier's ledger: which notifications are claimed, delivered or refused, as one short
//! stream per notification, `notified-<notification id>`, in an [`EventStore`].
//!
//! A claim is the stream's first event, appended with [`ExpectedVersion::NoStream`]: of two
//! notifiers racing for the same notification exactly one gets it; the other learns of it from
//! the conflict. The outcome is appended after the claim with [`ExpectedVersion::Exact`]. A claim
//! whose lease ran out without an outcome (its notifier crashed, or is stuck) is taken over with
//! another claim after it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NotificationId;
use super::compose::Mark;
use crate::domain::CustomerId;
use crate::event_store::{Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, StreamId};
use crate::framework::Clock;

/// The stream category of the ledger: `notified-<notification id>`.
pub const NOTIFIED_CATEGORY: &str = "notified";

/// A notifier took a notification on.
const CLAIMED: &str = "NotificationClaimed";
/// The sink accepted it.
const DELIVERED: &str = "NotificationDelivered";
/// The sink or the directory refused it for good.
const REFUSED: &str = "NotificationRefused";

/// The payload of every ledger event.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    notification_id: NotificationId,
    kind: String,
    customer_id: CustomerId,
    /// The notifier that wrote it.
    owner: Uuid,
    at: DateTime<Utc>,
    /// Why it was refused (refusals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Where a notification stands for this notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// This notifier holds it (claimed now, or before a retry): deliver it, then record the
    /// outcome after `version`.
    Ours { version: u64 },
    /// Delivered or refused already: nothing to do.
    Done,
    /// Another notifier holds it, within its lease.
    Elsewhere { owner: Uuid },
}

/// The ledger of one notifier.
pub(super) struct Ledger {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    owner: Uuid,
    lease: Duration,
}

impl Ledger {
    pub(super) fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, owner: Uuid, lease: Duration) -> Self {
        Self { store, clock, owner, lease }
    }

    fn stream(id: NotificationId) -> Result<StreamId, EventStoreError> {
        StreamId::new(format!("{NOTIFIED_CATEGORY}-{id}"))
    }

    fn event(
        &self,
        stream: &StreamId,
        event_type: &str,
        mark: Mark,
        reason: Option<String>,
    ) -> Result<NewEvent, EventStoreError> {
        let entry = Entry {
            notification_id: mark.id,
            kind: mark.kind.as_str().to_owned(),
            customer_id: mark.customer_id,
            owner: self.owner,
            at: self.clock.now(),
            reason,
        };
        let payload = serde_json::to_value(&entry)
            .map_err(|source| EventStoreError::Encode { stream: stream.clone(), source })?;
        Ok(NewEvent::new(event_type, 1, payload))
    }

    /// Claims `mark` (caused by `cause`), or says who has it.
    ///
    /// # Errors
    /// The store's.
    pub(super) async fn claim(&self, mark: Mark, cause: &Envelope) -> Result<Claim, EventStoreError> {
        let stream = Self::stream(mark.id)?;
        let metadata = caused_by(cause);
        let mut expected = ExpectedVersion::NoStream;
        loop {
            let claim = self.event(&stream, CLAIMED, mark, None)?;
            match self.store.append(&stream, expected, vec![claim], &metadata, None).await {
                Ok(written) => return Ok(Claim::Ours { version: written.stream_version }),
                Err(EventStoreError::ConcurrencyConflict { .. }) => {}
                Err(error) => return Err(error),
            }
            let Some(last) = self.store.load_stream(&stream, 1).await?.pop() else { continue };
            if &*last.event_type != CLAIMED {
                return Ok(Claim::Done);
            }
            let entry: Entry = serde_json::from_value((*last.payload).clone()).map_err(|source| {
                EventStoreError::Corrupt { global_position: last.global_position, source: Box::new(source) }
            })?;
            if entry.owner == self.owner {
                return Ok(Claim::Ours { version: last.stream_version });
            }
            let held = self.clock.now().signed_duration_since(entry.at).to_std().unwrap_or(Duration::ZERO);
            if held < self.lease {
                return Ok(Claim::Elsewhere { owner: entry.owner });
            }
            tracing::warn!(
                notification_id = %mark.id, owner = %entry.owner, ?held,
                "taking over a notification whose claim outlived its lease; it may be sent twice"
            );
            expected = ExpectedVersion::Exact(last.stream_version);
        }
    }

    /// Records that the sink accepted `mark` (`refused: None`) or refused it for good, after
    /// this notifier's claim at `version`. A conflict means another notifier took the claim over
    /// after its lease ran out: the notification may go out twice (logged).
    ///
    /// # Errors
    /// The store's.
    pub(super) async fn finish(
        &self,
        mark: Mark,
        cause: &Envelope,
        version: u64,
        refused: Option<String>,
    ) -> Result<(), EventStoreError> {
        let stream = Self::stream(mark.id)?;
        let event_type = if refused.is_some() { REFUSED } else { DELIVERED };
        let outcome = self.event(&stream, event_type, mark, refused)?;
        let appended =
            self.store.append(&stream, ExpectedVersion::Exact(version), vec![outcome], &caused_by(cause), None).await;
        match appended {
            Ok(_) => Ok(()),
            Err(EventStoreError::ConcurrencyConflict { .. }) => {
                tracing::warn!(notification_id = %mark.id, "another notifier took this notification over while it was being sent");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// Ledger events carry the correlation id of the log event that caused the notification, and
/// name it as their cause.
fn caused_by(cause: &Envelope) -> Metadata {
    Metadata {
        correlation_id: cause.metadata.correlation_id,
        causation_id: Some(cause.event_id),
        ..Metadata::default()
    }
}
