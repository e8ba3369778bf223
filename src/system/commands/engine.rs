//! The command engine: the one runtime that executes the pure reducers over the event store.
//!
//! One worker per stream owns that stream's state. It takes every command queued for the stream,
//! reduces them in order and appends all their events in one atomic `append_batch` (group
//! commit), each command's events as their own [`StreamAppend`] with the command's own
//! metadata and the expected version chained from the one before. When another writer won the
//! race, or the store failed transiently, the worker reloads the stream and decides the whole
//! batch again, backing off by the [`RetryPolicy`]. Snapshots of long streams are written in the
//! background.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::system::telemetry::{self, CommandOutcome};

use crate::event_store::{
    AppendResult, EventStore, EventStoreError, ExpectedVersion, NewEvent, RetryPolicy, Snapshot, StreamAppend, StreamId,
};
use crate::framework::{Effect, Message, Reducer};
use crate::system::context::CommandContext;

/// What a stored event is taken to weigh when deciding whether a snapshot is due (a ticketing
/// event's JSON is 200-400 bytes).
const EVENT_BYTES: u64 = 256;

/// Shape version of the snapshots the engine writes; others are ignored.
const SNAPSHOT_SCHEMA_VERSION: u32 = 1;

/// After a stream lost a race, this many of its next batches keep a copy of the state they are
/// decided on, so another lost race reads only what the other writer appended instead of
/// reloading the whole stream.
const CONTENDED_BATCHES: u32 = 256;

/// Why a command was not carried out. In every case but `Rejected` the command may be retried:
/// nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError<A> {
    /// The aggregate refused the command; the rejection says why. Nothing was written.
    #[error("command rejected: {0:?}")]
    Rejected(A),
    /// Other writers kept winning the race for the stream.
    #[error("stream {stream} still conflicted after {attempts} attempts")]
    RetriesExhausted {
        /// The contended stream.
        stream: StreamId,
        /// How many times the batch was tried.
        attempts: u32,
    },
    /// The event store failed (and kept failing for the retries allowed). Shared, because
    /// every command of the failed batch reports the same failure.
    #[error("storage failed on stream {stream}")]
    Storage {
        /// The stream.
        stream: StreamId,
        /// What the store reported.
        #[source]
        source: Arc<EventStoreError>,
    },
    /// An event of the stream could not be read back as this aggregate's action.
    #[error("stream {stream} holds an event that does not decode")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The decoding error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The action is not a command addressed to an aggregate instance.
    #[error("not a command for an aggregate instance: {0:?}")]
    NotACommand(A),
    /// The system is shutting down and the stream's worker stopped before answering.
    #[error("the worker for stream {stream} stopped before answering")]
    WorkerStopped {
        /// The stream.
        stream: StreamId,
    },
}

impl<A> CommandError<A> {
    /// Converts the action a rejection carries.
    pub(crate) fn map_action<B>(self, wrap: impl FnOnce(A) -> B) -> CommandError<B> {
        match self {
            Self::Rejected(a) => CommandError::Rejected(wrap(a)),
            Self::NotACommand(a) => CommandError::NotACommand(wrap(a)),
            Self::RetriesExhausted { stream, attempts } => CommandError::RetriesExhausted { stream, attempts },
            Self::Storage { stream, source } => CommandError::Storage { stream, source },
            Self::Decode { stream, source } => CommandError::Decode { stream, source },
            Self::WorkerStopped { stream } => CommandError::WorkerStopped { stream },
        }
    }

    /// Whether trying the same command again later may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Self::RetriesExhausted { .. } | Self::Storage { .. })
    }
}

/// What a command appended.
#[derive(Debug, Clone)]
pub(crate) struct Committed<A> {
    /// Its events, in order (none when it had already been carried out).
    pub(crate) events: SmallVec<[A; 4]>,
    /// The global position of its last event.
    pub(crate) last_position: Option<u64>,
    /// Each event's id and global position, in the order of `events`; empty when the store
    /// did not give the append consecutive positions.
    pub(crate) recorded: SmallVec<[(uuid::Uuid, u64); 4]>,
}

/// Tuning of the command engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Most commands folded into one append.
    pub max_batch: usize,
    /// A stream's worker (and its cached state) goes away after this long without commands.
    pub idle_timeout: Duration,
    /// The same for a stream whose state is at rest ([`Reducer::at_rest`](crate::framework::Reducer::at_rest):
    /// a finished reservation, a settled payment), if shorter: long enough for the reads that
    /// follow the last command, short enough that a sale does not keep a worker per buyer.
    pub rest_timeout: Duration,
    /// Retries of a batch that lost a race or met a transient storage failure; the saga retries
    /// its steps at the same pace without a limit on attempts.
    pub retry: RetryPolicy,
    /// A snapshot of a stream's state is saved every this many events (0: never), so loading a
    /// long stream (a hot section) reads the snapshot and the events after it.
    pub snapshot_every: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            idle_timeout: Duration::from_secs(30),
            rest_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                min_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(200),
                max_attempts: Some(9),
            },
            snapshot_every: 500,
        }
    }
}

/// A command decided against the state: its events, or its rejection.
type Decision<A> = Result<(SmallVec<[A; 4]>, SmallVec<[uuid::Uuid; 4]>), A>;

/// What became of one command.
type Outcome<A> = Result<Committed<A>, CommandError<A>>;

type Reply<A> = oneshot::Sender<Outcome<A>>;

struct CommandJob<A> {
    command: A,
    context: CommandContext,
    reply: Reply<A>,
}

/// A read of the state, answered by the worker from its copy.
type ReadJob<S> = Box<dyn FnOnce(Option<&S>) + Send>;

enum Job<R: Reducer> {
    Command(CommandJob<R::Action>),
    /// Read the state; with `fresh`, catch up with the store first.
    Read {
        read: ReadJob<R::State>,
        fresh: bool,
    },
}

struct WorkerHandle<R: Reducer> {
    id: u64,
    jobs: mpsc::UnboundedSender<Job<R>>,
}

/// Executes the commands of one aggregate type, a worker per stream.
pub(crate) struct Engine<R: Reducer> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Reducer> {
    reducer: R,
    env: R::Env,
    store: Arc<dyn EventStore>,
    config: EngineConfig,
    /// Stamped on every event appended ([`Metadata::node_id`](crate::event_store::Metadata::node_id)).
    node: uuid::Uuid,
    workers: Mutex<(u64, HashMap<StreamId, WorkerHandle<R>>)>,
    /// Snapshots being written in the background.
    snapshots_in_flight: watch::Sender<usize>,
}

impl<R: Reducer> Clone for Engine<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

/// What the engine needs of a reducer: a state it can snapshot and actions it can store.
pub(crate) trait Aggregate:
    Reducer<
        State: Default + Clone + Serialize + DeserializeOwned + Sync,
        Env: Clone,
        Action: Message + Serialize + DeserializeOwned + Clone + Debug + Send + Sync,
    > + Clone
{
}

impl<R> Aggregate for R where
    R: Reducer<
            State: Default + Clone + Serialize + DeserializeOwned + Sync,
            Env: Clone,
            Action: Message + Serialize + DeserializeOwned + Clone + Debug + Send + Sync,
        > + Clone
{
}

/// A stream as its worker holds it.
struct Loaded<S> {
    state: S,
    version: u64,
    /// Version of the last snapshot saved or loaded (0: none).
    snapshot_version: u64,
    /// Size in bytes of the last snapshot saved or loaded (set by the task that writes it).
    snapshot_bytes: Arc<AtomicUsize>,
}

impl<S> Loaded<S> {
    fn new(state: S, version: u64, snapshot_bytes: usize) -> Self {
        Self { state, version, snapshot_version: version, snapshot_bytes: Arc::new(AtomicUsize::new(snapshot_bytes)) }
    }
}

impl<R: Aggregate> Engine<R> {
    /// An engine writing to `store`, stamping `node` on every event it appends.
    pub(crate) fn new(
        reducer: R,
        env: R::Env,
        store: Arc<dyn EventStore>,
        config: EngineConfig,
        node: uuid::Uuid,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reducer,
                env,
                store,
                config,
                node,
                workers: Mutex::new((0, HashMap::new())),
                snapshots_in_flight: watch::channel(0).0,
            }),
        }
    }

    /// Handles `command` on `stream` on behalf of `context` and returns what it appended.
    ///
    /// # Errors
    /// See [`CommandError`]; in every error case nothing of the command was written.
    pub(crate) async fn execute(
        &self,
        stream: &StreamId,
        command: R::Action,
        context: CommandContext,
    ) -> Result<Committed<R::Action>, CommandError<R::Action>> {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.enqueue(stream, Job::Command(CommandJob { command, context, reply }));
        let answer = answer.await.map_err(|_| CommandError::WorkerStopped { stream: stream.clone() })?;
        let outcome = match &answer {
            Ok(_) => CommandOutcome::Committed,
            Err(CommandError::Rejected(_)) => CommandOutcome::Rejected,
            Err(_) => CommandOutcome::Failed,
        };
        telemetry::command(stream, outcome, started.elapsed());
        answer
    }

    /// Reads the state of `stream` as this process holds it (`None` if the stream cannot be
    /// loaded). With `fresh`, the worker first reads what other processes appended since.
    ///
    /// # Errors
    /// [`CommandError::WorkerStopped`] when the system is stopping.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        stream: &StreamId,
        fresh: bool,
        read: impl FnOnce(Option<&R::State>) -> T + Send + 'static,
    ) -> Result<T, CommandError<R::Action>> {
        let (reply, answer) = oneshot::channel();
        let read: ReadJob<R::State> = Box::new(move |state| {
            let _ = reply.send(read(state));
        });
        self.enqueue(stream, Job::Read { read, fresh });
        answer.await.map_err(|_| CommandError::WorkerStopped { stream: stream.clone() })
    }

    /// Waits until every snapshot started so far has been written (or has failed, with a warning).
    pub(crate) async fn snapshots_written(&self) {
        let _ = self.inner.snapshots_in_flight.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Lets every stream worker finish what it has queued and end, releasing its hold on the
    /// store at once instead of after [`EngineConfig::idle_timeout`]. A later command starts a
    /// fresh worker.
    pub(crate) fn retire_workers(&self) {
        self.inner.workers.lock().unwrap_or_else(PoisonError::into_inner).1.clear();
    }

    fn enqueue(&self, stream: &StreamId, job: Job<R>) {
        let mut guard = self.inner.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let (next_id, workers) = &mut *guard;
        let job = match workers.get(stream) {
            Some(worker) => match worker.jobs.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        *next_id += 1;
        let (jobs, queue) = mpsc::unbounded_channel();
        let _ = jobs.send(job);
        workers.insert(stream.clone(), WorkerHandle { id: *next_id, jobs });
        let worker = Worker {
            engine: self.clone(),
            stream: stream.clone(),
            id: *next_id,
            loaded: None,
            may_be_new: true,
            contended: 0,
            behind: false,
        };
        let span = tracing::debug_span!("stream_worker", stream = %stream);
        tokio::spawn(worker.run(queue).instrument(span));
    }
}

struct Worker<R: Reducer> {
    engine: Engine<R>,
    stream: StreamId,
    id: u64,
    /// `None` until loaded, and again after a failed append (the stream must be reloaded).
    loaded: Option<Loaded<R::State>>,
    /// Until the first attempt: a batch that starts with a creating command
    /// ([`Reducer::creates`](crate::framework::Reducer::creates)) is decided on the default state
    /// without loading the stream (one read fewer per new reservation or payment); the append's
    /// expected version says otherwise if the stream exists after all.
    may_be_new: bool,
    /// Batches left that keep a copy of the state they are decided on ([`CONTENDED_BATCHES`]).
    contended: u32,
    /// The state held is the one before a batch that lost a race: the next attempt first reads
    /// what the stream gained since.
    behind: bool,
}

impl<R: Aggregate> Worker<R> {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job<R>>) {
        let config = self.engine.inner.config;
        loop {
            let at_rest = self.loaded.as_ref().is_some_and(|l| R::at_rest(&l.state));
            let idle = if at_rest { config.rest_timeout.min(config.idle_timeout) } else { config.idle_timeout };
            let first = match tokio::time::timeout(idle, queue.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    if self.retire(&queue) {
                        return;
                    }
                    continue;
                }
            };
            let mut next = Some(first);
            let mut commands = Vec::new();
            while let Some(job) = next.take() {
                match job {
                    Job::Command(command) => commands.push(command),
                    Job::Read { read, fresh } => {
                        if !commands.is_empty() {
                            self.handle_batch(std::mem::take(&mut commands)).await;
                        }
                        self.answer_read(read, fresh).await;
                    }
                }
                if commands.len() < config.max_batch {
                    next = queue.try_recv().ok();
                }
            }
            if !commands.is_empty() {
                self.handle_batch(commands).await;
            }
        }
    }

    /// Removes this worker from the registry if nothing is queued; false if work arrived.
    fn retire(&self, queue: &mpsc::UnboundedReceiver<Job<R>>) -> bool {
        let mut guard = self.engine.inner.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if !queue.is_empty() {
            return false;
        }
        if guard.1.get(&self.stream).is_some_and(|w| w.id == self.id) {
            guard.1.remove(&self.stream);
        }
        true
    }

    async fn answer_read(&mut self, read: ReadJob<R::State>, fresh: bool) {
        let caught_up = match (&mut self.loaded, fresh) {
            (Some(loaded), true) => self.engine.catch_up(&self.stream, loaded).await,
            (Some(_), false) => Ok(()),
            (None, _) => match self.engine.load(&self.stream).await {
                Ok(loaded) => {
                    self.loaded = Some(loaded);
                    Ok(())
                }
                Err(error) => Err(error),
            },
        };
        match caught_up {
            Ok(()) => {}
            Err(LoadError::Store(error)) => {
                tracing::warn!(%error, stream = %self.stream, "cannot read the stream; answering from what is held");
            }
            Err(LoadError::Decode(error)) => {
                tracing::error!(%error, stream = %self.stream, "the stream holds an event that does not decode");
                self.loaded = None;
            }
        }
        read(self.loaded.as_ref().map(|l| &l.state));
    }

    async fn handle_batch(&mut self, jobs: Vec<CommandJob<R::Action>>) {
        let inner = Arc::clone(&self.engine.inner);
        let mut backoffs = inner.config.retry.backoff();
        let mut attempt = 1;
        loop {
            let span = tracing::debug_span!("command_batch", stream = %self.stream, size = jobs.len(), attempt);
            let error = match self.attempt(&jobs, false).instrument(span).await {
                Ok(outcomes) => {
                    let last = outcomes.iter().filter_map(|o| o.as_ref().ok().and_then(|c| c.last_position)).max();
                    if last.is_some() {
                        telemetry::appended(&self.stream, jobs.len(), last);
                    }
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(outcome);
                    }
                    self.snapshot_if_due();
                    return;
                }
                Err(error) => error,
            };
            // State may be ahead of the log (the append failed) or behind it (a conflict); unless
            // the attempt put back the state it was decided on, it is loaded again.
            if !self.behind {
                self.loaded = None;
            }
            let retry = error.is_transient().then(|| backoffs.next()).flatten();
            let conflict = matches!(error, EventStoreError::ConcurrencyConflict { .. });
            telemetry::append_failed(&self.stream, conflict, retry.is_some());
            let Some(delay) = retry else {
                let stream = self.stream.clone();
                let failure = match error {
                    EventStoreError::ConcurrencyConflict { .. } => None,
                    other => Some(Arc::new(other)),
                };
                for job in jobs {
                    let _ = job.reply.send(Err(match &failure {
                        None => CommandError::RetriesExhausted { stream: stream.clone(), attempts: attempt },
                        Some(source) => CommandError::Storage { stream: stream.clone(), source: Arc::clone(source) },
                    }));
                }
                return;
            };
            if !conflict {
                tracing::warn!(%error, stream = %self.stream, attempt, "append failed; reloading and retrying");
            }
            // A lost race means another writer made progress; with the state it was decided on
            // kept, the retry reads only that writer's events, a round trip that spaces the
            // retries by itself (and some writer wins every round). Pausing only let the other
            // writers win again: on a hot section shared by three processes a worker lost ten
            // races in a row.
            if !(conflict && self.behind) {
                tokio::time::sleep(delay).await;
            }
            attempt += 1;
        }
    }

    /// Decides the batch against the current state and appends its events in one call. An
    /// error means nothing was written (or, for an unacknowledged append, that the stream must be
    /// reloaded to find out) and the state must be reloaded.
    ///
    /// A refusal decided on the cached state is checked against the store once (`rechecked`
    /// says it was): when another process has appended to the stream since, the state is
    /// reloaded and the whole batch decided again, so no command is refused for a state the
    /// stream has left (seats another process released, a claim it gave back).
    async fn attempt(
        &mut self,
        jobs: &[CommandJob<R::Action>],
        rechecked: bool,
    ) -> Result<Vec<Outcome<R::Action>>, EventStoreError> {
        self.catch_up_if_behind().await;
        let inner = &self.engine.inner;
        let guessed = self.loaded.is_none() && self.may_be_new && jobs.first().is_some_and(|j| R::creates(&j.command));
        self.may_be_new = false;
        if guessed {
            self.loaded = Some(Loaded::new(R::State::default(), 0, 0));
        } else if self.loaded.is_none() {
            match self.engine.load(&self.stream).await {
                Ok(loaded) => self.loaded = Some(loaded),
                Err(LoadError::Store(source)) => return Err(source),
                Err(LoadError::Decode(source)) => {
                    let source = Arc::new(source);
                    let stream = &self.stream;
                    return Ok(jobs
                        .iter()
                        .map(|_| Err(CommandError::Decode { stream: stream.clone(), source: Arc::clone(&source) }))
                        .collect());
                }
            }
        }
        let Some(loaded) = self.loaded.as_mut() else { return Err(EventStoreError::Closed) };
        let mut decided: Vec<Decision<R::Action>> = Vec::with_capacity(jobs.len());
        let mut appends = Vec::new();
        let mut version = loaded.version;
        let decided_on = version;
        self.contended = self.contended.saturating_sub(1);
        let before = (self.contended > 0).then(|| loaded.state.clone());
        for job in jobs {
            let mut persisted = SmallVec::<[R::Action; 4]>::new();
            let mut ids = SmallVec::new();
            let mut rejection = None;
            for effect in inner.reducer.reduce(&mut loaded.state, job.command.clone(), &inner.env) {
                match effect {
                    Effect::Persist(events) => persisted.extend(events),
                    Effect::Reject(refusal) => rejection = Some(*refusal),
                }
            }
            if let Some(rejection) = rejection {
                decided.push(Err(rejection));
                continue;
            }
            if !persisted.is_empty() {
                let events = encode(&persisted)
                    .map_err(|source| EventStoreError::Encode { stream: self.stream.clone(), source })?;
                let count = events.len() as u64;
                ids = events.iter().map(|event| event.event_id).collect();
                appends.push(StreamAppend {
                    stream: self.stream.clone(),
                    expected: ExpectedVersion::Exact(version),
                    events,
                    metadata: job.context.metadata(inner.node),
                    idempotency_key: None,
                });
                version += count;
            }
            decided.push(Ok((persisted, ids)));
        }
        if guessed && decided.iter().any(Result::is_err) {
            // A refusal decided on a guessed empty stream appends nothing that could contradict
            // the guess: decide the batch again on the stream as stored.
            self.loaded = None;
            return Box::pin(self.attempt(jobs, rechecked)).await;
        }
        if !rechecked && !guessed && decided.iter().any(Result::is_err) {
            let stored = inner.store.stream_version(&self.stream).await?;
            if stored != decided_on {
                // Decided on a state the stream has left: nothing was written. The cached state
                // (which this batch's accepted commands changed) is put back as it was and
                // brought up to date, or dropped.
                match before {
                    Some(state) => (loaded.state, self.behind) = (state, true),
                    None => self.loaded = None,
                }
                self.contended = CONTENDED_BATCHES;
                return Box::pin(self.attempt(jobs, true)).await;
            }
        }
        let mut results = match write(inner.store.as_ref(), appends).await {
            Ok(results) => results.into_iter(),
            Err(error) => {
                if matches!(error, EventStoreError::ConcurrencyConflict { .. }) {
                    // Nothing was written: the state this batch was decided on is still the
                    // stream's up to `decided_on`, and only the other writer's events are read.
                    if let Some(state) = before {
                        (loaded.state, self.behind) = (state, true);
                    }
                    self.contended = CONTENDED_BATCHES;
                }
                return Err(error);
            }
        };
        loaded.version = version;
        Ok(decided
            .into_iter()
            .map(|outcome| match outcome {
                Err(rejection) => Err(CommandError::Rejected(rejection)),
                Ok((events, _)) if events.is_empty() => {
                    Ok(Committed { events, last_position: None, recorded: SmallVec::new() })
                }
                Ok((events, ids)) => Ok(committed(events, &ids, results.next())),
            })
            .collect())
    }

    /// After a lost race the state held is the one the batch was decided on: reads what the
    /// stream gained since (or drops the state when that read fails).
    async fn catch_up_if_behind(&mut self) {
        if std::mem::take(&mut self.behind)
            && let Some(loaded) = self.loaded.as_mut()
            && self.engine.catch_up(&self.stream, loaded).await.is_err()
        {
            self.loaded = None;
        }
    }

    /// Saves a snapshot once `snapshot_every` events were appended since the last one, and
    /// (so a large state is not rewritten for every few hundred small events) once those events
    /// are about as large as the last snapshot, counting [`EVENT_BYTES`] each: a stream is never
    /// replayed from more than about one snapshot's worth of events, and a snapshot costs about
    /// as much as the events since the last one. The state is copied here; serialising and
    /// writing happen in a background task, so a large state (a sold-out section's every seat)
    /// never holds up the stream's commands.
    fn snapshot_if_due(&mut self) {
        let every = self.engine.inner.config.snapshot_every;
        let Some(loaded) = self.loaded.as_mut() else { return };
        let since = loaded.version.saturating_sub(loaded.snapshot_version);
        if !snapshot_due(since, every, loaded.snapshot_bytes.load(Ordering::Relaxed)) {
            return;
        }
        loaded.snapshot_version = loaded.version;
        let (state, version) = (loaded.state.clone(), loaded.version);
        let (store, stream) = (Arc::clone(&self.engine.inner.store), self.stream.clone());
        let in_flight = self.engine.inner.snapshots_in_flight.clone();
        let snapshot_bytes = Arc::clone(&loaded.snapshot_bytes);
        in_flight.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || serde_json::to_string(&state)).await {
                Ok(Ok(state)) => {
                    snapshot_bytes.store(state.len(), Ordering::Relaxed);
                    let snapshot = Snapshot {
                        stream_id: stream,
                        stream_version: version,
                        state,
                        schema_version: SNAPSHOT_SCHEMA_VERSION,
                    };
                    if let Err(error) = store.save_snapshot(snapshot).await {
                        tracing::warn!(%error, "cannot save a snapshot; the stream will load from its events");
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot serialise the state for a snapshot"),
                Err(error) => tracing::warn!(%error, "snapshot task failed"),
            }
            in_flight.send_modify(|n| *n -= 1);
        });
    }
}

/// Whether a stream with `since` events after its last snapshot of `last_bytes` bytes is due for
/// another (see [`Worker::snapshot_if_due`]).
fn snapshot_due(since: u64, every: u64, last_bytes: usize) -> bool {
    let last_bytes = u64::try_from(last_bytes).unwrap_or(u64::MAX);
    every > 0 && since >= every && since.saturating_mul(EVENT_BYTES) >= last_bytes
}

impl<R: Aggregate> Engine<R> {
    /// Loads a stream: its latest readable snapshot plus the events after it.
    async fn load(&self, stream: &StreamId) -> Result<Loaded<R::State>, LoadError> {
        let snapshot = match self.inner.store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot.filter(|s| s.schema_version == SNAPSHOT_SCHEMA_VERSION),
            Err(error) => {
                tracing::warn!(%error, %stream, "cannot read the snapshot; loading the whole stream");
                None
            }
        };
        let base = match snapshot.map(|s| (serde_json::from_str::<R::State>(&s.state), s.stream_version, s.state.len()))
        {
            Some((Ok(state), version, bytes)) => Loaded::new(state, version, bytes),
            Some((Err(error), _, _)) => {
                tracing::warn!(%error, %stream, "snapshot does not match the state's shape; loading the whole stream");
                Loaded::new(R::State::default(), 0, 0)
            }
            None => Loaded::new(R::State::default(), 0, 0),
        };
        let mut loaded = base;
        self.catch_up(stream, &mut loaded).await?;
        Ok(loaded)
    }

    /// Folds the events appended to `stream` after `loaded.version` onto `loaded`.
    async fn catch_up(&self, stream: &StreamId, loaded: &mut Loaded<R::State>) -> Result<(), LoadError> {
        let envelopes = self.inner.store.load_stream(stream, loaded.version + 1).await.map_err(LoadError::Store)?;
        for envelope in envelopes {
            let event = R::Action::deserialize(&*envelope.payload).map_err(LoadError::Decode)?;
            drop(self.inner.reducer.reduce(&mut loaded.state, event, &self.inner.env));
            loaded.version = envelope.stream_version;
        }
        Ok(())
    }
}

/// Appends a batch's commands: one command's events through [`EventStore::append`], which joins
/// the store's group commit (its transaction is shared with other streams' appends), several in
/// one atomic [`EventStore::append_batch`], because a later command was decided on the state the
/// earlier ones left.
async fn write(store: &dyn EventStore, mut appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
    if appends.len() > 1 {
        return store.append_batch(appends).await;
    }
    let Some(append) = appends.pop() else { return Ok(Vec::new()) };
    let StreamAppend { stream, expected, events, metadata, idempotency_key } = append;
    Ok(vec![store.append(&stream, expected, events, &metadata, idempotency_key.as_deref()).await?])
}

/// Why a stream could not be loaded.
#[derive(Debug)]
enum LoadError {
    Store(EventStoreError),
    Decode(serde_json::Error),
}

/// What a command whose `events` (with ids `ids`) were appended as `result` says it appended.
fn committed<A>(events: SmallVec<[A; 4]>, ids: &[uuid::Uuid], result: Option<AppendResult>) -> Committed<A> {
    let consecutive = |r: &AppendResult| r.last_global_position - r.first_global_position + 1 == ids.len() as u64;
    let recorded = result
        .filter(consecutive)
        .map(|r| ids.iter().zip(r.first_global_position..).map(|(id, position)| (*id, position)).collect())
        .unwrap_or_default();
    Committed { events, last_position: result.map(|r| r.last_global_position), recorded }
}

fn encode<A: Message + Serialize>(events: &[A]) -> Result<Vec<NewEvent>, serde_json::Error> {
    events
        .iter()
        .map(|event| {
            Ok(NewEvent::new(event.name(), crate::aggregates::EVENT_SCHEMA_VERSION, serde_json::to_value(event)?))
        })
        .collect()
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
