//! The one runner for every consumer of the global log: [`follow`] a store from a checkpoint, in
//! batches, retrying failures with the crate's [`RetryPolicy`] and never skipping an event
//! silently: a bad one is quarantined (reported) or halts the run, by [`BadEventPolicy`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;

use super::quarantine::QUARANTINE_LISTED;
use super::retry::{pause, stopped};
use super::{BadEventPolicy, Envelope, EventStore, EventStoreError, QuarantinedEvent, RetryPolicy};

/// A consumer of the global log, run by [`follow`].
///
/// The consumer owns its checkpoint: [`start_position`](Self::start_position) says where it
/// stands, and [`handle`](Self::handle) commits its checkpoint as part of handling a batch, in
/// whatever way keeps the two consistent for it (one transaction with its rows, or a
/// [`CheckpointStore`](super::CheckpointStore) save after a broker acknowledged the batch).
/// Delivery is at least once: after a crash between handling and committing, or a failed attempt
/// that is retried, a batch comes again, so `handle` must be idempotent (invariant I8).
///
/// ```
/// use std::sync::Arc;
/// use boxoffice::event_store::{
///     CheckpointStore, Envelope, EventStore, EventStoreError, ExpectedVersion, FollowConfig, FollowStatus,
///     LogConsumer, MemoryCheckpointStore, MemoryEventStore, Metadata, NewEvent, StreamId, follow,
/// };
/// use tokio::sync::watch;
///
/// /// Counts events and keeps its checkpoint in a checkpoint store.
/// struct Counter {
///     checkpoints: MemoryCheckpointStore,
///     seen: u64,
/// }
///
/// #[async_trait::async_trait]
/// impl LogConsumer for Counter {
///     type Error = EventStoreError;
///     fn name(&self) -> &str {
///         "counter"
///     }
///     async fn start_position(&mut self) -> Result<u64, EventStoreError> {
///         self.checkpoints.load_checkpoint("counter").await
///     }
///     async fn handle(&mut self, batch: &[Envelope]) -> Result<(), EventStoreError> {
///         self.seen += batch.len() as u64;
///         let last = batch.last().map_or(0, |e| e.global_position);
///         self.checkpoints.save_checkpoint("counter", last).await
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Arc::new(MemoryEventStore::new());
/// let stream = StreamId::new("cart-1")?;
/// let events = (0..3).map(|_| NewEvent::new("ItemAdded", 1, serde_json::json!({}))).collect();
/// store.append(&stream, ExpectedVersion::Any, events, &Metadata::default(), None).await?;
///
/// let (stop, stop_rx) = watch::channel(false);
/// let status = watch::Sender::new(FollowStatus::default());
/// let mut caught_up = status.subscribe();
/// let mut counter = Counter { checkpoints: MemoryCheckpointStore::new(), seen: 0 };
/// let config = FollowConfig::default();
/// let running = follow(&*store, &mut counter, &config, stop_rx, &status);
/// let stopper = async {
///     caught_up.wait_for(|s| s.position == 3).await.unwrap();
///     stop.send_replace(true);
/// };
/// let (reached, ()) = tokio::join!(running, stopper);
/// assert_eq!(reached.unwrap(), 3);
/// assert_eq!(counter.seen, 3);
/// # Ok::<(), EventStoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait LogConsumer: Send {
    /// What [`start_position`](Self::start_position) and [`handle`](Self::handle) fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A name for logs and errors (usually the checkpoint name).
    fn name(&self) -> &str;

    /// The global position after which to start: the consumer's committed checkpoint. Called
    /// once per [`follow`] (retried on failure); later resubscriptions start after the last
    /// batch handled.
    ///
    /// # Errors
    /// When the checkpoint cannot be read; [`follow`] retries.
    async fn start_position(&mut self) -> Result<u64, Self::Error>;

    /// Handles `batch` (never empty, strictly increasing positions, all after what was handled
    /// before) and commits the checkpoint to its last position. [`follow`] may drop the future at
    /// an await point when asked to stop; what was not committed then comes again next time.
    ///
    /// # Errors
    /// Anything; [`follow`] retries the same batch until it succeeds, unless
    /// [`bad_event`](Self::bad_event) says the error is about an event that can never be handled.
    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), Self::Error>;

    /// The global position of the event `error` is about, when that event can never be handled
    /// (it cannot be decoded or applied, so retrying cannot help); `None`, the default, for
    /// failures worth retrying. [`follow`] then quarantines the event or halts, by its
    /// [`BadEventPolicy`], instead of retrying: it hands over the events of the batch before the
    /// bad one again (`handle` is idempotent), then [`skip`](Self::skip)s it, then goes on.
    fn bad_event(&self, error: &Self::Error) -> Option<u64> {
        let _ = error;
        None
    }

    /// The bad event at `position` was quarantined: the consumer is past it. A consumer that
    /// commits a checkpoint should move it to `position` here, so that a bad event at the head of
    /// the log does not leave it (and whoever waits for it) behind. The default does nothing.
    ///
    /// # Errors
    /// Anything; [`follow`] retries.
    async fn skip(&mut self, position: u64) -> Result<(), Self::Error> {
        let _ = position;
        Ok(())
    }
}

/// How [`follow`] reads and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowConfig {
    /// Most events handed to [`LogConsumer::handle`] at once (what the subscription has ready,
    /// up to this many).
    pub max_batch: usize,
    /// Pauses between attempts after a failed read or handle, and when to give up.
    pub retry: RetryPolicy,
    /// What to do with an event that can never be read or handled.
    pub bad_events: BadEventPolicy,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self { max_batch: 512, retry: RetryPolicy::default(), bad_events: BadEventPolicy::default() }
    }
}

/// What a [`follow`] run is doing, published through a watch channel after every batch and
/// every failure.
#[derive(Debug, Clone, Default)]
pub struct FollowStatus {
    /// The last global position handled (or the start position, before the first batch).
    pub position: u64,
    /// Batches handled.
    pub batches: u64,
    /// Events handled.
    pub events: u64,
    /// Failed attempts that were retried (reads, start positions and batches).
    pub retries: u64,
    /// The failure being retried right now; cleared by the next batch handled.
    pub failing: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The most recent failure (or quarantined event), kept after recovery.
    pub last_error: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The bad events this run moved past under [`BadEventPolicy::Quarantine`], in log order (at
    /// most [`QUARANTINE_LISTED`](super::QUARANTINE_LISTED)).
    pub quarantined: Vec<QuarantinedEvent>,
    /// How many bad events this run moved past.
    pub quarantined_total: u64,
}

impl FollowStatus {
    /// What the run is failing with right now, else the last failure it had: the cause to name
    /// when something waiting for it times out.
    #[must_use]
    pub fn trouble(&self) -> Option<Arc<dyn std::error::Error + Send + Sync>> {
        self.failing.clone().or_else(|| self.last_error.clone())
    }
}

/// Why a [`follow`] run ended without being healthy: the retry policy gave up, or a stop came
/// while a failure was being retried. Cheap to clone (causes are shared).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError<E: std::error::Error + 'static> {
    /// The consumer's start position could not be loaded.
    #[error("log consumer {consumer}: cannot load its start position")]
    Start {
        /// The consumer.
        consumer: String,
        /// Its error.
        #[source]
        source: Arc<E>,
    },
    /// Reading the log after `after` failed.
    #[error("log consumer {consumer}: reading the log after position {after} failed")]
    Read {
        /// The consumer.
        consumer: String,
        /// The last position handled.
        after: u64,
        /// The store's error.
        #[source]
        source: Arc<EventStoreError>,
    },
    /// Handling the batch `first..=last` failed; nothing after `first - 1` counts as handled.
    #[error("log consumer {consumer}: handling events {first}..={last} failed")]
    Handle {
        /// The consumer.
        consumer: String,
        /// Position of the batch's first event.
        first: u64,
        /// Position of the batch's last event.
        last: u64,
        /// The consumer's error.
        #[source]
        source: Arc<E>,
    },
    /// A bad event stopped the consumer under [`BadEventPolicy::Halt`].
    #[error("log consumer {consumer}: halted at the bad event at position {global_position}")]
    BadEvent {
        /// The consumer.
        consumer: String,
        /// The event's global position.
        global_position: u64,
        /// Why it cannot be read or handled.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl<E: std::error::Error + 'static> Clone for FollowError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Start { consumer, source } => Self::Start { consumer: consumer.clone(), source: Arc::clone(source) },
            Self::Read { consumer, after, source } => {
                Self::Read { consumer: consumer.clone(), after: *after, source: Arc::clone(source) }
            }
            Self::Handle { consumer, first, last, source } => {
                Self::Handle { consumer: consumer.clone(), first: *first, last: *last, source: Arc::clone(source) }
            }
            Self::BadEvent { consumer, global_position, source } => Self::BadEvent {
                consumer: consumer.clone(),
                global_position: *global_position,
                source: Arc::clone(source),
            },
        }
    }
}

/// Follows `store` for `consumer`: from its [`start_position`](LogConsumer::start_position),
/// hands every later event to [`handle`](LogConsumer::handle) in order, in batches of at most
/// `config.max_batch`, until `stop` turns true (or its sender is dropped). Returns the last
/// position handled.
///
/// Failures are logged at `warn`, published in `status` and retried with `config.retry`: a
/// failed batch is handed over again, the same events, until it succeeds (the position does not
/// move past it); a failed read resubscribes after the last position handled. A bad event (one
/// the store cannot read, see [`EventStoreError::bad_event_position`], or one the consumer can
/// never apply, see [`LogConsumer::bad_event`]) is not retried: under
/// [`BadEventPolicy::Quarantine`] it is logged at `error`, listed in
/// [`FollowStatus::quarantined`] and [`skip`](LogConsumer::skip)ped, and the run goes on after
/// it; under [`BadEventPolicy::Halt`] the run ends with [`FollowError::BadEvent`]. A stop ends a
/// wait, a pause or a batch in hand at once.
///
/// # Errors
/// When the retry policy gives up, or a stop arrives while a failure is being retried: that
/// failure; under [`BadEventPolicy::Halt`], the bad event.
pub async fn follow<C: LogConsumer>(
    store: &dyn EventStore,
    consumer: &mut C,
    config: &FollowConfig,
    mut stop: watch::Receiver<bool>,
    status: &watch::Sender<FollowStatus>,
) -> Result<u64, FollowError<C::Error>> {
    let mut retry = Retry { policy: config.retry, streak: None, status };
    let mut position = loop {
        let outcome = tokio::select! {
            biased;
            () = stopped(&mut stop) => return Ok(0),
            outcome = consumer.start_position() => outcome,
        };
        match outcome {
            Ok(position) => break position,
            Err(error) => {
                let error = FollowError::Start { consumer: consumer.name().to_owned(), source: Arc::new(error) };
                retry.after(error, &mut stop).await?;
            }
        }
    };
    retry.recovered(|s| s.position = position);
    tracing::debug!(consumer = consumer.name(), position, "following the log");
    loop {
        let mut batches = store.subscribe(position).ready_chunks(config.max_batch.max(1));
        let read_error = loop {
            let chunk = tokio::select! {
                biased;
                () = stopped(&mut stop) => return Ok(position),
                chunk = batches.next() => chunk,
            };
            let Some(chunk) = chunk else { break EventStoreError::Closed };
            let mut batch = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for item in chunk {
                match item {
                    Ok(envelope) if envelope.global_position > position => batch.push(envelope),
                    Ok(_) => {}
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                // Reading works again: a read failure is no longer what is being retried.
                retry.recovered(|_| {});
                if let Flow::Stopped =
                    handle_batch(consumer, &batch, config.bad_events, &mut retry, &mut stop, &mut position).await?
                {
                    return Ok(position);
                }
            }
            if let Some(error) = failed {
                break error;
            }
        };
        // A bad event the store cannot read: report it and resubscribe after it.
        if let Some(bad) = read_error.bad_event_position().filter(|bad| *bad > position) {
            quarantine::<C::Error>(consumer.name(), bad, Arc::new(read_error), config.bad_events, retry.status)?;
            if let Flow::Stopped = skip_past(consumer, bad, &mut retry, &mut stop, &mut position).await? {
                return Ok(position);
            }
            continue;
        }
        let error =
            FollowError::Read { consumer: consumer.name().to_owned(), after: position, source: Arc::new(read_error) };
        retry.after(error, &mut stop).await?;
    }
}

/// Whether a [`follow`] run goes on or was asked to stop.
enum Flow {
    Go,
    Stopped,
}

/// Hands `batch` to `consumer`, retrying failures, and moves `position` as parts of it are
/// handled. A bad event is quarantined (or halts the run): the events before it are handed over
/// on their own first, then it is skipped, then the rest follows.
async fn handle_batch<C: LogConsumer>(
    consumer: &mut C,
    batch: &[Envelope],
    policy: BadEventPolicy,
    retry: &mut Retry<'_, C::Error>,
    stop: &mut watch::Receiver<bool>,
    position: &mut u64,
) -> Result<Flow, FollowError<C::Error>> {
    let (mut from, mut to) = (0, batch.len());
    while from < batch.len() {
        let part = &batch[from..to];
        let (Some(first), Some(last)) = (part.first(), part.last()) else { break };
        let (first, last) = (first.global_position, last.global_position);
        let outcome = tokio::select! {
            biased;
            () = stopped(stop) => return retry.pending().map_or(Ok(Flow::Stopped), Err),
            outcome = consumer.handle(part) => outcome,
        };
        match outcome {
            Ok(()) => {
                *position = last;
                super::telemetry::consumed(consumer.name(), last);
                let events = part.len() as u64;
                retry.recovered(|s| {
                    s.position = last;
                    s.batches += 1;
                    s.events += events;
                });
                (from, to) = (to, batch.len());
            }
            Err(error) => {
                let bad = consumer
                    .bad_event(&error)
                    .and_then(|bad| part.iter().position(|e| e.global_position == bad))
                    .map(|index| from + index);
                match bad {
                    Some(index) if index == from => {
                        quarantine::<C::Error>(consumer.name(), first, Arc::new(error), policy, retry.status)?;
                        if let Flow::Stopped = skip_past(consumer, first, retry, stop, position).await? {
                            return Ok(Flow::Stopped);
                        }
                        (from, to) = (index + 1, batch.len());
                    }
                    // Hand over the events before the bad one on their own first.
                    Some(index) => to = index,
                    None => {
                        let consumer = consumer.name().to_owned();
                        let error = FollowError::Handle { consumer, first, last, source: Arc::new(error) };
                        retry.after(error, stop).await?;
                    }
                }
            }
        }
    }
    Ok(Flow::Go)
}

/// Tells `consumer` it is past the quarantined event at `bad` (retrying failures), and moves
/// `position` there.
async fn skip_past<C: LogConsumer>(
    consumer: &mut C,
    bad: u64,
    retry: &mut Retry<'_, C::Error>,
    stop: &mut watch::Receiver<bool>,
    position: &mut u64,
) -> Result<Flow, FollowError<C::Error>> {
    loop {
        let outcome = tokio::select! {
            biased;
            () = stopped(stop) => return retry.pending().map_or(Ok(Flow::Stopped), Err),
            outcome = consumer.skip(bad) => outcome,
        };
        match outcome {
            Ok(()) => break,
            Err(error) => {
                let consumer = consumer.name().to_owned();
                let error = FollowError::Handle { consumer, first: bad, last: bad, source: Arc::new(error) };
                retry.after(error, stop).await?;
            }
        }
    }
    *position = bad;
    super::telemetry::consumed(consumer.name(), bad);
    retry.recovered(|s| s.position = bad);
    Ok(Flow::Go)
}

/// Reports the bad event at `global_position` and lets the run go on after it, or (under
/// [`BadEventPolicy::Halt`]) ends the run with it.
fn quarantine<E: std::error::Error + Send + Sync + 'static>(
    consumer: &str,
    global_position: u64,
    cause: Arc<dyn std::error::Error + Send + Sync>,
    policy: BadEventPolicy,
    status: &watch::Sender<FollowStatus>,
) -> Result<(), FollowError<E>> {
    match policy {
        BadEventPolicy::Halt => {
            let error = FollowError::BadEvent { consumer: consumer.to_owned(), global_position, source: cause };
            tracing::error!(error = %Report(&error), "halting at a bad event");
            let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error.clone());
            status.send_modify(|s| {
                s.failing = Some(Arc::clone(&shared));
                s.last_error = Some(shared);
            });
            Err(error)
        }
        BadEventPolicy::Quarantine => {
            tracing::error!(consumer, global_position, cause = %Report(&*cause), "quarantined a bad event; reading on after it");
            super::telemetry::quarantined(consumer);
            status.send_modify(|s| {
                s.last_error = Some(Arc::clone(&cause));
                s.quarantined_total += 1;
                if s.quarantined.len() < QUARANTINE_LISTED {
                    s.quarantined.push(QuarantinedEvent { global_position, cause });
                }
            });
            Ok(())
        }
    }
}

/// The retry state of one [`follow`] run: the failure streak in progress, if any.
struct Retry<'a, E: std::error::Error + 'static> {
    policy: RetryPolicy,
    /// The delays left for the current streak, and the failure being retried.
    streak: Option<(Box<dyn Iterator<Item = std::time::Duration> + Send>, FollowError<E>)>,
    status: &'a watch::Sender<FollowStatus>,
}

impl<E: std::error::Error + Send + Sync + 'static> Retry<'_, E> {
    /// Reports `error` and pauses before the next attempt.
    ///
    /// # Errors
    /// `error` when the policy gives up or a stop arrives during the pause.
    async fn after(&mut self, error: FollowError<E>, stop: &mut watch::Receiver<bool>) -> Result<(), FollowError<E>> {
        let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error.clone());
        let (delays, pending) = self.streak.get_or_insert_with(|| (Box::new(self.policy.backoff()), error.clone()));
        *pending = error.clone();
        let delay = delays.next();
        self.status.send_modify(|s| {
            s.failing = Some(Arc::clone(&shared));
            s.last_error = Some(shared);
            s.retries += u64::from(delay.is_some());
        });
        let Some(delay) = delay else {
            tracing::error!(error = %Report(&error), "giving up following the log");
            return Err(error);
        };
        tracing::warn!(error = %Report(&error), ?delay, "following the log failed; retrying");
        if pause(delay, stop).await { Ok(()) } else { Err(error) }
    }

    /// The failure being retried, if any.
    fn pending(&self) -> Option<FollowError<E>> {
        self.streak.as_ref().map(|(_, error)| error.clone())
    }

    /// Ends the failure streak and publishes `update`.
    fn recovered(&mut self, update: impl FnOnce(&mut FollowStatus)) {
        self.streak = None;
        self.status.send_modify(|s| {
            s.failing = None;
            update(s);
        });
    }
}

/// Displays an error with its chain of causes, for logs.
struct Report<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}
