//! The conformance suite against `MemoryEventStore`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod event_store_conformance;

use std::sync::Arc;

use boxoffice::event_store::{EventStore, MemoryEventStore};
use event_store_conformance as conformance;
use futures::StreamExt;

fn store() -> Arc<dyn EventStore> {
    Arc::new(MemoryEventStore::new())
}

event_store_conformance::conformance_suite!(store());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_from_checkpoint() {
    let store = MemoryEventStore::new();
    conformance::resume_from_checkpoint(Arc::new(store.clone()), Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_checkpoint_only_moves_forward() {
    conformance::a_shared_checkpoint_only_moves_forward(Arc::new(MemoryEventStore::new())).await;
    conformance::a_shared_checkpoint_only_moves_forward(Arc::new(boxoffice::event_store::MemoryCheckpointStore::new()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upcasting_on_every_read_path() {
    conformance::upcasting_on_every_read_path(Arc::new(
        MemoryEventStore::new().with_upcasters(conformance::upcasters()),
    ))
    .await;
}

/// Reads hand out the log's own payload, event type, metadata and stream id: reading an event copies
/// pointers, and only an upcaster that lifts an event gives that reader a fresh payload.
#[tokio::test]
async fn reads_share_what_the_log_stores() {
    use boxoffice::event_store::{ExpectedVersion, Metadata, NewEvent};
    use serde_json::json;

    let store = MemoryEventStore::new().with_upcasters(conformance::upcasters());
    let stream = conformance::sid("shared-1");
    let metadata = Metadata { correlation_id: Some(uuid::Uuid::new_v4()), ..Metadata::default() };
    let events =
        vec![NewEvent::new("Counted", 1, json!({ "n": 1 })), NewEvent::new("Priced", 1, json!({ "amount": 2 }))];
    store.append(&stream, ExpectedVersion::NoStream, events, &metadata, None).await.unwrap();

    let first = store.read_all(0, 10).await.unwrap();
    let second = store.read_all(0, 10).await.unwrap();
    let subscribed = store.subscribe(0).take(2).map(Result::unwrap).collect::<Vec<_>>().await;
    let loaded = store.load_stream(&stream, 1).await.unwrap();
    for other in [&second, &subscribed, &loaded] {
        assert!(Arc::ptr_eq(&first[0].payload, &other[0].payload));
        assert!(Arc::ptr_eq(&first[0].event_type, &other[0].event_type));
        assert!(Arc::ptr_eq(&first[0].metadata, &other[0].metadata));
        assert_eq!(first[0].stream_id.as_str().as_ptr(), other[0].stream_id.as_str().as_ptr());
        // The upcast event gets its own copy, lifted, and leaves the stored one alone.
        assert!(!Arc::ptr_eq(&first[1].payload, &other[1].payload));
        assert_eq!(other[1].payload, first[1].payload);
    }
    assert!(Arc::ptr_eq(&first[0].metadata, &first[1].metadata), "one append shares its metadata");
    assert_eq!(*first[1].payload, json!({ "amount_minor": 200, "currency": "EUR" }));
}

mod model {
    use std::collections::HashMap;

    use boxoffice::event_store::{EventStore, EventStoreError, ExpectedVersion, MemoryEventStore, Metadata};
    use proptest::prelude::*;

    use super::conformance::{events, sid};

    #[derive(Clone, Debug)]
    struct Op {
        stream: u8,
        expected: ExpectedVersion,
        count: u64,
    }

    fn op() -> impl Strategy<Value = Op> {
        let expected = prop_oneof![
            Just(ExpectedVersion::Any),
            Just(ExpectedVersion::NoStream),
            (0u64..4).prop_map(ExpectedVersion::Exact)
        ];
        (0u8..3, expected, 0u64..3).prop_map(|(stream, expected, count)| Op { stream, expected, count })
    }

    proptest! {
        /// I6 and I9 against a trivial model: stale expectations and empty appends write nothing and
        /// say why; accepted appends get the next versions and the next dense global positions.
        #[test]
        fn appends_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let store = MemoryEventStore::new();
                let mut versions: HashMap<u8, u64> = HashMap::new();
                let mut head = 0;
                for op in ops {
                    let stream = sid(&format!("model-{}", op.stream));
                    let current = versions.get(&op.stream).copied().unwrap_or(0);
                    let outcome = store.append(&stream, op.expected, events(0..op.count), &Metadata::default(), None).await;
                    match outcome {
                        Err(EventStoreError::EmptyAppend { .. }) => prop_assert_eq!(op.count, 0),
                        Err(EventStoreError::ConcurrencyConflict { actual, .. }) => {
                            prop_assert!(op.count > 0 && !op.expected.matches(current));
                            prop_assert_eq!(actual, current);
                        }
                        Ok(result) => {
                            prop_assert!(op.count > 0 && op.expected.matches(current));
                            prop_assert_eq!(result.stream_version, current + op.count);
                            prop_assert_eq!(result.first_global_position, head + 1);
                            prop_assert_eq!(result.last_global_position, head + op.count);
                            head += op.count;
                            versions.insert(op.stream, current + op.count);
                        }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                    prop_assert_eq!(store.head_position().await.unwrap(), head);
                    prop_assert_eq!(store.stream_version(&stream).await.unwrap(), versions.get(&op.stream).copied().unwrap_or(0));
                }
                let all = store.read_all(0, usize::MAX).await.unwrap();
                prop_assert_eq!(all.len() as u64, head);
                for (index, envelope) in all.iter().enumerate() {
                    prop_assert_eq!(envelope.global_position, index as u64 + 1);
                }
                Ok(())
            })?;
        }
    }
}

/// An event older than the last 16,384 gives up its tree and is read back from its text: every
/// read path returns what was appended (ids, type, metadata, time, awkward JSON), upcasters still
/// lift it, and two reads no longer share one tree; the newest events still share theirs.
#[tokio::test]
async fn an_old_event_reads_back_from_its_text_as_it_was_appended() {
    use boxoffice::event_store::{Envelope, ExpectedVersion, Metadata, NewEvent};
    use serde_json::json;

    let store = MemoryEventStore::new().with_upcasters(conformance::upcasters());
    let old = conformance::sid("old-1");
    let awkward = json!({
        "text": "é ☃ \"quoted\" \\ \u{1} \u{2028}",
        "big": u64::MAX,
        "negative": i64::MIN,
        "float": 0.1 + 0.2,
        "tiny": 5e-324,
        "nested": { "list": [1, null, true, { "k": [] }], "empty": {} },
    });
    let metadata = Metadata {
        correlation_id: Some(uuid::Uuid::new_v4()),
        headers: [("traceparent".to_owned(), "00-abc-01".to_owned())].into(),
        ..Metadata::default()
    };
    let first = NewEvent::new("Awkward", 1, awkward.clone());
    let priced = NewEvent::new("Priced", 1, json!({ "amount": 3 }));
    store.append(&old, ExpectedVersion::NoStream, vec![first.clone(), priced], &metadata, None).await.unwrap();
    let when = store.read_all(0, 1).await.unwrap()[0].recorded_at;
    for chunk in 0..200 {
        let filler = (0..100).map(|i| NewEvent::new("Filler", 1, json!({ "i": i }))).collect();
        let stream = conformance::sid(&format!("filler-{chunk}"));
        store.append(&stream, ExpectedVersion::NoStream, filler, &Metadata::default(), None).await.unwrap();
    }

    let check = |events: &[Envelope]| {
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_id, first.event_id);
        assert_eq!(&*events[0].event_type, "Awkward");
        assert_eq!(*events[0].payload, awkward);
        assert_eq!(*events[0].metadata, metadata);
        assert_eq!((events[0].stream_version, events[0].global_position), (1, 1));
        assert_eq!(events[0].recorded_at, when);
        assert_eq!(*events[1].payload, json!({ "amount_minor": 300, "currency": "EUR" }), "upcast from its text");
    };
    let read = store.read_all(0, 2).await.unwrap();
    check(&read);
    check(&store.load_stream(&old, 1).await.unwrap());
    check(&store.subscribe(0).take(2).map(Result::unwrap).collect::<Vec<_>>().await);
    let again = store.read_all(0, 1).await.unwrap();
    assert!(!Arc::ptr_eq(&read[0].payload, &again[0].payload), "an old event keeps no tree: each read parses its own");

    let head = store.head_position().await.unwrap();
    let newest = store.read_all(head - 1, 1).await.unwrap();
    assert!(Arc::ptr_eq(&newest[0].payload, &store.read_all(head - 1, 1).await.unwrap()[0].payload));
}

/// `with_tree_window` sets how many recent events keep their tree: with a window of 2 the third
/// event from the head is parsed on each read, the last two are shared; with `usize::MAX` every
/// event stays shared.
#[tokio::test]
async fn the_tree_window_is_the_callers_choice() {
    use boxoffice::event_store::{ExpectedVersion, Metadata, NewEvent};
    use serde_json::json;

    for (window, shared) in [(2, [false, true, true]), (usize::MAX, [true, true, true])] {
        let store = MemoryEventStore::new().with_tree_window(window);
        let stream = conformance::sid("window-1");
        let events = (0..3).map(|i| NewEvent::new("Counted", 1, json!({ "n": i }))).collect();
        store.append(&stream, ExpectedVersion::NoStream, events, &Metadata::default(), None).await.unwrap();
        let (first, second) = (store.read_all(0, 3).await.unwrap(), store.load_stream(&stream, 1).await.unwrap());
        for i in 0..3 {
            assert_eq!(*first[i].payload, json!({ "n": i }));
            assert_eq!(Arc::ptr_eq(&first[i].payload, &second[i].payload), shared[i], "window {window}, event {i}");
        }
    }
}

/// With no tree window every event is read from its text at once: small and multi-megabyte
/// payloads, in the chunk being filled and in closed ones, read back as appended while writers
/// keep appending; nothing is lost, reordered or mixed up between streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn texts_read_back_while_writers_append() {
    use boxoffice::event_store::{ExpectedVersion, Metadata, NewEvent};
    use serde_json::json;

    fn payload(writer: usize, n: usize) -> serde_json::Value {
        if n % 1_000 == 999 {
            json!({ "w": writer, "n": n, "big": "x".repeat(3 << 20) })
        } else {
            json!({ "w": writer, "n": n })
        }
    }
    let store = MemoryEventStore::new().with_tree_window(0);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = conformance::sid(&format!("writer-{writer}"));
                for n in 0..2_500 {
                    let event = NewEvent::new("Counted", 1, payload(writer, n));
                    store
                        .append(&stream, ExpectedVersion::Exact(n as u64), vec![event], &Metadata::default(), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let check = |events: &[boxoffice::event_store::Envelope]| {
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.global_position, index as u64 + 1);
            let writer: usize = event.stream_id.as_str().trim_start_matches("writer-").parse().unwrap();
            let n = usize::try_from(event.stream_version - 1).unwrap();
            assert_eq!(*event.payload, payload(writer, n), "event at {}", event.global_position);
        }
    };
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        check(&store.read_all(0, usize::MAX).await.unwrap());
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all = store.read_all(0, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 10_000);
    check(&all);
    assert_eq!(store.load_stream(&conformance::sid("writer-2"), 1).await.unwrap().len(), 2_500);
}
