//! Follows the event store's global log: the single place where this process learns what was
//! committed, by itself or by any other process. For every event it updates the pending
//! deadlines and wakes API calls waiting on a reservation, and (when the saga is driven from the
//! log rather than from a broker) runs the saga's follow-up commands, saving a checkpoint after
//! each batch so a restart resumes where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use tokio::sync::watch;

use super::{CommandContext, ExpiryIndex, ReservationWatch, Saga};
use crate::aggregates::TicketingAction;
use crate::event_store::{CheckpointStore, Envelope, EventStore};

/// Most events handled per batch (and per checkpoint save).
const BATCH: usize = 512;

/// Everything the follower feeds.
#[derive(Clone)]
pub struct LogFollower {
    /// The log.
    pub store: Arc<dyn EventStore>,
    /// Where the saga's progress is kept.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Checkpoint name.
    pub name: String,
    /// The saga, when it is driven from the log.
    pub saga: Option<Saga>,
    /// Waiting API calls.
    pub watch: ReservationWatch,
    /// Pending deadlines.
    pub expiry: ExpiryIndex,
    /// The last global position handled.
    pub position: watch::Sender<u64>,
}

impl LogFollower {
    /// Runs until `stop` turns true. The whole log is read once at start-up (deadlines of holds
    /// taken before a restart must be re-armed); the saga only acts on events after its
    /// checkpoint.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let checkpoint = loop {
            match self.checkpoints.load_checkpoint(&self.name).await {
                Ok(position) => break position,
                Err(error) => {
                    tracing::error!(%error, "cannot load the saga checkpoint; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                }
            }
        };
        let mut after = 0;
        self.position.send_replace(after);
        loop {
            let mut batches = self.store.subscribe(after).ready_chunks(BATCH);
            loop {
                let batch = tokio::select! {
                    batch = batches.next() => batch,
                    _ = stop.wait_for(|stop| *stop) => return,
                };
                let Some(batch) = batch else { break };
                let mut envelopes = Vec::with_capacity(batch.len());
                let mut failed = None;
                for item in batch {
                    match item {
                        Ok(envelope) => envelopes.push(envelope),
                        Err(error) => failed = Some(error),
                    }
                }
                if let Some(last) = envelopes.last().map(|e| e.global_position) {
                    self.handle(&envelopes, checkpoint).await;
                    after = last;
                }
                if let Some(error) = failed {
                    tracing::warn!(%error, after, "log subscription failed; resubscribing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }

    async fn handle(&self, envelopes: &[Envelope], checkpoint: u64) {
        let span = tracing::debug_span!("log_batch", size = envelopes.len());
        let entered = span.enter();
        let mut reactions = Vec::new();
        for envelope in envelopes {
            let action = match TicketingAction::decode(envelope) {
                Ok(action) => action,
                Err(error) => {
                    tracing::warn!(%error, "skipping an event that is not a ticketing event");
                    continue;
                }
            };
            if let TicketingAction::Reservation(event) = &action {
                self.expiry.observe(event);
                self.watch.observe(event);
            }
            if envelope.global_position > checkpoint
                && let Some(saga) = &self.saga
            {
                let context = CommandContext::caused_by(envelope.event_id, &envelope.metadata);
                reactions.push(async move { saga.react(&action, context).await });
            }
        }
        drop(entered);
        let reacted = !reactions.is_empty();
        join_all(reactions).await;
        let Some(last) = envelopes.last().map(|e| e.global_position) else { return };
        if reacted && let Err(error) = self.checkpoints.save_checkpoint(&self.name, last).await {
            tracing::warn!(%error, last, "cannot save the saga checkpoint");
        }
        self.position.send_replace(last);
    }
}
