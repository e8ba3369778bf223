//! Helpers shared by the relay tests: appending a stream of events and checking what reached the
//! bus.
#![allow(dead_code)]

pub mod tansu;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use boxoffice::event_bus::{
    DedupStore, Deduplicator, Delivery, EventBus, EventBusError, Handled, Outgoing, TopicRouter,
};
use boxoffice::event_store::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use futures::StreamExt;
use futures::stream::BoxStream;
use uuid::Uuid;

pub const CATEGORIES: [&str; 4] = ["event", "inventory", "reservation", "payment"];

/// Stream ids spread over the four categories.
pub fn streams(count: usize) -> Vec<StreamId> {
    (0..count).map(|n| StreamId::new(format!("{}-{}", CATEGORIES[n % 4], Uuid::new_v4())).unwrap()).collect()
}

/// Appends `per_stream` events to every stream, round robin, one append each, pausing `pause`
/// between appends. Returns the event ids in commit order.
pub async fn append_round_robin(
    store: &Arc<dyn EventStore>,
    streams: &[StreamId],
    per_stream: u64,
    pause: Duration,
) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for version in 1..=per_stream {
        for stream in streams {
            let event = NewEvent::new("Noted", 1, serde_json::json!({ "version": version }));
            ids.push(event.event_id);
            let metadata = Metadata { correlation_id: Some(Uuid::new_v4()), ..Metadata::default() };
            store.append(stream, ExpectedVersion::Exact(version - 1), vec![event], &metadata, None).await.unwrap();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    ids
}

pub fn topics(router: &TopicRouter) -> Vec<String> {
    router.topics_for_categories(CATEGORIES)
}

/// What a consumer saw on the relay's topics.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Every delivery, duplicates included.
    pub deliveries: Vec<Uuid>,
    /// Events the deduplicating handler ran for, in handling order.
    pub handled: Vec<Uuid>,
    /// Versions handled per stream, in handling order.
    pub versions: HashMap<String, Vec<u64>>,
}

/// Consumes the topics in a fresh group through a [`Deduplicator`] until every id in `expected`
/// has been handled (or `wait` passes), then keeps listening for `linger` to catch late duplicates.
pub async fn consume(
    bus: &Arc<dyn EventBus>,
    dedup_store: Arc<dyn DedupStore>,
    topics: &[String],
    expected: &HashSet<Uuid>,
    wait: Duration,
    linger: Duration,
) -> Consumed {
    let group = format!("relay-check-{}", Uuid::new_v4().simple());
    let mut deliveries: BoxStream<'static, Result<Delivery, EventBusError>> =
        bus.subscribe(topics, &group).await.unwrap();
    let dedup = Deduplicator::new(group.clone(), dedup_store);
    let mut consumed = Consumed::default();
    let deadline = tokio::time::Instant::now() + wait;
    let mut linger_until: Option<tokio::time::Instant> = None;
    loop {
        let until = linger_until.unwrap_or(deadline);
        let Ok(next) = tokio::time::timeout_at(until, deliveries.next()).await else { break };
        let delivery = next.unwrap().unwrap();
        let envelope = delivery.envelope().clone();
        consumed.deliveries.push(envelope.event_id);
        let outcome = dedup.handle(delivery, |_| async { Ok::<(), std::convert::Infallible>(()) }).await.unwrap();
        if outcome == Handled::Processed {
            consumed.handled.push(envelope.event_id);
            consumed.versions.entry(envelope.stream_id.to_string()).or_default().push(envelope.stream_version);
        }
        if linger_until.is_none()
            && consumed.handled.iter().filter(|id| expected.contains(id)).count() == expected.len()
        {
            linger_until = Some(tokio::time::Instant::now() + linger);
        }
    }
    consumed
}

/// Checks the at-least-once and exactly-once-after-dedup properties.
pub fn assert_every_event_once(consumed: &Consumed, expected: &[Uuid], per_stream: u64) {
    eprintln!(
        "{} committed events, {} deliveries ({} duplicates dropped by the deduplicator)",
        expected.len(),
        consumed.deliveries.len(),
        consumed.deliveries.len() - consumed.handled.len()
    );
    let delivered: HashSet<Uuid> = consumed.deliveries.iter().copied().collect();
    let missing: Vec<&Uuid> = expected.iter().filter(|id| !delivered.contains(id)).collect();
    assert!(missing.is_empty(), "{} of {} committed events never reached their topic", missing.len(), expected.len());
    assert_eq!(
        consumed.handled.len(),
        expected.len(),
        "the deduplicating consumer must handle each event exactly once"
    );
    let handled: HashSet<Uuid> = consumed.handled.iter().copied().collect();
    assert_eq!(handled.len(), expected.len());
    for (stream, versions) in &consumed.versions {
        assert_eq!(versions, &(1..=per_stream).collect::<Vec<_>>(), "stream {stream} handled out of order");
    }
}

/// Waits until the relay's checkpoint reaches `position`.
pub async fn wait_for_checkpoint(progress: &mut tokio::sync::watch::Receiver<u64>, position: u64, wait: Duration) {
    tokio::time::timeout(wait, progress.wait_for(|p| *p >= position))
        .await
        .unwrap_or_else(|_| panic!("relay checkpoint did not reach {position} within {wait:?}"))
        .unwrap();
}

/// A bus that, on every `every`-th batch, publishes the first half and then reports a failure,
/// as a broker that acknowledged some messages before the connection dropped would.
pub struct FlakyBus {
    pub inner: Arc<dyn EventBus>,
    pub every: u64,
    pub calls: AtomicU64,
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        envelope: &boxoffice::event_store::Envelope,
    ) -> Result<(), EventBusError> {
        self.inner.publish(topic, key, envelope).await
    }

    async fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<(), EventBusError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call % self.every == 0 {
            self.inner.publish_batch(&messages[..messages.len() / 2]).await?;
            return Err(EventBusError::Publish { topic: "*".to_owned(), source: "connection dropped".into() });
        }
        self.inner.publish_batch(messages).await
    }

    async fn subscribe(
        &self,
        topics: &[String],
        group: &str,
    ) -> Result<BoxStream<'static, Result<Delivery, EventBusError>>, EventBusError> {
        self.inner.subscribe(topics, group).await
    }
}
