//! Feeds a read model from the event bus, restoring the global order the bus does not keep.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::event_bus::{Delivery, EventBus, EventBusError};
use crate::event_store::Envelope;

use super::{Projection, ProjectionError, ProjectionHandle};

/// How a [`BusProjectionRunner`] reads the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusRunnerConfig {
    /// Most deliveries taken from the bus before applying what is ready and acknowledging.
    pub batch_size: usize,
    /// Most events that may wait for an earlier one before the runner gives up with
    /// [`ProjectionError::Gap`]. Size it above what one partition can lag behind the others.
    pub max_waiting: usize,
}

impl Default for BusRunnerConfig {
    fn default() -> Self {
        Self { batch_size: 512, max_waiting: 100_000 }
    }
}

type Deliveries = BoxStream<'static, Result<Delivery, EventBusError>>;

/// Runs one read model from the topics the [`OutboxRelay`](crate::event_bus::OutboxRelay)
/// writes, as one member of a consumer group, and serves readers through a
/// [`ProjectionHandle`] (the same surface as [`ProjectionRunner`](super::ProjectionRunner)).
///
/// The bus keeps order only per key within a partition, and global positions have gaps, so the
/// position alone cannot say whether an earlier event is still in flight. The relay stamps every
/// message with the position of the event before it
/// ([`Delivery::previous_position`]); the runner keeps arrived events by that stamp and applies an
/// event only when it follows the last applied position, so the model sees exactly the global
/// order. Events at or below the model's position are redeliveries and are dropped.
///
/// Nothing is lost in a crash: a delivery is acknowledged only once it and every delivery before
/// it in its partition are applied (or were already applied). Acknowledging a message commits
/// its partition up to it, so the runner acknowledges the last message of the applied prefix of
/// each partition; everything not yet applied stays uncommitted and is delivered again to the
/// next member of the group, where the model's position drops what it already has.
///
/// The group's committed offsets are this runner's checkpoint; there is no other. A model that
/// lost its state (an in-memory model after a process restart) must first be caught up from the
/// event store with [`replay`](super::replay), since the bus no longer delivers what the group
/// acknowledged and its retention is not the log: rebuilds always come from the store. Messages
/// without a stamp, stamps that contradict each other, and a gap that never fills (more than
/// [`BusRunnerConfig::max_waiting`] events waiting) stop the runner with an error, which
/// [`stop`](Self::stop) returns.
///
/// Run one runner per group: it needs every partition of every topic to restore the order.
pub struct BusProjectionRunner<P: Projection> {
    handle: ProjectionHandle<P>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl<P: Projection> BusProjectionRunner<P> {
    /// Joins consumer group `group` on `topics` (all the topics the relay writes, e.g.
    /// `router.topics_for_categories(TICKETING_CATEGORIES)`) and starts applying to `handle`'s
    /// model on a tokio task.
    ///
    /// # Errors
    /// [`ProjectionError::EventBus`] when the group cannot be joined.
    pub async fn start(
        bus: &dyn EventBus,
        topics: &[String],
        group: &str,
        handle: ProjectionHandle<P>,
        config: BusRunnerConfig,
    ) -> Result<Self, ProjectionError> {
        let name = handle.name().to_owned();
        let deliveries = bus.subscribe(topics, group).await.map_err(|source| bus_error(&name, source))?;
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            handle: handle.clone(),
            config,
            waiting: BTreeMap::new(),
            unacknowledged: HashMap::new(),
            acknowledged: HashMap::new(),
        };
        let span = tracing::info_span!("bus_projection_runner", projection = %name, group, from = handle.position());
        let task = tokio::spawn(worker.run(deliveries, stop_rx).instrument(span));
        Ok(Self { handle, stop, task })
    }

    /// The model, for queries and [`wait_for_position`](ProjectionHandle::wait_for_position).
    #[must_use]
    pub fn handle(&self) -> &ProjectionHandle<P> {
        &self.handle
    }

    /// Stops after the batch in hand, leaves the group and waits for the task. Events received
    /// but not applied stay unacknowledged, for the next member of the group.
    ///
    /// # Errors
    /// The error that had already stopped the runner, if any, or [`ProjectionError::Stopped`]
    /// when its task panicked.
    pub async fn stop(self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        let name = self.handle.name().to_owned();
        self.task.await.map_err(|_| ProjectionError::Stopped { projection: name })?
    }
}

fn bus_error(projection: &str, source: EventBusError) -> ProjectionError {
    ProjectionError::EventBus { projection: projection.to_owned(), source }
}

struct Worker<P: Projection> {
    handle: ProjectionHandle<P>,
    config: BusRunnerConfig,
    /// Arrived events not yet applied, by the position of the event before them.
    waiting: BTreeMap<u64, Envelope>,
    /// Per (topic, partition), deliveries in arrival order with their global position.
    unacknowledged: HashMap<(String, i32), VecDeque<(u64, Delivery)>>,
    /// Per (topic, partition), the highest offset acknowledged by this member.
    acknowledged: HashMap<(String, i32), i64>,
}

impl<P: Projection> Worker<P> {
    async fn run(mut self, deliveries: Deliveries, mut stop: watch::Receiver<bool>) -> Result<(), ProjectionError> {
        let mut chunks = deliveries.ready_chunks(self.config.batch_size.max(1));
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                chunk = chunks.next() => {
                    let Some(chunk) = chunk else {
                        return Err(ProjectionError::Stopped { projection: self.handle.name().to_owned() });
                    };
                    self.receive(chunk)?;
                    self.apply_ready()?;
                    self.acknowledge().await;
                }
            }
        }
    }

    /// Files each delivery under its partition and each new event under its predecessor.
    fn receive(&mut self, chunk: Vec<Result<Delivery, EventBusError>>) -> Result<(), ProjectionError> {
        let applied = self.handle.position();
        for item in chunk {
            let delivery = item.map_err(|source| bus_error(self.handle.name(), source))?;
            let envelope = delivery.envelope();
            let position = envelope.global_position;
            let Some(previous) = delivery.previous_position() else {
                return Err(ProjectionError::Unstamped {
                    projection: self.handle.name().to_owned(),
                    topic: delivery.topic().to_owned(),
                    partition: delivery.partition(),
                    offset: delivery.offset(),
                });
            };
            if position > applied {
                let inconsistent = |conflict| ProjectionError::Inconsistent {
                    projection: self.handle.name().to_owned(),
                    global_position: position,
                    previous_position: previous,
                    conflict,
                };
                if previous >= position {
                    return Err(inconsistent(position));
                }
                if previous < applied {
                    return Err(inconsistent(applied));
                }
                match self.waiting.entry(previous) {
                    Entry::Vacant(slot) => {
                        slot.insert(envelope.clone());
                    }
                    // A second copy of a waiting event (republished by the relay): keep one.
                    Entry::Occupied(other) if other.get().global_position == position => {}
                    Entry::Occupied(other) => return Err(inconsistent(other.get().global_position)),
                }
            }
            let partition = (delivery.topic().to_owned(), delivery.partition());
            self.unacknowledged.entry(partition).or_default().push_back((position, delivery));
        }
        Ok(())
    }

    /// Applies the run of waiting events that follows the model's position, in one batch.
    fn apply_ready(&mut self) -> Result<(), ProjectionError> {
        let mut next = self.handle.position();
        let mut ready = Vec::new();
        while let Some(envelope) = self.waiting.remove(&next) {
            next = envelope.global_position;
            ready.push(envelope);
        }
        if !ready.is_empty() {
            let span = tracing::debug_span!("projection_batch", projection = %self.handle.name(), events = ready.len());
            span.in_scope(|| self.handle.apply_batch(&ready))?;
        }
        match self.waiting.first_key_value() {
            Some((&earliest, _)) if self.waiting.len() > self.config.max_waiting => Err(ProjectionError::Gap {
                projection: self.handle.name().to_owned(),
                position: self.handle.position(),
                waiting: self.waiting.len(),
                earliest,
            }),
            _ => Ok(()),
        }
    }

    /// Acknowledges, per partition, the last delivery of the prefix the model has applied.
    async fn acknowledge(&mut self) {
        let applied = self.handle.position();
        for (partition, queue) in &mut self.unacknowledged {
            let mut last = None;
            while queue.front().is_some_and(|(position, _)| *position <= applied) {
                last = queue.pop_front().map(|(_, delivery)| delivery);
            }
            let Some(delivery) = last else { continue };
            // A redelivered copy can sit behind a later offset already acknowledged; committing
            // it would move the group back (harmless, but it would redeliver for nothing).
            let acknowledged = self.acknowledged.entry(partition.clone()).or_insert(-1);
            if delivery.offset() <= *acknowledged {
                continue;
            }
            let offset = delivery.offset();
            match delivery.ack().await {
                Ok(_) => *acknowledged = offset,
                // The offset stays uncommitted: the next acknowledgement in this partition covers
                // it, or the events come again after a restart and are dropped as applied.
                Err(error) => tracing::warn!(%error, "acknowledging applied events failed"),
            }
        }
    }
}
