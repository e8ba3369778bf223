//! `event_store::follow`: failed batches come again unchanged, failed reads resume after the last
//! handled event, a stop ends a run at once wherever it is, and a run resumed from a checkpoint
//! sees every later event exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boxoffice::event_store::{
    AppendResult, CheckpointStore, Envelope, EventStore, EventStoreError, ExpectedVersion, FollowConfig, FollowError,
    FollowStatus, LogConsumer, MemoryCheckpointStore, MemoryEventStore, Metadata, NewEvent, RetryPolicy, Snapshot,
    StreamAppend, StreamId, follow,
};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::watch;

/// Generous: the machine is shared and loaded. Nothing waits this long when things work.
const WAIT: Duration = Duration::from_secs(30);

fn fast() -> RetryPolicy {
    RetryPolicy { min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(10), max_attempts: None }
}

async fn append(store: &dyn EventStore, count: usize) -> AppendResult {
    let stream = StreamId::new("follow-test").unwrap();
    let events = (0..count).map(|i| NewEvent::new("Noted", 1, serde_json::json!({ "i": i }))).collect();
    store.append(&stream, ExpectedVersion::Any, events, &Metadata::default(), None).await.unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("refused batch {0:?}")]
struct Refused(Vec<u64>);

/// Records every batch it is handed; refuses the batch holding `refuse_at` the first `refusals`
/// times; keeps its checkpoint in `checkpoints`.
struct Recorder {
    checkpoints: MemoryCheckpointStore,
    refuse_at: Option<u64>,
    refusals: usize,
    attempts: Vec<(Vec<u64>, bool)>,
}

impl Recorder {
    fn new(checkpoints: MemoryCheckpointStore) -> Self {
        Self { checkpoints, refuse_at: None, refusals: 0, attempts: Vec::new() }
    }

    /// Positions of the batches that were handled, in order.
    fn handled(&self) -> Vec<u64> {
        self.attempts.iter().filter(|(_, ok)| *ok).flat_map(|(batch, _)| batch.iter().copied()).collect()
    }
}

#[async_trait]
impl LogConsumer for Recorder {
    type Error = Refused;

    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn start_position(&mut self) -> Result<u64, Refused> {
        Ok(self.checkpoints.load_checkpoint("recorder").await.unwrap())
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), Refused> {
        let positions: Vec<u64> = batch.iter().map(|e| e.global_position).collect();
        let refuse = self.refusals > 0 && self.refuse_at.is_some_and(|p| positions.contains(&p));
        self.attempts.push((positions.clone(), !refuse));
        if refuse {
            self.refusals -= 1;
            return Err(Refused(positions));
        }
        self.checkpoints.save_checkpoint("recorder", *positions.last().unwrap()).await.unwrap();
        Ok(())
    }
}

/// Runs `follow` for `consumer` until its status reaches `until`, then stops it.
async fn follow_until(
    store: &dyn EventStore,
    consumer: &mut impl LogConsumer,
    config: FollowConfig,
    until: u64,
) -> (u64, FollowStatus) {
    let (stop, stop_rx) = watch::channel(false);
    let status = watch::Sender::new(FollowStatus::default());
    let mut reached = status.subscribe();
    let running = follow(store, consumer, &config, stop_rx, &status);
    let stopper = async {
        tokio::time::timeout(WAIT, reached.wait_for(|s| s.position >= until))
            .await
            .unwrap_or_else(|_| panic!("follow did not reach {until}: {:?}", *status.borrow()))
            .unwrap();
        stop.send_replace(true);
    };
    let (outcome, ()) = tokio::join!(running, stopper);
    let position = outcome.unwrap_or_else(|e| panic!("follow failed: {e}"));
    (position, status.borrow().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_twice_is_handed_over_again_unchanged_and_nothing_is_skipped() {
    let store = MemoryEventStore::new();
    append(&store, 20).await;
    let mut recorder = Recorder::new(MemoryCheckpointStore::new());
    recorder.refuse_at = Some(7);
    recorder.refusals = 2;
    let config = FollowConfig { max_batch: 4, retry: fast(), ..FollowConfig::default() };
    let (position, status) = follow_until(&store, &mut recorder, config, 20).await;

    assert_eq!(position, 20);
    let failed: Vec<&Vec<u64>> = recorder.attempts.iter().filter(|(_, ok)| !ok).map(|(b, _)| b).collect();
    assert_eq!(failed.len(), 2, "{:?}", recorder.attempts);
    let at = recorder.attempts.iter().position(|(b, _)| b.contains(&7)).unwrap();
    let same: Vec<&Vec<u64>> = recorder.attempts[at..at + 3].iter().map(|(b, _)| b).collect();
    assert!(same.iter().all(|b| *b == same[0]), "the retried batch changed: {same:?}");
    assert!(recorder.attempts[at + 2].1, "the third attempt succeeds");
    assert_eq!(recorder.handled(), (1..=20).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(status.retries, 2);
    assert!(status.failing.is_none(), "recovered");
    assert!(status.last_error.unwrap().to_string().contains("recorder"));
}

/// A store whose first subscriptions fail after a few events.
struct FlakyReads {
    inner: MemoryEventStore,
    failures_left: AtomicUsize,
    subscriptions: Arc<std::sync::Mutex<Vec<u64>>>,
}

#[async_trait]
impl EventStore for FlakyReads {
    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        self.inner.append_batch(appends).await
    }
    async fn load_stream(&self, stream: &StreamId, from: u64) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.load_stream(stream, from).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        self.inner.stream_version(stream).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.read_all(after, limit).await
    }
    fn subscribe(&self, after: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        self.subscriptions.lock().unwrap().push(after);
        let live = self.inner.subscribe(after);
        let failing = self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing { live.take(3).chain(stream::once(async { Err(EventStoreError::Closed) })).boxed() } else { live }
    }
    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.inner.head_position().await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_resubscribes_after_the_last_handled_event() {
    let store = FlakyReads {
        inner: MemoryEventStore::new(),
        failures_left: AtomicUsize::new(3),
        subscriptions: Arc::default(),
    };
    append(&store, 15).await;
    let mut recorder = Recorder::new(MemoryCheckpointStore::new());
    let config = FollowConfig { max_batch: 2, retry: fast(), ..FollowConfig::default() };
    let (_, status) = follow_until(&store, &mut recorder, config, 15).await;

    assert_eq!(recorder.handled(), (1..=15).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(*store.subscriptions.lock().unwrap(), [0, 3, 6, 9], "each resubscription starts after the last handled");
    assert_eq!(status.retries, 3);
}

/// Never finishes a batch; says when it has started one.
struct Stuck(Arc<tokio::sync::Notify>);

#[async_trait]
impl LogConsumer for Stuck {
    type Error = Refused;

    fn name(&self) -> &'static str {
        "stuck"
    }

    async fn start_position(&mut self) -> Result<u64, Refused> {
        Ok(0)
    }

    async fn handle(&mut self, _batch: &[Envelope]) -> Result<(), Refused> {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Always refuses.
struct Refuser;

#[async_trait]
impl LogConsumer for Refuser {
    type Error = Refused;

    fn name(&self) -> &'static str {
        "refuser"
    }

    async fn start_position(&mut self) -> Result<u64, Refused> {
        Ok(0)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), Refused> {
        Err(Refused(batch.iter().map(|e| e.global_position).collect()))
    }
}

/// Starts `follow` on a task, waits for `ready`, stops the run and returns how long it took to
/// end after the stop, with its outcome.
async fn stop_when<C: LogConsumer + 'static, F: Future<Output = ()>>(
    store: Arc<dyn EventStore>,
    mut consumer: C,
    retry: RetryPolicy,
    ready: impl FnOnce(watch::Receiver<FollowStatus>) -> F,
) -> (Duration, Result<u64, FollowError<C::Error>>) {
    let (stop, stop_rx) = watch::channel(false);
    let status = watch::Sender::new(FollowStatus::default());
    let watching = status.subscribe();
    let config = FollowConfig { max_batch: 16, retry, ..FollowConfig::default() };
    let run = tokio::spawn(async move { follow(&*store, &mut consumer, &config, stop_rx, &status).await });
    tokio::time::timeout(WAIT, ready(watching)).await.expect("the run never got ready");
    let asked = Instant::now();
    stop.send_replace(true);
    let outcome = tokio::time::timeout(WAIT, run).await.expect("follow ignored the stop").unwrap();
    (asked.elapsed(), outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_a_run_at_once_while_idle_in_a_batch_or_in_a_pause() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    append(&*store, 3).await;
    let prompt = Duration::from_secs(5);

    // Idle: caught up, waiting for appends.
    let recorder = Recorder::new(MemoryCheckpointStore::new());
    let caught_up = |mut s: watch::Receiver<FollowStatus>| async move {
        s.wait_for(|s| s.position == 3).await.unwrap();
    };
    let (took, outcome) = stop_when(Arc::clone(&store), recorder, fast(), caught_up).await;
    assert_eq!(outcome.unwrap(), 3);
    assert!(took < prompt, "idle stop took {took:?}");

    // In a batch that never finishes.
    let entered = Arc::new(tokio::sync::Notify::new());
    let in_batch = {
        let entered = Arc::clone(&entered);
        |_| async move { entered.notified().await }
    };
    let (took, outcome) = stop_when(Arc::clone(&store), Stuck(Arc::clone(&entered)), fast(), in_batch).await;
    assert_eq!(outcome.unwrap(), 0, "nothing was handled");
    assert!(took < prompt, "stop in a batch took {took:?}");

    // In an hour-long pause after a failure: the failure being retried is returned.
    let hour = Duration::from_secs(3600);
    let policy = RetryPolicy { min_delay: hour, max_delay: hour, max_attempts: None };
    let failing = |mut s: watch::Receiver<FollowStatus>| async move {
        s.wait_for(|s| s.failing.is_some()).await.unwrap();
    };
    let (took, outcome) = stop_when(Arc::clone(&store), Refuser, policy, failing).await;
    assert!(took < prompt, "stop in a pause took {took:?}");
    match outcome {
        Err(FollowError::Handle { first: 1, last: 3, source, .. }) => assert_eq!(source.0, [1, 2, 3]),
        other => panic!("expected the refused batch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_gives_up_ends_the_run_with_the_failure() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    append(&*store, 2).await;
    let (stop, stop_rx) = watch::channel(false);
    let status = watch::Sender::new(FollowStatus::default());
    let config = FollowConfig {
        max_batch: 16,
        retry: RetryPolicy { max_attempts: Some(2), ..fast() },
        ..FollowConfig::default()
    };
    let outcome = tokio::time::timeout(WAIT, follow(&*store, &mut Refuser, &config, stop_rx, &status)).await.unwrap();
    assert!(matches!(outcome, Err(FollowError::Handle { first: 1, last: 2, .. })), "{outcome:?}");
    assert_eq!(status.borrow().retries, 2);
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_from_its_checkpoint_sees_every_later_event_exactly_once() {
    let store = MemoryEventStore::new();
    let checkpoints = MemoryCheckpointStore::new();
    append(&store, 10).await;
    let mut first = Recorder::new(checkpoints.clone());
    let config = FollowConfig { max_batch: 3, retry: fast(), ..FollowConfig::default() };
    follow_until(&store, &mut first, config, 10).await;
    assert_eq!(first.handled(), (1..=10).collect::<Vec<_>>());
    assert_eq!(checkpoints.load_checkpoint("recorder").await.unwrap(), 10);

    append(&store, 7).await;
    let mut second = Recorder::new(checkpoints.clone());
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                append(&store, 2).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let (position, _) = follow_until(&store, &mut second, config, 27).await;
    writer.await.unwrap();
    assert_eq!(position, 27);
    assert_eq!(second.handled(), (11..=27).collect::<Vec<_>>(), "everything after the checkpoint, once, in order");
}

/// Applies events one by one and can never apply the one at `bad` (it stops there, like a model
/// whose event does not decode, having applied the events before it).
struct Picky {
    bad: u64,
    applied: Vec<u64>,
    skipped: Vec<u64>,
}

#[async_trait]
impl LogConsumer for Picky {
    type Error = Refused;

    fn name(&self) -> &'static str {
        "picky"
    }

    async fn start_position(&mut self) -> Result<u64, Refused> {
        Ok(0)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), Refused> {
        for envelope in batch {
            if envelope.global_position == self.bad {
                return Err(Refused(vec![self.bad]));
            }
            if !self.applied.contains(&envelope.global_position) {
                self.applied.push(envelope.global_position);
            }
        }
        Ok(())
    }

    fn bad_event(&self, error: &Refused) -> Option<u64> {
        error.0.first().copied()
    }

    async fn skip(&mut self, position: u64) -> Result<(), Refused> {
        self.skipped.push(position);
        Ok(())
    }
}

/// A bad event in the middle of a batch is quarantined: the events before it are applied, it is
/// skipped and reported with its position and cause, and the events after it follow. Nothing is
/// retried (the policy would never give up on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_is_quarantined_and_the_run_reads_on() {
    let store = MemoryEventStore::new();
    append(&store, 10).await;
    let mut picky = Picky { bad: 4, applied: Vec::new(), skipped: Vec::new() };
    let config = FollowConfig { max_batch: 16, retry: fast(), ..FollowConfig::default() };
    let (position, status) = follow_until(&store, &mut picky, config, 10).await;
    assert_eq!(position, 10);
    assert_eq!(picky.applied, [1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert_eq!(picky.skipped, [4]);
    assert_eq!(status.retries, 0, "a bad event is not retried");
    assert_eq!(status.quarantined_total, 1);
    let quarantined: Vec<u64> = status.quarantined.iter().map(|q| q.global_position).collect();
    assert_eq!(quarantined, [4]);
    assert!(status.failing.is_none());
    assert!(status.quarantined[0].cause.to_string().contains("refused"));
}

/// Under `BadEventPolicy::Halt` the run ends at the bad event with `FollowError::BadEvent`, after
/// the events before it, and the status shows the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_halt_policy_a_bad_event_ends_the_run() {
    let store = MemoryEventStore::new();
    append(&store, 10).await;
    let mut picky = Picky { bad: 4, applied: Vec::new(), skipped: Vec::new() };
    let config =
        FollowConfig { max_batch: 16, retry: fast(), bad_events: boxoffice::event_store::BadEventPolicy::Halt };
    let (_stop, stop_rx) = watch::channel(false);
    let status = watch::Sender::new(FollowStatus::default());
    let ended = tokio::time::timeout(WAIT, follow(&store, &mut picky, &config, stop_rx, &status)).await.unwrap();
    assert!(matches!(ended, Err(FollowError::BadEvent { global_position: 4, .. })), "{ended:?}");
    assert_eq!(picky.applied, [1, 2, 3]);
    assert!(picky.skipped.is_empty());
    let status = status.borrow();
    assert_eq!(status.position, 3);
    assert!(status.failing.as_ref().is_some_and(|e| e.to_string().contains("position 4")));
}

/// A bad event the store itself cannot read (here: an upcaster fails on it) is quarantined by the
/// run, which resubscribes after it; the consumer is told to skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_cannot_read_is_quarantined_and_the_run_reads_on() {
    let mut upcasters = boxoffice::event_store::Upcasters::new();
    upcasters.register_fallible("Broken", 1, |_| Err("cannot lift".to_owned()));
    let store = MemoryEventStore::new().with_upcasters(upcasters);
    append(&store, 3).await;
    let stream = StreamId::new("follow-broken").unwrap();
    let broken = NewEvent::new("Broken", 1, serde_json::json!({}));
    store.append(&stream, ExpectedVersion::Any, vec![broken], &Metadata::default(), None).await.unwrap();
    append(&store, 3).await;
    let mut picky = Picky { bad: 0, applied: Vec::new(), skipped: Vec::new() };
    let config = FollowConfig { max_batch: 16, retry: fast(), ..FollowConfig::default() };
    let (_, status) = follow_until(&store, &mut picky, config, 7).await;
    assert_eq!(picky.applied, [1, 2, 3, 5, 6, 7]);
    assert_eq!(picky.skipped, [4]);
    assert_eq!(status.quarantined.iter().map(|q| q.global_position).collect::<Vec<_>>(), [4]);
    assert!(status.quarantined[0].cause.to_string().contains("upcast"));
}
