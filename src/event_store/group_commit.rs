//! Group commit: concurrent single-stream appends share one backend transaction.
//!
//! A durable backend pays a fixed price per transaction (round trips, locks, a WAL flush) that
//! dwarfs the cost of one more row. Callers submit appends to a [`GroupCommit`]; while fewer than
//! `max_in_flight` flushes run, a submission starts one (a spawned task, so a caller that stops
//! waiting cannot strand the others); otherwise it waits in the queue, and the next flush to free
//! up takes everything queued (up to `max_batch`) in one [`AppendEach::append_each`] call. Under
//! load, batches grow by themselves; alone, an append waits for nothing.
//!
//! Each append keeps its own outcome: a stale expected version fails that append only.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{AppendResult, EventStoreError, StreamAppend};

/// A backend that writes several independent appends in one transaction.
#[async_trait]
pub(crate) trait AppendEach: Send + Sync + 'static {
    /// Writes `appends` in one transaction where possible and returns one outcome per append, in
    /// input order. An append whose precondition fails is skipped with its error; the others are
    /// written.
    async fn append_each(&self, appends: Vec<StreamAppend>) -> Vec<Result<AppendResult, EventStoreError>>;
}

/// The queue and its flushing policy.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    max_batch: usize,
    max_in_flight: usize,
}

#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<Pending>,
    flushing: usize,
}

#[derive(Debug)]
struct Pending {
    append: StreamAppend,
    reply: oneshot::Sender<Result<AppendResult, EventStoreError>>,
}

impl GroupCommit {
    /// At most `max_batch` appends per transaction and `max_in_flight` transactions at once
    /// (both at least 1).
    pub(crate) fn new(max_batch: usize, max_in_flight: usize) -> Self {
        Self { queue: Mutex::new(Queue::default()), max_batch: max_batch.max(1), max_in_flight: max_in_flight.max(1) }
    }

    /// Writes `append` with whatever else is queued and returns its own outcome.
    ///
    /// # Errors
    /// The append's error, or [`EventStoreError::Closed`] when the runtime stopped the flush
    /// before it answered (the append may or may not have been written; retrying with the same
    /// expected version is safe).
    pub(crate) async fn submit<W: AppendEach + Clone>(
        self: &Arc<Self>,
        writer: &W,
        append: StreamAppend,
    ) -> Result<AppendResult, EventStoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.pending.push_back(Pending { append, reply });
            let start = queue.flushing < self.max_in_flight;
            if start {
                queue.flushing += 1;
            }
            start
        };
        if start {
            tokio::spawn(Arc::clone(self).flush(writer.clone()));
        }
        answer.await.unwrap_or(Err(EventStoreError::Closed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next batch, or retires this flusher when nothing is queued. A batch never holds
    /// two appends with the same idempotency key: the second waits for the next batch, where the
    /// first one's stored result answers it.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queue = self.lock();
        if queue.pending.is_empty() {
            queue.flushing -= 1;
            return None;
        }
        let mut batch = Vec::with_capacity(queue.pending.len().min(self.max_batch));
        let mut keys = HashSet::new();
        while batch.len() < self.max_batch {
            let Some(next) = queue.pending.front() else { break };
            if let Some(key) = &next.append.idempotency_key
                && !keys.insert(key.clone())
            {
                break;
            }
            batch.extend(queue.pending.pop_front());
        }
        Some(batch)
    }

    async fn flush<W: AppendEach>(self: Arc<Self>, writer: W) {
        while let Some(batch) = self.next_batch() {
            let (appends, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.append, p.reply)).unzip();
            let expected = appends.len();
            let mut outcomes = writer.append_each(appends).await.into_iter();
            for reply in replies {
                // A caller that stopped waiting no longer needs its answer.
                let _ = reply.send(outcomes.next().unwrap_or_else(|| {
                    tracing::error!(expected, "group commit writer returned too few outcomes");
                    Err(EventStoreError::Closed)
                }));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::event_store::{ExpectedVersion, NewEvent, StreamId};

    /// Appends to in-memory versions, recording each batch's size; waits on `gate` per batch so
    /// tests can hold a flush open while more appends queue up.
    struct Recorder {
        versions: Mutex<HashMap<String, u64>>,
        batches: Mutex<Vec<usize>>,
        next_position: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl Default for Recorder {
        fn default() -> Self {
            Self {
                versions: Mutex::default(),
                batches: Mutex::default(),
                next_position: AtomicUsize::new(0),
                gate: tokio::sync::Semaphore::new(0),
            }
        }
    }

    #[async_trait]
    impl AppendEach for Arc<Recorder> {
        async fn append_each(&self, appends: Vec<StreamAppend>) -> Vec<Result<AppendResult, EventStoreError>> {
            self.gate.acquire().await.unwrap().forget();
            self.batches.lock().unwrap().push(appends.len());
            let mut versions = self.versions.lock().unwrap();
            appends
                .into_iter()
                .map(|a| {
                    let current = versions.get(a.stream.as_str()).copied().unwrap_or(0);
                    if !a.expected.matches(current) {
                        return Err(EventStoreError::ConcurrencyConflict {
                            stream: a.stream,
                            expected: a.expected,
                            actual: current,
                        });
                    }
                    let count = a.events.len() as u64;
                    versions.insert(a.stream.as_str().to_owned(), current + count);
                    let first = self.next_position.fetch_add(a.events.len(), Ordering::SeqCst) as u64 + 1;
                    Ok(AppendResult {
                        stream_version: current + count,
                        first_global_position: first,
                        last_global_position: first + count - 1,
                    })
                })
                .collect()
        }
    }

    fn append(stream: &str, expected: ExpectedVersion) -> StreamAppend {
        StreamAppend::new(
            StreamId::new(stream).unwrap(),
            expected,
            vec![NewEvent::new("Happened", 1, serde_json::json!({}))],
        )
    }

    #[tokio::test]
    async fn appends_queued_behind_a_flush_share_the_next_batch_and_keep_their_own_outcomes() {
        let group = Arc::new(GroupCommit::new(64, 1));
        let writer = Arc::new(Recorder::default());
        // The first append starts the only flush, which blocks on the gate; the rest queue.
        let first = tokio::spawn({
            let (group, writer) = (Arc::clone(&group), Arc::clone(&writer));
            async move { group.submit(&writer, append("s-0", ExpectedVersion::NoStream)).await }
        });
        tokio::task::yield_now().await;
        let mut rest = Vec::new();
        for i in 1..=10 {
            let (group, writer) = (Arc::clone(&group), Arc::clone(&writer));
            // s-5 is appended twice with NoStream: exactly one of the two may win.
            let stream = if i == 10 { "s-5".to_owned() } else { format!("s-{i}") };
            rest.push(tokio::spawn(
                async move { group.submit(&writer, append(&stream, ExpectedVersion::NoStream)).await },
            ));
        }
        while group.lock().pending.len() < 10 {
            tokio::task::yield_now().await;
        }
        writer.gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap().stream_version, 1);
        let mut conflicts = 0;
        for task in rest {
            match task.await.unwrap() {
                Ok(result) => assert_eq!(result.stream_version, 1),
                Err(EventStoreError::ConcurrencyConflict { actual: 1, .. }) => conflicts += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!(conflicts, 1, "the second NoStream append to s-5 must fail alone");
        assert_eq!(*writer.batches.lock().unwrap(), vec![1, 10]);
        assert_eq!(group.lock().flushing, 0, "the flusher retires when the queue is empty");
    }

    #[tokio::test]
    async fn batches_respect_the_size_limit_and_split_repeated_idempotency_keys() {
        let group = Arc::new(GroupCommit::new(3, 1));
        let writer = Arc::new(Recorder::default());
        writer.gate.add_permits(100);
        {
            let mut queue = group.lock();
            queue.flushing = 1; // hold the flusher slot so submissions only queue
        }
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (group, writer) = (Arc::clone(&group), Arc::clone(&writer));
            let mut a = append(&format!("k-{i}"), ExpectedVersion::Any);
            a.idempotency_key = Some(if i == 1 || i == 2 { "same".into() } else { format!("key-{i}") });
            tasks.push(tokio::spawn(async move { group.submit(&writer, a).await }));
        }
        while group.lock().pending.len() < 5 {
            tokio::task::yield_now().await;
        }
        tokio::spawn(Arc::clone(&group).flush(Arc::clone(&writer)));
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // [k-0, k-1] stop before the second "same"; then [k-2, k-3, k-4].
        assert_eq!(*writer.batches.lock().unwrap(), vec![2, 3]);
    }
}
