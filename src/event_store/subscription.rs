//! The one subscription cursor every backend's [`EventStore::subscribe`](super::EventStore::subscribe)
//! is made of: read pages of the global log until caught up, then wait for a wake-up and read again.

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use super::{Envelope, EventStoreError};

/// What a backend supplies to [`subscription`]: a page of the readable log after a position, and
/// a wait for something new.
///
/// The cursor calls [`read_after`](Self::read_after) until a read comes back empty, then
/// [`wait`](Self::wait), then reads again. A wake-up that races with a read must not be lost: a
/// source whose notifications are edge-triggered marks what it has seen at the start of each read
/// (so an append during the read still ends the next wait), and a source that cannot be woken
/// reliably returns from `wait` after a poll interval.
#[async_trait]
pub trait PageSource: Send + 'static {
    /// Up to `limit` readable events with `global_position > after`, in order (empty when caught
    /// up). Readable means no event committed later can take a lower position (invariant I7).
    ///
    /// # Errors
    /// Backend failures; the subscription yields the error and ends.
    async fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError>;

    /// Waits until something may have been appended since the last read began, or a poll
    /// interval passed. Returning early only costs an empty read.
    ///
    /// # Errors
    /// The source can never wake up again (for example the store was closed); the subscription
    /// yields the error and ends.
    async fn wait(&mut self) -> Result<(), EventStoreError>;
}

/// Every event after `after` from `source`, read `page` events at a time: the backlog first, then
/// live events as `source` wakes the cursor. Never skips or repeats an event; ends after yielding
/// the first error.
pub fn subscription<S: PageSource>(
    source: S,
    after: u64,
    page: usize,
) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
    struct Cursor<S> {
        source: S,
        position: u64,
        page: usize,
        buffer: VecDeque<Envelope>,
        failed: bool,
    }
    let cursor = Cursor { source, position: after, page: page.max(1), buffer: VecDeque::new(), failed: false };
    stream::unfold(cursor, |mut cursor| async move {
        if cursor.failed {
            return None;
        }
        loop {
            if let Some(event) = cursor.buffer.pop_front() {
                return Some((Ok(event), cursor));
            }
            let read = match cursor.source.read_after(cursor.position, cursor.page).await {
                Ok(events) if events.is_empty() => cursor.source.wait().await,
                Ok(events) => {
                    if let Some(last) = events.last() {
                        cursor.position = last.global_position;
                    }
                    cursor.buffer.extend(events);
                    Ok(())
                }
                Err(error) => Err(error),
            };
            if let Err(error) = read {
                cursor.failed = true;
                return Some((Err(error), cursor));
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event_store::{Envelope, EventStoreError, StreamId};
    use futures::StreamExt;

    /// A fixed log that never grows: waits end at once, so the cursor simply polls it.
    struct Fixed(Vec<Envelope>);

    #[async_trait::async_trait]
    impl PageSource for Fixed {
        async fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
            Ok(self.0.iter().filter(|e| e.global_position > after).take(limit).cloned().collect())
        }
        async fn wait(&mut self) -> Result<(), EventStoreError> {
            tokio::task::yield_now().await;
            Ok(())
        }
    }
    fn envelope(position: u64) -> Envelope {
        Envelope {
            event_id: uuid::Uuid::new_v4(),
            stream_id: StreamId::new("s").unwrap(),
            stream_version: position,
            global_position: position,
            event_type: "Noted".into(),
            schema_version: 1,
            payload: serde_json::Value::Null.into(),
            metadata: std::sync::Arc::new(crate::event_store::Metadata::default()),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_cursor_reads_pages_after_its_position_and_polls_when_caught_up() {
        let log = Fixed(vec![envelope(1), envelope(3), envelope(4)]);
        let seen: Vec<u64> = subscription(log, 1, 2).take(2).map(|e| e.unwrap().global_position).collect().await;
        assert_eq!(seen, [3, 4]);
    }
}
