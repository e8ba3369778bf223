//! Backend-independent checks every `EventStore` must pass. Each function gets a fresh, empty store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    clippy::cast_possible_truncation,
    clippy::missing_panics_doc
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_store::{
    CheckpointStore, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot,
    StreamAppend, StreamId, Upcasters,
};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

/// How long a test waits for a live event before declaring it lost.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until the global log is readable up to `position`. A Postgres reader lags behind
/// transactions still open anywhere in the cluster (the I7 frontier), such as other tests' writers.
pub async fn settle(store: &dyn EventStore, position: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + LIVE_TIMEOUT;
    loop {
        let head = store.head_position().await.unwrap();
        if head >= position {
            return head;
        }
        assert!(tokio::time::Instant::now() < deadline, "head stuck at {head}, waiting for {position}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn sid(value: &str) -> StreamId {
    StreamId::new(value).unwrap()
}

pub fn event(n: u64) -> NewEvent {
    NewEvent::new("Counted", 1, json!({ "n": n }))
}

pub fn events(range: std::ops::Range<u64>) -> Vec<NewEvent> {
    range.map(event).collect()
}

async fn append(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    count: u64,
) -> Result<boxoffice::event_store::AppendResult, EventStoreError> {
    store.append(stream, expected, events(0..count), &Metadata::default(), None).await
}

async fn next_live(
    subscription: &mut futures::stream::BoxStream<'static, Result<Envelope, EventStoreError>>,
) -> Envelope {
    tokio::time::timeout(LIVE_TIMEOUT, subscription.next())
        .await
        .expect("subscription delivered nothing in time")
        .expect("subscription ended")
        .expect("subscription failed")
}

pub async fn append_and_load_round_trip(store: Arc<dyn EventStore>) {
    let stream = sid("round-trip-1");
    let metadata = Metadata {
        correlation_id: Some(Uuid::new_v4()),
        causation_id: Some(Uuid::new_v4()),
        node_id: Some(Uuid::new_v4()),
        headers: BTreeMap::from([("trace".to_owned(), "abc".to_owned())]),
    };
    let sent = vec![
        NewEvent::new("Opened", 1, json!({ "name": "x" })),
        NewEvent::new("Renamed", 2, json!({ "name": "y", "nested": [1, 2, { "k": null }] })),
    ];
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let result = store.append(&stream, ExpectedVersion::NoStream, sent.clone(), &metadata, None).await.unwrap();
    assert_eq!(result.stream_version, 2);
    assert_eq!(result.last_global_position, result.first_global_position + 1);
    assert!(result.first_global_position >= 1);

    let loaded = store.load_stream(&stream, 1).await.unwrap();
    assert_eq!(loaded.len(), 2);
    for (index, (envelope, original)) in loaded.iter().zip(&sent).enumerate() {
        assert_eq!(envelope.event_id, original.event_id);
        assert_eq!(&*envelope.event_type, original.event_type);
        assert_eq!(envelope.schema_version, original.schema_version);
        assert_eq!(*envelope.payload, original.payload);
        assert_eq!(*envelope.metadata, metadata);
        assert_eq!(envelope.stream_id, stream);
        assert_eq!(envelope.stream_version, index as u64 + 1);
        assert_eq!(envelope.global_position, result.first_global_position + index as u64);
        assert!(envelope.recorded_at > before);
    }
    assert_eq!(store.load_stream(&stream, 2).await.unwrap(), loaded[1..].to_vec());
    assert!(store.load_stream(&stream, 3).await.unwrap().is_empty());
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    assert_eq!(store.stream_version(&sid("absent")).await.unwrap(), 0);
    assert!(store.load_stream(&sid("absent"), 1).await.unwrap().is_empty());
}

pub async fn expected_version_conflicts(store: Arc<dyn EventStore>) {
    let stream = sid("conflicts-1");
    append(&*store, &stream, ExpectedVersion::Exact(0), 1).await.unwrap();
    let err = append(&*store, &stream, ExpectedVersion::NoStream, 1).await.unwrap_err();
    assert!(
        matches!(&err, EventStoreError::ConcurrencyConflict { stream: s, expected: ExpectedVersion::NoStream, actual: 1 } if *s == stream),
        "{err:?}"
    );
    let err = append(&*store, &stream, ExpectedVersion::Exact(5), 1).await.unwrap_err();
    assert!(matches!(err, EventStoreError::ConcurrencyConflict { actual: 1, expected: ExpectedVersion::Exact(5), .. }));
    assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
    assert_eq!(append(&*store, &stream, ExpectedVersion::Exact(1), 2).await.unwrap().stream_version, 3);
    assert_eq!(append(&*store, &stream, ExpectedVersion::Any, 1).await.unwrap().stream_version, 4);
    assert_eq!(store.load_stream(&stream, 1).await.unwrap().len(), 4);
    assert_eq!(append(&*store, &sid("conflicts-2"), ExpectedVersion::Any, 1).await.unwrap().stream_version, 1);
}

/// 16+ appenders race for each version of one stream: exactly one wins each round, the others get a
/// conflict, and the stream ends up gap-free.
pub async fn concurrent_appenders_one_winner_per_version(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 20;
    const ROUNDS: u64 = 5;
    let stream = sid("contended-1");
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            let stream = stream.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let event = NewEvent::new("Counted", 1, json!({ "round": round, "writer": writer }));
                store.append(&stream, ExpectedVersion::Exact(round), vec![event], &Metadata::default(), None).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(result) => {
                    winners += 1;
                    assert_eq!(result.stream_version, round + 1);
                }
                Err(EventStoreError::ConcurrencyConflict { actual, .. }) => assert_eq!(actual, round + 1),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    let loaded = store.load_stream(&stream, 1).await.unwrap();
    let versions: Vec<u64> = loaded.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=ROUNDS).collect::<Vec<_>>());

    // Appenders with `Any` never lose events and keep each append contiguous.
    let any_stream = sid("contended-any");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS as u64 {
        let store = store.clone();
        let stream = any_stream.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<NewEvent> =
                (0..3).map(|i| NewEvent::new("Counted", 1, json!({ "writer": writer, "i": i }))).collect();
            store.append(&stream, ExpectedVersion::Any, batch, &Metadata::default(), None).await.unwrap()
        }));
    }
    for task in tasks {
        let result = task.await.unwrap();
        assert_eq!(result.last_global_position - result.first_global_position, 2);
    }
    let loaded = store.load_stream(&any_stream, 1).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=3 * WRITERS as u64).collect::<Vec<_>>()
    );
    for chunk in loaded.chunks(3) {
        assert!(chunk.iter().all(|e| e.payload["writer"] == chunk[0].payload["writer"]));
        assert_eq!(chunk.iter().map(|e| e.payload["i"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}

pub async fn idempotent_append(store: Arc<dyn EventStore>) {
    let stream = sid("idempotent-1");
    let batch = events(0..2);
    let first = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone(), &Metadata::default(), Some("key-1"))
        .await
        .unwrap();
    // A retry, even with a now-stale expectation, returns the original result and writes nothing.
    let again = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone(), &Metadata::default(), Some("key-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(store.stream_version(&stream).await.unwrap(), 2);
    let head = settle(&*store, first.last_global_position).await;
    assert_eq!(head, first.last_global_position);

    let err = store
        .append(&stream, ExpectedVersion::Any, events(0..2), &Metadata::default(), Some("key-1"))
        .await
        .unwrap_err();
    assert!(matches!(&err, EventStoreError::IdempotencyKeyReused { key, .. } if key == "key-1"), "{err:?}");
    let err = store
        .append(&sid("idempotent-2"), ExpectedVersion::Any, batch.clone(), &Metadata::default(), Some("key-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, EventStoreError::IdempotencyKeyReused { .. }));
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(store.stream_version(&sid("idempotent-2")).await.unwrap(), 0);

    // Concurrent retries of one keyed append write it once.
    let stream = sid("idempotent-3");
    let batch = events(0..1);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let stream = stream.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            store.append(&stream, ExpectedVersion::Any, batch, &Metadata::default(), Some("key-3")).await.unwrap()
        }));
    }
    let mut results = HashSet::new();
    for task in tasks {
        results.insert(task.await.unwrap());
    }
    assert_eq!(results.len(), 1);
    assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
}

pub async fn global_order(store: Arc<dyn EventStore>) {
    assert_eq!(store.head_position().await.unwrap(), 0);
    assert_eq!(store.last_committed_position().await.unwrap(), 0);
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    let mut expected = Vec::new();
    for round in 0..5u64 {
        for stream in ["order-a", "order-b", "order-c"] {
            let result = append(&*store, &sid(stream), ExpectedVersion::Any, round % 2 + 1).await.unwrap();
            expected.push((stream.to_owned(), result));
        }
    }
    let total: u64 = expected.iter().map(|(_, r)| r.last_global_position - r.first_global_position + 1).sum();
    // Committed means committed at once, even before the readable head gets there.
    assert_eq!(store.last_committed_position().await.unwrap(), expected.last().unwrap().1.last_global_position);
    settle(&*store, expected.last().unwrap().1.last_global_position).await;
    let all = store.read_all(0, 1000).await.unwrap();
    assert_eq!(all.len() as u64, total);
    assert!(all.windows(2).all(|w| w[0].global_position < w[1].global_position));
    assert_eq!(all.first().unwrap().global_position, expected[0].1.first_global_position);
    assert_eq!(store.head_position().await.unwrap(), all.last().unwrap().global_position);
    let mut streams_seen: Vec<(String, u64)> = Vec::new();
    for (stream, result) in &expected {
        for position in result.first_global_position..=result.last_global_position {
            let envelope = all.iter().find(|e| e.global_position == position).unwrap();
            assert_eq!(envelope.stream_id.as_str(), stream);
            streams_seen.push((stream.clone(), envelope.stream_version));
        }
    }
    // Paging with a small limit yields the same sequence.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().unwrap().global_position;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(store.read_all(after, 10).await.unwrap().is_empty());
    assert_eq!(store.read_all(all[2].global_position, 1).await.unwrap()[0], all[3]);
}

pub async fn subscription_catch_up_then_live(store: Arc<dyn EventStore>) {
    let stream = sid("subscribed-1");
    for _ in 0..5 {
        append(&*store, &stream, ExpectedVersion::Any, 1).await.unwrap();
    }
    let mut subscription = store.subscribe(0);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_live(&mut subscription).await);
    }
    let writer = {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                append(&*store, &stream, ExpectedVersion::Any, 2).await.unwrap();
            }
        })
    };
    for _ in 0..6 {
        seen.push(next_live(&mut subscription).await);
    }
    writer.await.unwrap();
    let versions: Vec<u64> = seen.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=11).collect::<Vec<_>>());
    assert!(seen.windows(2).all(|w| w[0].global_position < w[1].global_position));
    // Nothing more arrives.
    assert!(tokio::time::timeout(Duration::from_millis(200), subscription.next()).await.is_err());
}

pub async fn resume_from_checkpoint(store: Arc<dyn EventStore>, checkpoints: Arc<dyn CheckpointStore>) {
    let stream = sid("resumed-1");
    append(&*store, &stream, ExpectedVersion::Any, 10).await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("consumer").await.unwrap(), 0);
    let mut subscription = store.subscribe(checkpoints.load_checkpoint("consumer").await.unwrap());
    for _ in 0..4 {
        let envelope = next_live(&mut subscription).await;
        checkpoints.save_checkpoint("consumer", envelope.global_position).await.unwrap();
    }
    drop(subscription);
    append(&*store, &stream, ExpectedVersion::Any, 2).await.unwrap();
    let checkpoint = checkpoints.load_checkpoint("consumer").await.unwrap();
    let mut resumed = store.subscribe(checkpoint);
    let mut versions = Vec::new();
    for _ in 0..8 {
        versions.push(next_live(&mut resumed).await.stream_version);
    }
    assert_eq!(versions, (5..=12).collect::<Vec<_>>());
    checkpoints.save_checkpoint("consumer", 3).await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("consumer").await.unwrap(), 3);
    assert_eq!(checkpoints.load_checkpoint("other").await.unwrap(), 0);
}

pub async fn snapshot_round_trip(store: Arc<dyn EventStore>) {
    let stream = sid("snapshotted-1");
    assert!(store.load_snapshot(&stream).await.unwrap().is_none());
    let snapshot = Snapshot {
        stream_id: stream.clone(),
        stream_version: 7,
        state: json!({ "sold": 3 }).to_string(),
        schema_version: 2,
    };
    store.save_snapshot(snapshot.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot.clone()));
    let older = Snapshot { stream_version: 5, state: json!({ "sold": 1 }).to_string(), ..snapshot.clone() };
    store.save_snapshot(older).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(snapshot.clone()));
    let newer = Snapshot { stream_version: 9, state: json!({ "sold": 4 }).to_string(), ..snapshot };
    store.save_snapshot(newer.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), Some(newer));
    assert!(store.load_snapshot(&sid("snapshotted-2")).await.unwrap().is_none());
}

pub async fn large_payloads(store: Arc<dyn EventStore>) {
    let stream = sid("large-1");
    let blob = "x".repeat(1024 * 1024);
    let payload = json!({ "blob": blob, "list": (0..10_000).collect::<Vec<u32>>() });
    let event = NewEvent::new("Large", 1, payload.clone());
    let result =
        store.append(&stream, ExpectedVersion::NoStream, vec![event], &Metadata::default(), None).await.unwrap();
    assert_eq!(*store.load_stream(&stream, 1).await.unwrap()[0].payload, payload);
    settle(&*store, result.last_global_position).await;
    assert_eq!(*store.read_all(0, 10).await.unwrap()[0].payload, payload);
}

pub async fn bad_input_is_rejected(store: Arc<dyn EventStore>) {
    let stream = sid("bad-input-1");
    let err = store.append(&stream, ExpectedVersion::Any, Vec::new(), &Metadata::default(), None).await.unwrap_err();
    assert!(matches!(&err, EventStoreError::EmptyAppend { stream: s } if *s == stream), "{err:?}");
    let ok = StreamAppend::new(sid("bad-input-2"), ExpectedVersion::Any, events(0..1));
    let empty = StreamAppend::new(stream.clone(), ExpectedVersion::Any, Vec::new());
    assert!(matches!(store.append_batch(vec![ok, empty]).await, Err(EventStoreError::EmptyAppend { .. })));
    for bad in ["", "with space", "tab\there", "nul\u{0}", &"s".repeat(201)] {
        assert!(matches!(StreamId::new(bad), Err(EventStoreError::InvalidStreamId { .. })), "{bad:?}");
    }
    assert_eq!(store.head_position().await.unwrap(), 0);
    assert!(store.read_all(0, 10).await.unwrap().is_empty());
    assert!(store.append_batch(Vec::new()).await.unwrap().is_empty());
}

pub async fn append_batch_is_atomic(store: Arc<dyn EventStore>) {
    let a = sid("batch-a");
    let b = sid("batch-b");
    let first = append(&*store, &b, ExpectedVersion::Any, 1).await.unwrap();
    let head = settle(&*store, first.last_global_position).await;
    let err = store
        .append_batch(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, events(0..3)),
            StreamAppend::new(b.clone(), ExpectedVersion::NoStream, events(0..1)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(&err, EventStoreError::ConcurrencyConflict { stream, actual: 1, .. } if *stream == b), "{err:?}");
    assert_eq!(store.stream_version(&a).await.unwrap(), 0);
    assert_eq!(store.head_position().await.unwrap(), head);

    let results = store
        .append_batch(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, events(0..3)),
            StreamAppend::new(b.clone(), ExpectedVersion::Exact(1), events(0..2)),
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(3), events(0..1)),
        ])
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.stream_version).collect::<Vec<_>>(), vec![3, 3, 4]);
    assert!(results.windows(2).all(|w| w[0].last_global_position < w[1].first_global_position));
    assert_eq!(store.load_stream(&a, 1).await.unwrap().len(), 4);
    settle(&*store, results.last().unwrap().last_global_position).await;
    let all = store.read_all(head, 100).await.unwrap();
    assert_eq!(all.len(), 6);
}

/// Two appends of one batch under one idempotency key: the same append twice is written once and
/// both get its result; two different appends under one key refuse the batch.
pub async fn idempotency_keys_within_one_batch(store: Arc<dyn EventStore>) {
    let keyed = |stream: &str, events: Vec<NewEvent>, key: &str| {
        let mut append = StreamAppend::new(sid(stream), ExpectedVersion::Any, events);
        append.idempotency_key = Some(key.to_owned());
        append
    };
    let batch = events(0..2);
    let results = store
        .append_batch(vec![
            keyed("in-batch-1", batch.clone(), "in-batch-key"),
            keyed("in-batch-1", batch, "in-batch-key"),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].stream_version, 2);
    assert_eq!(store.stream_version(&sid("in-batch-1")).await.unwrap(), 2);
    let head = settle(&*store, results[0].last_global_position).await;

    let err = store
        .append_batch(vec![
            keyed("in-batch-2", events(0..1), "in-batch-key-2"),
            keyed("in-batch-2", events(5..6), "in-batch-key-2"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(&err, EventStoreError::IdempotencyKeyReused { key, .. } if key == "in-batch-key-2"), "{err:?}");
    assert_eq!(store.stream_version(&sid("in-batch-2")).await.unwrap(), 0);
    assert_eq!(store.head_position().await.unwrap(), head);
    // Nothing of the refused batch was kept: the key is free for a first real use.
    let written = store
        .append(
            &sid("in-batch-2"),
            ExpectedVersion::NoStream,
            events(5..6),
            &Metadata::default(),
            Some("in-batch-key-2"),
        )
        .await
        .unwrap();
    assert_eq!(written.stream_version, 1);
}

pub fn upcasters() -> Upcasters {
    let mut upcasters = Upcasters::new();
    upcasters.register("Priced", 1, |payload| json!({ "amount_minor": payload["amount"].as_u64().unwrap_or(0) * 100 }));
    upcasters.register("Priced", 2, |mut payload| {
        payload["currency"] = json!("EUR");
        payload
    });
    upcasters.register_fallible("Broken", 1, |_| Err("no longer supported".to_owned()));
    upcasters
}

/// `store` must have been built with [`upcasters`].
pub async fn upcasting_on_every_read_path(store: Arc<dyn EventStore>) {
    let stream = sid("upcast-1");
    let v1 = NewEvent::new("Priced", 1, json!({ "amount": 12 }));
    let v2 = NewEvent::new("Priced", 2, json!({ "amount_minor": 500 }));
    let v3 = NewEvent::new("Priced", 3, json!({ "amount_minor": 7, "currency": "USD" }));
    let written =
        store.append(&stream, ExpectedVersion::NoStream, vec![v1, v2, v3], &Metadata::default(), None).await.unwrap();
    settle(&*store, written.last_global_position).await;
    let expected = vec![
        json!({ "amount_minor": 1200, "currency": "EUR" }),
        json!({ "amount_minor": 500, "currency": "EUR" }),
        json!({ "amount_minor": 7, "currency": "USD" }),
    ];
    let check = |events: &[Envelope]| {
        assert_eq!(events.iter().map(|e| (*e.payload).clone()).collect::<Vec<_>>(), expected);
        assert!(events.iter().all(|e| e.schema_version == 3));
    };
    check(&store.load_stream(&stream, 1).await.unwrap());
    check(&store.read_all(0, 10).await.unwrap());
    let mut subscription = store.subscribe(0);
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(next_live(&mut subscription).await);
    }
    check(&live);

    let broken = NewEvent::new("Broken", 1, json!({}));
    let broken_id = broken.event_id;
    let written = store
        .append(&sid("upcast-2"), ExpectedVersion::NoStream, vec![broken], &Metadata::default(), None)
        .await
        .unwrap();
    settle(&*store, written.last_global_position).await;
    let err = store.load_stream(&sid("upcast-2"), 1).await.unwrap_err();
    assert!(matches!(err, EventStoreError::Upcast { event_id, schema_version: 1, .. } if event_id == broken_id));
    let bad = written.last_global_position;
    assert_eq!(err.bad_event_position(), Some(bad), "the error names the bad event's position");
    // A bad event ends a page of the global log: the events before it are read, a read that
    // starts at it fails naming it, and a read after it goes on.
    check(&store.read_all(0, 10).await.unwrap());
    let at_bad = store.read_all(live.last().unwrap().global_position, 10).await.unwrap_err();
    assert_eq!(at_bad.bad_event_position(), Some(bad), "{at_bad}");
    let err = tokio::time::timeout(LIVE_TIMEOUT, subscription.next()).await.unwrap().unwrap();
    assert!(matches!(err, Err(EventStoreError::Upcast { global_position, .. }) if global_position == bad));
    let after = store
        .append(
            &sid("upcast-3"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Fine", 1, json!({}))],
            &Metadata::default(),
            None,
        )
        .await
        .unwrap();
    settle(&*store, after.last_global_position).await;
    let read_on: Vec<u64> = store.read_all(bad, 10).await.unwrap().iter().map(|e| e.global_position).collect();
    assert_eq!(read_on, vec![after.last_global_position]);
    let mut resumed = store.subscribe(bad);
    assert_eq!(next_live(&mut resumed).await.global_position, after.last_global_position);
}

/// Writers on many streams and a tailing subscriber: every event arrives exactly once, each stream in
/// version order.
pub async fn subscriber_sees_concurrent_writes_exactly_once(store: Arc<dyn EventStore>) {
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 25;
    let expected_total = (WRITERS * APPENDS * 2) as usize;
    let mut subscription = store.subscribe(0);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = sid(&format!("tailed-{writer}"));
            for i in 0..APPENDS {
                store
                    .append(&stream, ExpectedVersion::Exact(i * 2), events(0..2), &Metadata::default(), None)
                    .await
                    .unwrap();
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut last_position = 0;
    while seen.len() < expected_total {
        let envelope = next_live(&mut subscription).await;
        assert!(envelope.global_position > last_position);
        last_position = envelope.global_position;
        assert!(seen.insert(envelope.event_id), "duplicate {envelope:?}");
        let version = versions.entry(envelope.stream_id.clone()).or_default();
        assert_eq!(envelope.stream_version, *version + 1);
        *version += 1;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), subscription.next()).await.is_err());
}

/// One `#[tokio::test]` per store-only conformance check, each on the store `$store` builds (an
/// expression evaluated inside the async test, so it may `.await`).
macro_rules! conformance_suite {
    ($store:expr) => {
        event_store_conformance::conformance_suite!(
            $store;
            append_and_load_round_trip,
            expected_version_conflicts,
            concurrent_appenders_one_winner_per_version,
            idempotent_append,
            global_order,
            subscription_catch_up_then_live,
            snapshot_round_trip,
            large_payloads,
            bad_input_is_rejected,
            append_batch_is_atomic,
            idempotency_keys_within_one_batch,
            subscriber_sees_concurrent_writes_exactly_once,
        );
    };
    ($store:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            event_store_conformance::$name($store).await;
        }
    )*};
}
pub(crate) use conformance_suite;

/// A checkpoint several processes save under one name, each a true lower bound: advancing never
/// moves it back, however the saves interleave, while `save_checkpoint` still sets it outright.
pub async fn a_shared_checkpoint_only_moves_forward(checkpoints: Arc<dyn CheckpointStore>) {
    checkpoints.advance_checkpoint("shared", 40).await.unwrap();
    checkpoints.advance_checkpoint("shared", 25).await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("shared").await.unwrap(), 40, "a lower frontier moved it back");
    checkpoints.advance_checkpoint("shared", 41).await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("shared").await.unwrap(), 41);
    // Sixteen writers at once, each saving its own positions in an order of its own.
    let writers = (0..16u64).map(|w| {
        let checkpoints = Arc::clone(&checkpoints);
        tokio::spawn(async move {
            for i in 0..20u64 {
                let position = 100 + (i * 7 + w * 13) % 200;
                checkpoints.advance_checkpoint("crowd", position).await.unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let highest = (0..16u64).flat_map(|w| (0..20u64).map(move |i| 100 + (i * 7 + w * 13) % 200)).max().unwrap();
    assert_eq!(checkpoints.load_checkpoint("crowd").await.unwrap(), highest);
    checkpoints.save_checkpoint("shared", 3).await.unwrap();
    assert_eq!(checkpoints.load_checkpoint("shared").await.unwrap(), 3, "saving still sets it outright");
}
