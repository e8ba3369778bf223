//! Command handling for one aggregate type: a worker per stream serialises commands in-process,
//! folds whatever is queued into one append (group commit) and retries the batch when another
//! process appended first.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::{CommandContext, StreamJournal};
use crate::event_store::{EventStore, Snapshot, StreamId};
use crate::framework::{Clock, JournalError, Message, PersistedObserver, Reducer, Store};

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<A> {
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
    /// The event store failed.
    #[error("storage failed on stream {stream}: {source}")]
    Storage {
        /// The stream being written.
        stream: StreamId,
        /// What the store reported.
        #[source]
        source: JournalError,
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
    /// Converts the action a rejection carries, so errors of a child aggregate can be reported
    /// in terms of a parent action type.
    pub fn map_action<B>(self, wrap: impl FnOnce(A) -> B) -> CommandError<B> {
        match self {
            CommandError::Rejected(a) => CommandError::Rejected(wrap(a)),
            CommandError::NotACommand(a) => CommandError::NotACommand(wrap(a)),
            CommandError::RetriesExhausted { stream, attempts } => CommandError::RetriesExhausted { stream, attempts },
            CommandError::Storage { stream, source } => CommandError::Storage { stream, source },
            CommandError::WorkerStopped { stream } => CommandError::WorkerStopped { stream },
        }
    }
}

/// How hard a batch is retried when the stream moved under it.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with full jitter.
    pub base_backoff: Duration,
    /// Upper bound of one backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 10, base_backoff: Duration::from_millis(2), max_backoff: Duration::from_millis(200) }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base_backoff.saturating_mul(1 << attempt.min(16)).min(self.max_backoff);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Tuning for a [`Repository`].
#[derive(Debug, Clone, Copy)]
pub struct RepositoryConfig {
    /// Most commands folded into one append.
    pub max_batch: usize,
    /// A stream's worker (and its cached state) goes away after this long without commands.
    pub idle_timeout: Duration,
    /// Conflict retries.
    pub retry: RetryPolicy,
    /// A snapshot of a stream's state is saved every this many events (0: never), so loading a
    /// long stream (a hot section) reads the snapshot and the events after it.
    pub snapshot_every: u64,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            idle_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            snapshot_every: 500,
        }
    }
}

type Reply<A> = oneshot::Sender<Result<SmallVec<[A; 4]>, CommandError<A>>>;

struct CommandJob<A> {
    command: A,
    context: CommandContext,
    reply: Reply<A>,
}

/// A read of the state, answered by the worker from its cached copy.
type ReadJob<S> = Box<dyn FnOnce(&S) + Send>;

enum Job<R: Reducer> {
    Command(CommandJob<R::Action>),
    /// Read the cached state; with `fresh`, reload it from the store first.
    Read {
        read: ReadJob<R::State>,
        fresh: bool,
    },
    /// Report once every effect started so far has finished.
    Settle(oneshot::Sender<()>),
}

struct Worker<R: Reducer> {
    id: u64,
    jobs: mpsc::UnboundedSender<Job<R>>,
}

/// Shape version of the snapshots this module writes; older ones are ignored.
const SNAPSHOT_SCHEMA_VERSION: u32 = 1;

/// A stream held by its worker.
struct Loaded<R: Reducer> {
    store: Store<R>,
    journal: Arc<StreamJournal<R::Action>>,
    /// Version of the last snapshot saved or loaded (0: none).
    snapshot_version: u64,
}

/// Loads, decides and appends for every stream of one aggregate type.
pub struct Repository<R: Reducer> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Reducer> {
    reducer: R,
    env: R::Env,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventStore>,
    observer: Option<PersistedObserver<R::Action>>,
    config: RepositoryConfig,
    workers: Mutex<Workers<R>>,
    /// Snapshots being written in the background.
    snapshots_in_flight: watch::Sender<usize>,
}

/// The live workers by stream, and the id the next one gets.
type Workers<R> = (u64, HashMap<StreamId, Worker<R>>);

impl<R: Reducer> Clone for Repository<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<R> Repository<R>
where
    R: Reducer + Clone,
    R::State: Default + Clone + Serialize + DeserializeOwned,
    R::Env: Clone,
    R::Action: Message + Serialize + DeserializeOwned + Clone + Debug + Send + Sync,
{
    /// A repository writing to `events`; `observer` hears about every append.
    pub fn new(
        reducer: R,
        env: R::Env,
        clock: Arc<dyn Clock>,
        events: Arc<dyn EventStore>,
        observer: Option<PersistedObserver<R::Action>>,
        config: RepositoryConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reducer,
                env,
                clock,
                events,
                observer,
                config,
                workers: Mutex::new((0, HashMap::new())),
                snapshots_in_flight: watch::channel(0).0,
            }),
        }
    }

    /// Handles `command` on `stream` and returns the events it appended.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] with the aggregate's reason, or a storage, contention or
    /// shutdown error. In every error case nothing of the command was written.
    pub async fn execute(
        &self,
        stream: &StreamId,
        command: R::Action,
    ) -> Result<SmallVec<[R::Action; 4]>, CommandError<R::Action>> {
        let context = CommandContext::current().unwrap_or_else(CommandContext::new_request);
        let (reply, answer) = oneshot::channel();
        self.enqueue(stream, Job::Command(CommandJob { command, context, reply }))?;
        answer.await.map_err(|_| CommandError::WorkerStopped { stream: stream.clone() })?
    }

    /// Reads the state of `stream` as this process last saw it: the worker's cached copy, loaded
    /// from the store if no worker holds the stream. Writes by other processes show up once this
    /// process next writes to (or reloads) the stream.
    ///
    /// # Errors
    /// [`CommandError::WorkerStopped`] when the stream cannot be loaded or the system is stopping.
    pub async fn state<T: Send + 'static>(
        &self,
        stream: &StreamId,
        read: impl FnOnce(&R::State) -> T + Send + 'static,
    ) -> Result<T, CommandError<R::Action>> {
        self.read(stream, read, false).await
    }

    /// Like [`Repository::state`], but reloads the stream first, so it reflects every event
    /// committed before the call, by any process.
    ///
    /// # Errors
    /// As [`Repository::state`].
    pub async fn fresh_state<T: Send + 'static>(
        &self,
        stream: &StreamId,
        read: impl FnOnce(&R::State) -> T + Send + 'static,
    ) -> Result<T, CommandError<R::Action>> {
        self.read(stream, read, true).await
    }

    async fn read<T: Send + 'static>(
        &self,
        stream: &StreamId,
        read: impl FnOnce(&R::State) -> T + Send + 'static,
        fresh: bool,
    ) -> Result<T, CommandError<R::Action>> {
        let (reply, answer) = oneshot::channel();
        let read: ReadJob<R::State> = Box::new(move |state: &R::State| {
            let _ = reply.send(read(state));
        });
        self.enqueue(stream, Job::Read { read, fresh })?;
        answer.await.map_err(|_| CommandError::WorkerStopped { stream: stream.clone() })
    }

    /// Waits until every effect started by any live stream's reducer (payment gateway calls,
    /// delayed actions that are due) has finished.
    pub async fn settled(&self) {
        let streams: Vec<StreamId> = match self.inner.workers.lock() {
            Ok(guard) => guard.1.keys().cloned().collect(),
            Err(_) => return,
        };
        for stream in streams {
            let (reply, answer) = oneshot::channel();
            if self.enqueue(&stream, Job::Settle(reply)).is_ok() {
                let _ = answer.await;
            }
        }
        let _ = self.inner.snapshots_in_flight.subscribe().wait_for(|n| *n == 0).await;
    }

    fn enqueue(&self, stream: &StreamId, job: Job<R>) -> Result<(), CommandError<R::Action>> {
        let mut guard =
            self.inner.workers.lock().map_err(|_| CommandError::WorkerStopped { stream: stream.clone() })?;
        let (next_id, workers) = &mut *guard;
        let job = match workers.get(stream) {
            Some(worker) => match worker.jobs.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        *next_id += 1;
        let (jobs, queue) = mpsc::unbounded_channel();
        let _ = jobs.send(job);
        workers.insert(stream.clone(), Worker { id: *next_id, jobs });
        let repository = self.clone();
        let worker_id = *next_id;
        let stream = stream.clone();
        let span = tracing::debug_span!("stream_worker", %stream);
        tokio::spawn(async move { repository.run_worker(stream, worker_id, queue).await }.instrument(span));
        Ok(())
    }

    /// Loads a stream: its latest snapshot (if any, and readable) plus the events after it.
    async fn restore(&self, stream: &StreamId) -> Result<Loaded<R>, CommandError<R::Action>> {
        let inner = &self.inner;
        let snapshot = match inner.events.load_snapshot(stream).await {
            Ok(snapshot) => snapshot.filter(|s| s.schema_version == SNAPSHOT_SCHEMA_VERSION),
            Err(error) => {
                tracing::warn!(%error, "cannot read the snapshot; loading the whole stream");
                None
            }
        };
        let (base, version) = match snapshot.map(|s| (serde_json::from_str::<R::State>(&s.state), s.stream_version)) {
            Some((Ok(state), version)) => (state, version),
            Some((Err(error), _)) => {
                tracing::warn!(%error, "snapshot does not match the state's shape; loading the whole stream");
                (R::State::default(), 0)
            }
            None => (R::State::default(), 0),
        };
        let journal = Arc::new(StreamJournal::after(Arc::clone(&inner.events), stream.clone(), version));
        let store = Store::restore(
            inner.reducer.clone(),
            base,
            inner.env.clone(),
            Arc::clone(&inner.clock),
            Arc::clone(&journal) as Arc<dyn crate::framework::Journal<R::Action>>,
            inner.observer.clone(),
        )
        .await
        .map_err(|source| CommandError::Storage { stream: stream.clone(), source })?;
        Ok(Loaded { store, journal, snapshot_version: version })
    }

    /// Saves a due snapshot (see [`snapshot_due`](Self::snapshot_due)): state and version were
    /// copied under the store's lock, so they always match; serialising and writing
    /// happen in a background task, so a large state (a sold-out section's every seat) never
    /// holds up the stream's commands. [`settled`](Self::settled) waits for it.
    fn save_snapshot_in_background(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<R>,
        (state, version): (R::State, u64),
    ) {
        loaded.snapshot_version = version;
        let (events, stream) = (Arc::clone(&self.inner.events), stream.clone());
        let in_flight = self.inner.snapshots_in_flight.clone();
        in_flight.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || serde_json::to_string(&state)).await {
                Ok(Ok(state)) => {
                    let snapshot = Snapshot {
                        stream_id: stream,
                        stream_version: version,
                        state,
                        schema_version: SNAPSHOT_SCHEMA_VERSION,
                    };
                    if let Err(error) = events.save_snapshot(snapshot).await {
                        tracing::warn!(%error, "cannot save a snapshot");
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot serialise the state for a snapshot"),
                Err(error) => tracing::warn!(%error, "snapshot task failed"),
            }
            in_flight.send_modify(|n| *n -= 1);
        });
    }

    /// The state to snapshot and its version, once `snapshot_every` events have been appended
    /// since the last snapshot.
    async fn snapshot_due(&self, loaded: &Loaded<R>) -> Option<(R::State, u64)> {
        let every = self.inner.config.snapshot_every;
        if every == 0 || loaded.journal.version() < loaded.snapshot_version.saturating_add(every) {
            return None;
        }
        let journal = Arc::clone(&loaded.journal);
        Some(loaded.store.with_state(move |state| (state.clone(), journal.version())).await)
    }

    async fn run_worker(self, stream: StreamId, worker_id: u64, mut queue: mpsc::UnboundedReceiver<Job<R>>) {
        let mut loaded = match self.restore(&stream).await {
            Ok(store) => Some(store),
            Err(error) => {
                tracing::warn!(%error, "cannot load stream");
                None
            }
        };
        let config = self.inner.config;
        loop {
            let first = match tokio::time::timeout(config.idle_timeout, queue.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    if self.retire(&stream, worker_id, &queue) {
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
                    Job::Read { read, fresh } => match loaded.as_ref().map(|l| &l.store) {
                        Some(store) => {
                            if fresh && let Err(error) = store.reload().await {
                                tracing::warn!(%error, "reloading the stream failed; answering from the cached state");
                            }
                            store.with_state(read).await;
                        }
                        None => drop(read),
                    },
                    Job::Settle(reply) => {
                        if let Some(loaded) = &loaded {
                            let store = loaded.store.clone();
                            tokio::spawn(async move {
                                store.settled().await;
                                let _ = reply.send(());
                            });
                        }
                    }
                }
                if commands.len() < config.max_batch {
                    next = queue.try_recv().ok();
                }
            }
            if commands.is_empty() {
                continue;
            }
            if let Some(loaded) = &mut loaded {
                self.handle_batch(&loaded.store, &stream, commands).await;
                if let Some(due) = self.snapshot_due(loaded).await {
                    self.save_snapshot_in_background(&stream, loaded, due);
                }
            } else {
                for job in commands {
                    let _ = job.reply.send(Err(CommandError::Storage {
                        stream: stream.clone(),
                        source: JournalError::Storage("stream could not be loaded".into()),
                    }));
                }
                self.retire(&stream, worker_id, &queue);
                return;
            }
        }
    }

    /// Removes this worker from the registry if nothing is queued; false if work arrived.
    fn retire(&self, stream: &StreamId, worker_id: u64, queue: &mpsc::UnboundedReceiver<Job<R>>) -> bool {
        let Ok(mut guard) = self.inner.workers.lock() else { return true };
        if !queue.is_empty() {
            return false;
        }
        if guard.1.get(stream).is_some_and(|w| w.id == worker_id) {
            guard.1.remove(stream);
        }
        true
    }

    async fn handle_batch(&self, store: &Store<R>, stream: &StreamId, jobs: Vec<CommandJob<R::Action>>) {
        let retry = self.inner.config.retry;
        let context = jobs[0].context;
        let mut attempt = 1;
        let failure = loop {
            let commands = jobs.iter().map(|job| job.command.clone()).collect();
            let span = tracing::debug_span!(
                "command_batch", %stream, size = jobs.len(), attempt, correlation_id = %context.correlation_id
            );
            match context.scope(store.send_batch(commands)).instrument(span).await {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(outcome.map_err(CommandError::Rejected));
                    }
                    return;
                }
                Err(JournalError::Conflict { .. }) if attempt < retry.max_attempts => {
                    tokio::time::sleep(retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(JournalError::Conflict { .. }) => break None,
                Err(error) => break Some(error.to_string()),
            }
        };
        for job in jobs {
            let error = match &failure {
                None => CommandError::RetriesExhausted { stream: stream.clone(), attempts: attempt },
                Some(message) => CommandError::Storage {
                    stream: stream.clone(),
                    source: JournalError::Storage(message.clone().into()),
                },
            };
            let _ = job.reply.send(Err(error));
        }
    }
}
