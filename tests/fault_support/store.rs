//! [`FaultyStore`]: an [`EventStore`] wrapper that makes chosen appends fail once, writing
//! nothing, the way a dropped connection or a failed commit does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use boxoffice::aggregates::category;
use boxoffice::event_store::{
    AppendResult, Envelope, EventStore, EventStoreError, ExpectedVersion, Metadata, NewEvent, Snapshot, StreamAppend,
    StreamId,
};
use futures::stream::BoxStream;
use tokio::sync::watch;

/// Which append to fail: the next one carrying an event named `event_type` on a stream of
/// `category` (`event`, `inventory`, `reservation` or `payment`). The category matters because
/// the Reservation and the Payment aggregates both write an event named `PaymentSucceeded`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FaultPoint {
    pub category: String,
    pub event_type: String,
}

impl FaultPoint {
    pub fn new(category: &str, event_type: &str) -> Self {
        Self { category: category.to_owned(), event_type: event_type.to_owned() }
    }

    fn matches(&self, append: &StreamAppend) -> bool {
        category(&append.stream) == self.category && append.events.iter().any(|e| e.event_type == self.event_type)
    }
}

impl std::fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.category, self.event_type)
    }
}

#[derive(Default)]
struct Faults {
    /// Armed faults, each with how many more appends it fails.
    armed: HashMap<FaultPoint, u32>,
    /// Faults injected so far, per point.
    injected: HashMap<FaultPoint, u64>,
    /// Appends that take this long before they reach the wrapped store (a slow database).
    slow: HashMap<FaultPoint, Duration>,
}

/// Delegates everything to the wrapped store, except that an armed fault makes the next
/// `append`/`append_batch` containing a matching event fail with an operational error (never a
/// concurrency conflict) before anything reaches the wrapped store: the whole batch is refused
/// and nothing of it is written. A slowdown makes matching appends wait before they are passed
/// on; a subscription lag makes followers of the log fall behind. Reads, snapshots and
/// checkpoints are untouched.
///
/// The injected error is `EventStoreError::Database(sqlx::Error::Io(ConnectionReset))` when the
/// `postgres` feature is on (what a dropped connection looks like), and
/// `EventStoreError::Unavailable` otherwise.
pub struct FaultyStore {
    inner: Arc<dyn EventStore>,
    faults: Mutex<Faults>,
    fired: watch::Sender<u64>,
    /// Delay before each event a subscription yields (a reader behind the log).
    lag: Arc<Mutex<Duration>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self { inner, faults: Mutex::default(), fired: watch::channel(0).0, lag: Arc::default() })
    }

    /// The store underneath, for reading the log without any fault in the way.
    pub fn inner(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.inner)
    }

    /// Fails the next append that contains an event `event_type` on a `category` stream, once.
    pub fn fail_next_append_of(&self, category: &str, event_type: &str) {
        self.fail_next_appends_of(category, event_type, 1);
    }

    /// Fails the next `times` appends that match (adds to what is already armed).
    pub fn fail_next_appends_of(&self, category: &str, event_type: &str, times: u32) {
        let mut faults = self.faults.lock().unwrap();
        *faults.armed.entry(FaultPoint::new(category, event_type)).or_default() += times;
    }

    /// Makes every append that carries `event_type` on a `category` stream wait `delay` before
    /// it reaches the wrapped store (it still succeeds): a slow commit, to show what a caller
    /// that does not wait for it misses.
    pub fn slow_appends_of(&self, category: &str, event_type: &str, delay: Duration) {
        self.faults.lock().unwrap().slow.insert(FaultPoint::new(category, event_type), delay);
    }

    /// Makes every subscription, including ones already open, wait `delay` before each event
    /// it yields: followers of the log fall behind the appends, as they do behind a busy or
    /// polled database.
    pub fn lag_subscriptions(&self, delay: Duration) {
        *self.lag.lock().unwrap() = delay;
    }

    /// Disarms every fault not yet fired and every slowdown.
    pub fn disarm(&self) {
        let mut faults = self.faults.lock().unwrap();
        faults.armed.clear();
        faults.slow.clear();
        *self.lag.lock().unwrap() = Duration::ZERO;
    }

    fn delay_for(&self, appends: &[StreamAppend]) -> Option<Duration> {
        let faults = self.faults.lock().unwrap();
        faults.slow.iter().filter(|(point, _)| appends.iter().any(|a| point.matches(a))).map(|(_, d)| *d).max()
    }

    /// How many faults were injected at this point so far.
    pub fn injected(&self, category: &str, event_type: &str) -> u64 {
        self.faults.lock().unwrap().injected.get(&FaultPoint::new(category, event_type)).copied().unwrap_or(0)
    }

    /// How many faults were injected in total.
    pub fn injected_total(&self) -> u64 {
        *self.fired.borrow()
    }

    /// Faults armed and not yet fired.
    pub fn still_armed(&self) -> u32 {
        self.faults.lock().unwrap().armed.values().sum()
    }

    /// A receiver of the total of injected faults, to wait on (`wait_for(|n| *n >= 1)`) instead
    /// of sleeping.
    pub fn injections(&self) -> watch::Receiver<u64> {
        self.fired.subscribe()
    }

    /// If an armed fault matches one of `appends`, consumes it and returns the error to report.
    fn take_fault(&self, appends: &[StreamAppend]) -> Option<EventStoreError> {
        let mut faults = self.faults.lock().unwrap();
        let point = faults.armed.keys().find(|point| appends.iter().any(|a| point.matches(a))).cloned()?;
        let left = faults.armed.get_mut(&point).unwrap();
        *left -= 1;
        if *left == 0 {
            faults.armed.remove(&point);
        }
        *faults.injected.entry(point.clone()).or_default() += 1;
        drop(faults);
        self.fired.send_modify(|n| *n += 1);
        Some(injected_error(&point))
    }
}

#[cfg(feature = "postgres")]
fn injected_error(point: &FaultPoint) -> EventStoreError {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, format!("injected fault at {point}"));
    EventStoreError::Database(sqlx::Error::Io(io))
}

#[cfg(not(feature = "postgres"))]
fn injected_error(point: &FaultPoint) -> EventStoreError {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, format!("injected fault at {point}"));
    EventStoreError::Unavailable(Box::new(io))
}

#[async_trait]
impl EventStore for FaultyStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        idempotency_key: Option<&str>,
    ) -> Result<AppendResult, EventStoreError> {
        let append = StreamAppend {
            stream: stream.clone(),
            expected,
            events,
            metadata: metadata.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        if let Some(error) = self.take_fault(std::slice::from_ref(&append)) {
            return Err(error);
        }
        if let Some(delay) = self.delay_for(std::slice::from_ref(&append)) {
            tokio::time::sleep(delay).await;
        }
        self.inner.append(stream, expected, append.events, metadata, idempotency_key).await
    }

    async fn append_batch(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, EventStoreError> {
        if let Some(error) = self.take_fault(&appends) {
            return Err(error);
        }
        if let Some(delay) = self.delay_for(&appends) {
            tokio::time::sleep(delay).await;
        }
        self.inner.append_batch(appends).await
    }

    async fn load_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.load_stream(stream, from_version).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, EventStoreError> {
        self.inner.stream_version(stream).await
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> Result<Vec<Envelope>, EventStoreError> {
        self.inner.read_all(after_position, limit).await
    }

    fn subscribe(&self, after_position: u64) -> BoxStream<'static, Result<Envelope, EventStoreError>> {
        use futures::StreamExt;
        let lag = Arc::clone(&self.lag);
        self.inner
            .subscribe(after_position)
            .then(move |item| {
                let delay = *lag.lock().unwrap();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    item
                }
            })
            .boxed()
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        self.inner.head_position().await
    }

    async fn last_committed_position(&self) -> Result<u64, EventStoreError> {
        self.inner.last_committed_position().await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, EventStoreError> {
        self.inner.load_snapshot(stream).await
    }
}
