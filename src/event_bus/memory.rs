//! An in-process [`EventBus`]: partitioned topics and consumer groups held in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use tokio::sync::watch;

use super::{Acknowledger, Delivery, DeliveryPosition, EventBus, EventBusError, Outgoing};
use crate::event_store::Envelope;

/// An [`EventBus`] inside one process, with the same delivery semantics as the Kafka backend:
/// topics split into partitions by key hash, consumer groups with their own committed offsets,
/// members of one group sharing partitions, and redelivery of unacknowledged messages once the
/// member holding them leaves. Clones share the same topics.
#[derive(Clone)]
pub struct MemoryEventBus {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

struct State {
    partitions: u32,
    topics: HashMap<String, Vec<Vec<Stored>>>,
    groups: HashMap<String, Group>,
    next_member: u64,
}

struct Stored {
    key: String,
    envelope: Envelope,
    previous_position: Option<u64>,
}

#[derive(Default)]
struct Group {
    committed: HashMap<(String, i32), i64>,
    members: BTreeMap<u64, Vec<String>>,
    generation: u64,
}

impl MemoryEventBus {
    /// Partitions per topic when none are configured.
    pub const DEFAULT_PARTITIONS: u32 = 4;

    /// A bus with [`DEFAULT_PARTITIONS`](Self::DEFAULT_PARTITIONS) partitions per topic.
    #[must_use]
    pub fn new() -> Self {
        Self::with_partitions(Self::DEFAULT_PARTITIONS)
    }

    /// A bus whose topics have `partitions` partitions (at least one).
    #[must_use]
    pub fn with_partitions(partitions: u32) -> Self {
        let state =
            State { partitions: partitions.max(1), topics: HashMap::new(), groups: HashMap::new(), next_member: 0 };
        Self { shared: Arc::new(Shared { state: Mutex::new(state), changes: watch::channel(0).0 }) }
    }

    /// Number of messages in `topic`, over all partitions.
    ///
    /// # Errors
    /// [`EventBusError::Consume`] when the bus state is poisoned by a panic elsewhere.
    pub fn message_count(&self, topic: &str) -> Result<usize, EventBusError> {
        let state = self.shared.lock("")?;
        Ok(state.topics.get(topic).map_or(0, |parts| parts.iter().map(Vec::len).sum()))
    }
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEventBus").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self, group: &str) -> Result<MutexGuard<'_, State>, EventBusError> {
        self.state
            .lock()
            .map_err(|_| EventBusError::Consume { group: group.to_owned(), source: "bus state poisoned".into() })
    }

    fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl State {
    fn topic(&mut self, topic: &str) -> &mut Vec<Vec<Stored>> {
        let partitions = self.partitions as usize;
        self.topics.entry(topic.to_owned()).or_insert_with(|| (0..partitions).map(|_| Vec::new()).collect())
    }
}

/// FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<(), EventBusError> {
        {
            let mut state = self.shared.state.lock().map_err(|_| EventBusError::Publish {
                topic: messages.first().map_or("", |m| m.topic).to_owned(),
                source: "bus state poisoned".into(),
            })?;
            for message in messages {
                let partitions = state.topic(message.topic);
                let count = partitions.len() as u64;
                let index = usize::try_from(key_hash(message.key) % count).unwrap_or(0);
                partitions[index].push(Stored {
                    key: message.key.to_owned(),
                    envelope: message.envelope.clone(),
                    previous_position: message.previous_position,
                });
            }
        }
        self.shared.notify();
        Ok(())
    }

    async fn subscribe(
        &self,
        topics: &[String],
        group: &str,
    ) -> Result<BoxStream<'static, Result<Delivery, EventBusError>>, EventBusError> {
        let (member, partitions) = {
            let mut state = self.shared.lock(group)?;
            for topic in topics {
                state.topic(topic);
            }
            let member = state.next_member;
            state.next_member += 1;
            let entry = state.groups.entry(group.to_owned()).or_default();
            entry.members.insert(member, topics.to_vec());
            entry.generation += 1;
            (member, state.partitions)
        };
        self.shared.notify();
        let subscriber = Subscriber {
            changes: self.shared.changes.subscribe(),
            acknowledger: Arc::new(MemoryAcknowledger {
                shared: Arc::clone(&self.shared),
                group: group.to_owned(),
                member,
            }),
            shared: Arc::clone(&self.shared),
            group: group.to_owned(),
            member,
            partitions,
            generation: 0,
            assignment: Vec::new(),
            positions: HashMap::new(),
            cursor: 0,
        };
        Ok(Box::pin(stream::unfold(subscriber, |mut subscriber| async move {
            let next = subscriber.next_delivery().await;
            Some((next, subscriber))
        })))
    }
}

/// One member of a consumer group; leaves the group when dropped.
struct Subscriber {
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    acknowledger: Arc<MemoryAcknowledger>,
    group: String,
    member: u64,
    partitions: u32,
    generation: u64,
    assignment: Vec<(String, i32)>,
    positions: HashMap<(String, i32), i64>,
    cursor: usize,
}

impl Subscriber {
    async fn next_delivery(&mut self) -> Result<Delivery, EventBusError> {
        loop {
            // Mark the current version seen before looking, so a publish after the look wakes us.
            self.changes.borrow_and_update();
            if let Some(delivery) = self.poll_once()? {
                return Ok(delivery);
            }
            if self.changes.changed().await.is_err() {
                return Err(EventBusError::SubscriptionClosed { group: self.group.clone() });
            }
        }
    }

    fn poll_once(&mut self) -> Result<Option<Delivery>, EventBusError> {
        let shared = Arc::clone(&self.shared);
        let state = shared.lock(&self.group)?;
        let Some(group) = state.groups.get(&self.group) else {
            return Err(EventBusError::SubscriptionClosed { group: self.group.clone() });
        };
        if group.generation != self.generation {
            self.rebalance(group);
        }
        let assigned = self.assignment.len();
        for step in 0..assigned {
            let index = (self.cursor + step) % assigned;
            let (topic, partition) = &self.assignment[index];
            let position = self.positions.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
            let log = state.topics.get(topic).and_then(|parts| parts.get(usize::try_from(*partition).ok()?));
            let Some(stored) = log.and_then(|log| log.get(usize::try_from(position).ok()?)) else {
                continue;
            };
            self.positions.insert((topic.clone(), *partition), position + 1);
            self.cursor = index + 1;
            let delivery = Delivery::new(
                stored.envelope.clone(),
                stored.key.clone(),
                stored.previous_position,
                DeliveryPosition { topic: topic.clone(), partition: *partition, offset: position },
                Arc::clone(&self.acknowledger) as Arc<dyn Acknowledger>,
            );
            return Ok(Some(delivery));
        }
        Ok(None)
    }

    /// Partition `p` of a topic goes to the `p mod n`-th of the `n` members subscribed to it.
    fn rebalance(&mut self, group: &Group) {
        let mut assignment = Vec::new();
        let mut topics: Vec<&String> = group.members.values().flatten().collect();
        topics.sort();
        topics.dedup();
        for topic in topics {
            let members: Vec<u64> =
                group.members.iter().filter(|(_, topics)| topics.contains(topic)).map(|(id, _)| *id).collect();
            let Some(rank) = members.iter().position(|id| *id == self.member) else { continue };
            let partitions = i32::try_from(self.partitions).unwrap_or(i32::MAX);
            for partition in 0..partitions {
                if usize::try_from(partition).unwrap_or(0) % members.len() == rank {
                    assignment.push((topic.clone(), partition));
                }
            }
        }
        // Partitions kept across a rebalance continue where this member was; new ones start at
        // the group's committed offset, which is how unacknowledged messages get redelivered.
        let mut positions = HashMap::new();
        for key in &assignment {
            let position =
                self.positions.get(key).copied().unwrap_or_else(|| group.committed.get(key).copied().unwrap_or(0));
            positions.insert(key.clone(), position);
        }
        self.positions = positions;
        self.assignment = assignment;
        self.generation = group.generation;
        self.cursor = 0;
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            if let Some(group) = state.groups.get_mut(&self.group) {
                group.members.remove(&self.member);
                group.generation += 1;
            }
        }
        self.shared.notify();
    }
}

struct MemoryAcknowledger {
    shared: Arc<Shared>,
    group: String,
    member: u64,
}

#[async_trait]
impl Acknowledger for MemoryAcknowledger {
    async fn acknowledge(&self, position: &DeliveryPosition) -> Result<(), EventBusError> {
        let mut state = self.shared.lock(&self.group)?;
        let Some(group) = state.groups.get_mut(&self.group).filter(|g| g.members.contains_key(&self.member)) else {
            return Err(EventBusError::SubscriptionClosed { group: self.group.clone() });
        };
        let committed = group.committed.entry((position.topic.clone(), position.partition)).or_insert(0);
        *committed = (*committed).max(position.offset + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
