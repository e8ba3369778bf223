//! Behaviour every `EventBus` backend must show. Each check uses its own topics and groups, so
//! checks can share a broker and run in parallel.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_bus::{Delivery, EventBus, Outgoing};
use boxoffice::event_store::{Envelope, Metadata, StreamId};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Long enough for a Kafka group join and rebalance on a shared machine.
pub const WAIT: Duration = Duration::from_secs(60);

pub type Deliveries = BoxStream<'static, Result<Delivery, boxoffice::event_bus::EventBusError>>;

pub fn unique(name: &str) -> String {
    format!("conf-{name}-{}", Uuid::new_v4().simple())
}

pub fn envelope(stream: &str, version: u64, position: u64) -> Envelope {
    Envelope {
        event_id: Uuid::new_v4(),
        stream_id: StreamId::new(stream).unwrap(),
        stream_version: version,
        global_position: position,
        event_type: "Noted".into(),
        schema_version: 1,
        payload: serde_json::json!({ "stream": stream, "version": version }).into(),
        metadata: Metadata::default().into(),
        recorded_at: Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap(),
    }
}

pub async fn take(deliveries: &mut Deliveries, count: usize) -> Vec<Delivery> {
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        let next = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived within {WAIT:?}", taken.len()));
        taken.push(next.expect("subscription ended").expect("delivery failed"));
    }
    taken
}

pub async fn round_trip_with_headers(bus: Arc<dyn EventBus>) {
    let topic = unique("round-trip");
    let mut sent = envelope("cart-1", 3, 42);
    sent.metadata = Metadata {
        correlation_id: Some(Uuid::new_v4()),
        causation_id: Some(Uuid::new_v4()),
        node_id: Some(Uuid::new_v4()),
        headers: BTreeMap::from([("tenant".to_owned(), "north".to_owned())]),
    }
    .into();
    sent.schema_version = 7;
    sent.payload = serde_json::json!({ "nested": { "list": [1, 2, 3] }, "text": "ünïcödé" }).into();
    bus.publish(&topic, "cart-1", &sent).await.unwrap();

    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &unique("group")).await.unwrap();
    let delivery = take(&mut deliveries, 1).await.pop().unwrap();
    assert_eq!(delivery.topic(), topic);
    assert_eq!(delivery.key(), "cart-1");
    assert!(delivery.offset() >= 0);
    assert_eq!(delivery.envelope(), &sent);
    assert_eq!(delivery.previous_position(), None, "publish does not stamp a previous position");
    let received = delivery.ack().await.unwrap();
    assert_eq!(received, sent);
}

/// The relay's stamp (the position of the event published before) reaches the subscriber as
/// published, 0 included, beside the envelope, which stays as it was.
pub async fn previous_position_travels_with_the_message(bus: Arc<dyn EventBus>) {
    let topic = unique("previous");
    let sent = [envelope("cart-1", 1, 7), envelope("cart-1", 2, 9), envelope("cart-1", 3, 12)];
    let previous = [Some(0), Some(7), None];
    let batch: Vec<Outgoing<'_>> = sent
        .iter()
        .zip(previous)
        .map(|(envelope, previous_position)| Outgoing { topic: &topic, key: "cart-1", envelope, previous_position })
        .collect();
    bus.publish_batch(&batch).await.unwrap();

    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &unique("group")).await.unwrap();
    let received = take(&mut deliveries, 3).await;
    let stamps: Vec<Option<u64>> = received.iter().map(Delivery::previous_position).collect();
    assert_eq!(stamps, previous);
    let envelopes: Vec<&Envelope> = received.iter().map(Delivery::envelope).collect();
    assert_eq!(envelopes, sent.iter().collect::<Vec<_>>());
}

pub async fn per_key_order(bus: Arc<dyn EventBus>) {
    let topic = unique("order");
    let keys: Vec<String> = (0..5).map(|k| format!("cart-{k}")).collect();
    let mut envelopes = Vec::new();
    for version in 1..=30 {
        for key in &keys {
            envelopes.push((key.clone(), envelope(key, version, 0)));
        }
    }
    let (first, second) = envelopes.split_at(envelopes.len() / 2);
    for (key, envelope) in first {
        bus.publish(&topic, key, envelope).await.unwrap();
    }
    let batch: Vec<Outgoing<'_>> = second
        .iter()
        .map(|(key, envelope)| Outgoing { topic: &topic, key, envelope, previous_position: None })
        .collect();
    bus.publish_batch(&batch).await.unwrap();

    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &unique("group")).await.unwrap();
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for delivery in take(&mut deliveries, envelopes.len()).await {
        seen.entry(delivery.key().to_owned()).or_default().push(delivery.envelope().stream_version);
        delivery.ack().await.unwrap();
    }
    for key in &keys {
        assert_eq!(seen[key], (1..=30).collect::<Vec<_>>(), "order of {key}");
    }
}

pub async fn two_groups_each_receive_everything(bus: Arc<dyn EventBus>) {
    let topic = unique("groups");
    let mut ids = HashSet::new();
    for n in 0..24 {
        let envelope = envelope(&format!("cart-{}", n % 6), n / 6 + 1, n);
        ids.insert(envelope.event_id);
        bus.publish(&topic, envelope.stream_id.as_str(), &envelope).await.unwrap();
    }
    for group in [unique("billing"), unique("mailing")] {
        let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
        let mut received = HashSet::new();
        for delivery in take(&mut deliveries, ids.len()).await {
            received.insert(delivery.ack().await.unwrap().event_id);
        }
        assert_eq!(received, ids, "group {group}");
    }
}

/// Runs a member in the background, acknowledging everything and reporting what it got.
fn spawn_member(mut deliveries: Deliveries, member: usize, tx: mpsc::UnboundedSender<(usize, i32, Uuid)>) {
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.next().await {
            let Ok(delivery) = delivery else { continue };
            let partition = delivery.partition();
            let Ok(envelope) = delivery.ack().await else { continue };
            if tx.send((member, partition, envelope.event_id)).is_err() {
                break;
            }
        }
    });
}

pub async fn one_group_members_split_partitions(bus: Arc<dyn EventBus>) {
    let topic = unique("split");
    let group = unique("group");
    let (tx, mut rx) = mpsc::unbounded_channel();
    for member in 0..2 {
        spawn_member(bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap(), member, tx.clone());
    }
    // A Kafka group needs a moment (and possibly a rebalance) before both members own
    // partitions: publish rounds until one round is split cleanly between the two.
    for round in 0..20 {
        let mut pending = HashSet::new();
        for n in 0..32 {
            let envelope = envelope(&format!("cart-{n}"), u64::try_from(round).unwrap() + 1, 0);
            pending.insert(envelope.event_id);
            bus.publish(&topic, envelope.stream_id.as_str(), &envelope).await.unwrap();
        }
        let mut owners: HashMap<i32, HashSet<usize>> = HashMap::new();
        let mut members = HashSet::new();
        while !pending.is_empty() {
            let (member, partition, id) =
                tokio::time::timeout(WAIT, rx.recv()).await.expect("round not delivered").expect("members gone");
            if pending.remove(&id) {
                owners.entry(partition).or_default().insert(member);
                members.insert(member);
            }
        }
        if members.len() == 2 && owners.values().all(|m| m.len() == 1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the two members of one group never split the partitions");
}

pub async fn unacknowledged_messages_are_redelivered_after_restart(bus: Arc<dyn EventBus>) {
    let topic = unique("redeliver");
    let group = unique("group");
    let sent: Vec<Envelope> = (1..=5).map(|v| envelope("cart-1", v, v)).collect();
    for envelope in &sent {
        bus.publish(&topic, "cart-1", envelope).await.unwrap();
    }
    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let first: Vec<Uuid> = take(&mut deliveries, 5).await.iter().map(|d| d.envelope().event_id).collect();
    drop(deliveries);

    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let again: Vec<Uuid> = take(&mut deliveries, 5).await.iter().map(|d| d.envelope().event_id).collect();
    assert_eq!(first, again);
    assert_eq!(again, sent.iter().map(|e| e.event_id).collect::<Vec<_>>());
}

pub async fn commit_after_ack_resumes_exactly_where_acknowledged(bus: Arc<dyn EventBus>) {
    let topic = unique("resume");
    let group = unique("group");
    for version in 1..=10 {
        bus.publish(&topic, "cart-1", &envelope("cart-1", version, version)).await.unwrap();
    }
    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let mut taken = take(&mut deliveries, 10).await;
    let unacked = taken.split_off(4);
    for delivery in taken {
        delivery.ack().await.unwrap();
    }
    drop(unacked);
    drop(deliveries);

    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), &group).await.unwrap();
    let versions: Vec<u64> = take(&mut deliveries, 6).await.iter().map(|d| d.envelope().stream_version).collect();
    assert_eq!(versions, (5..=10).collect::<Vec<_>>());
    for version in 11..=12 {
        bus.publish(&topic, "cart-1", &envelope("cart-1", version, version)).await.unwrap();
    }
    let later: Vec<u64> = take(&mut deliveries, 2).await.iter().map(|d| d.envelope().stream_version).collect();
    assert_eq!(later, vec![11, 12]);
}
