//! The conformance suite against `FanOutEventStore` over `MemoryEventStore`, with a tail so short
//! that subscribers keep falling behind it and catching up through the wrapped store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod event_store_conformance;

use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_store::{EventStore, ExpectedVersion, FanOutEventStore, MemoryEventStore, Metadata, StreamId};
use event_store_conformance::events;
use futures::StreamExt;

fn store() -> Arc<dyn EventStore> {
    Arc::new(FanOutEventStore::new(Arc::new(MemoryEventStore::new()), 8))
}

event_store_conformance::conformance_suite!(store());

/// Many subscribers starting at different points (behind the tail, inside it, at the head) while
/// writers append: each sees every event after its start exactly once, in order, and the wrapped
/// store is subscribed to once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_anywhere_see_every_later_event_once_in_order() {
    let inner = Arc::new(MemoryEventStore::new());
    let shared = FanOutEventStore::new(Arc::clone(&inner) as Arc<dyn EventStore>, 16);
    let stream = StreamId::new("s-0").unwrap();
    for _ in 0..50 {
        shared.append(&stream, ExpectedVersion::Any, events(0..1), &Metadata::default(), None).await.unwrap();
    }
    let writer = {
        let shared = shared.clone();
        tokio::spawn(async move {
            for i in 0..400_u64 {
                let stream = StreamId::new(format!("s-{}", i % 7)).unwrap();
                shared.append(&stream, ExpectedVersion::Any, events(0..2), &Metadata::default(), None).await.unwrap();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let total = 50 + 400 * 2;
    let readers: Vec<_> = [0_u64, 10, 45, 50, 300, 700]
        .into_iter()
        .map(|start| {
            let mut live = shared.subscribe(start);
            tokio::spawn(async move {
                let mut expected = start + 1;
                while expected <= total {
                    let event = tokio::time::timeout(Duration::from_secs(10), live.next())
                        .await
                        .unwrap_or_else(|_| panic!("reader from {start} stalled at {expected}"))
                        .unwrap()
                        .unwrap();
                    assert_eq!(event.global_position, expected, "reader from {start}");
                    expected += 1;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

/// The hand-over point: once the tail holds only events after position 6, readers that last saw
/// each position from 0 to 10 still get every later event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_at_every_position_around_the_tail_start_miss_nothing() {
    let shared = FanOutEventStore::new(Arc::new(MemoryEventStore::new()), 4);
    let mut first = shared.subscribe(0); // starts the pump at the head (0)
    let stream = StreamId::new("s").unwrap();
    for _ in 0..10 {
        shared.append(&stream, ExpectedVersion::Any, events(0..1), &Metadata::default(), None).await.unwrap();
    }
    for expected in 1..=10 {
        assert_eq!(first.next().await.unwrap().unwrap().global_position, expected);
    }
    let mut readers = Vec::new();
    for start in 0..=10_u64 {
        let mut reader = shared.subscribe(start);
        let wanted = reader.by_ref().take(usize::try_from(10 - start).unwrap()).map(|e| e.unwrap().global_position);
        let got: Vec<u64> = tokio::time::timeout(Duration::from_secs(5), wanted.collect())
            .await
            .unwrap_or_else(|_| panic!("reader after {start} stalled: an event was skipped"));
        assert_eq!(got, ((start + 1)..=10).collect::<Vec<_>>(), "reader after {start}");
        readers.push(reader);
    }
    shared.append(&stream, ExpectedVersion::Any, events(0..1), &Metadata::default(), None).await.unwrap();
    for (start, reader) in readers.iter_mut().enumerate() {
        let next = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(next.global_position, 11, "reader after {start} then sees the next write");
    }
}
