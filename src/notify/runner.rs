//! [`Notifier`]: follows the log and sends the notifications it calls for, at least once and
//! deduplicated (see the [module docs](super)).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::compose::{Composer, Mark, Planned};
use super::ledger::{Claim, Ledger};
use super::{CustomerDirectory, NotificationSink, NotifierError, NotifierRunError, Recipient};
use crate::domain::TicketKeys;
use crate::event_store::{
    BadEventPolicy, CheckpointStore, Envelope, EventStore, FollowConfig, FollowStatus, LogConsumer, RetryPolicy, follow,
};
use crate::framework::{Clock, SystemClock};

/// How a [`Notifier`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Its checkpoint name; notifiers with the same name (in several processes) share progress.
    pub name: String,
    /// Most log events handled before the checkpoint is saved.
    pub max_batch: usize,
    /// Pauses between attempts after a failed delivery, store read or checkpoint save, and
    /// between looks at a notification another notifier is sending. Default: 50 ms doubling to
    /// 5 s, retrying until stopped (a mail server that is down holds notifications back, it
    /// does not lose them; [`health`](crate::system::TicketingSystem::health) shows it failing).
    pub retry: RetryPolicy,
    /// What to do with a log event that cannot be turned into notifications.
    pub bad_events: BadEventPolicy,
    /// How long a claim by another notifier is respected before this one takes the
    /// notification over (and sends it, perhaps a second time). Keep it well above the sink's
    /// own timeout. Default: 60 s.
    pub claim_lease: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            name: "boxoffice-notifier".to_owned(),
            max_batch: 256,
            retry: RetryPolicy::default(),
            bad_events: BadEventPolicy::default(),
            claim_lease: Duration::from_secs(60),
        }
    }
}

/// What a [`Notifier`] has done since it started.
#[derive(Debug, Clone, Default)]
pub struct NotifierStats {
    /// Its checkpoint: every notification caused by an event up to here is delivered or refused.
    pub position: u64,
    /// Notifications the sink accepted.
    pub delivered: u64,
    /// Notifications found already delivered or refused (a redelivered batch, another notifier).
    pub duplicates: u64,
    /// Notifications refused (no address known, or refused by the sink for good).
    pub refused: u64,
    /// The last refusal.
    pub last_refusal: Option<Arc<NotifierError>>,
}

/// Follows the log from its checkpoint and hands the notifications that completed purchases,
/// refunds and cancelled events call for to a [`NotificationSink`], addressed through a
/// [`CustomerDirectory`]. Run it with [`spawn`](Self::spawn) (or inside
/// [`TicketingSystem`](crate::system::TicketingSystem), see
/// [`TicketingSystemBuilder::notifier`](crate::system::TicketingSystemBuilder::notifier)).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use boxoffice::domain::CustomerId;
/// use boxoffice::event_store::{MemoryCheckpointStore, MemoryEventStore};
/// use boxoffice::notify::{EmailAddress, Notifier, RecordingSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let addresses: HashMap<CustomerId, EmailAddress> = HashMap::new(); // the application's
/// let sink = RecordingSink::new();
/// let notifier = Notifier::new(
///     Arc::new(MemoryEventStore::new()),
///     Arc::new(MemoryCheckpointStore::new()),
///     Arc::new(sink.clone()),
///     Arc::new(move |customer: CustomerId| addresses.get(&customer).cloned()),
/// )
/// .spawn();
/// let stats = notifier.stop().await?;
/// assert_eq!(stats.delivered, 0);
/// # Ok(())
/// # }
/// ```
pub struct Notifier {
    store: Arc<dyn EventStore>,
    ledger: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    sink: Arc<dyn NotificationSink>,
    directory: Arc<dyn CustomerDirectory>,
    clock: Arc<dyn Clock>,
    config: NotifierConfig,
    ticket_keys: Option<TicketKeys>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier of `store`'s log with its checkpoint in `checkpoints`, sending to `sink` at the
    /// addresses `directory` gives. Its ledger is `store` itself until [`ledger`](Self::ledger)
    /// says otherwise; its clock (for claims) the system clock.
    #[must_use]
    pub fn new(
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn CheckpointStore>,
        sink: Arc<dyn NotificationSink>,
        directory: Arc<dyn CustomerDirectory>,
    ) -> Self {
        Self {
            ledger: Arc::clone(&store),
            store,
            checkpoints,
            sink,
            directory,
            clock: Arc::new(SystemClock),
            config: NotifierConfig::default(),
            ticket_keys: None,
        }
    }

    /// Keeps the ledger (the `notified-*` streams) in `store` instead of the followed one.
    /// Notifiers that share a checkpoint must share their ledger.
    #[must_use]
    pub fn ledger(mut self, store: Arc<dyn EventStore>) -> Self {
        self.ledger = store;
        self
    }

    /// Signs the tickets a purchase confirmation lists (each with the code that admits at the
    /// door). Without keys a confirmation names the seats only.
    #[must_use]
    pub fn ticket_keys(mut self, keys: TicketKeys) -> Self {
        self.ticket_keys = Some(keys);
        self
    }

    /// The clock claims are dated with.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Its configuration.
    #[must_use]
    pub fn config(mut self, config: NotifierConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs the notifier in a background task.
    #[must_use]
    pub fn spawn(self) -> NotifierHandle {
        let (stop, stop_rx) = watch::channel(false);
        let status = watch::Sender::new(FollowStatus::default());
        let tally = watch::Sender::new(NotifierStats::default());
        let (status_rx, tally_rx) = (status.subscribe(), tally.subscribe());
        let name = self.config.name.clone();
        let task = tokio::spawn(async move { self.run_reporting(stop_rx, &status, &tally).await });
        NotifierHandle { name, stop, status: status_rx, stats: tally_rx, task }
    }

    /// Runs until `stop` turns true (or its sender is dropped).
    ///
    /// # Errors
    /// [`NotifierRunError::Follow`] when it was retrying a failure when stopped, its retry
    /// policy gave up, or a bad event halted it.
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<NotifierStats, NotifierRunError> {
        self.run_reporting(
            stop,
            &watch::Sender::new(FollowStatus::default()),
            &watch::Sender::new(NotifierStats::default()),
        )
        .await
    }

    async fn run_reporting(
        self,
        stop: watch::Receiver<bool>,
        status: &watch::Sender<FollowStatus>,
        tally: &watch::Sender<NotifierStats>,
    ) -> Result<NotifierStats, NotifierRunError> {
        let owner = Uuid::new_v4();
        let ledger = Ledger::new(Arc::clone(&self.ledger), Arc::clone(&self.clock), owner, self.config.claim_lease);
        let mut consumer = Consumer {
            notifier: &self,
            composer: Composer::new(Arc::clone(&self.store), self.ticket_keys.clone()),
            ledger,
            status,
            stats: tally,
        };
        let config = FollowConfig {
            max_batch: self.config.max_batch.max(1),
            retry: self.config.retry,
            bad_events: self.config.bad_events,
        };
        let span = tracing::info_span!("notifier", notifier = %self.config.name, %owner);
        let outcome = follow(&*self.store, &mut consumer, &config, stop, status).instrument(span).await;
        outcome.map(|_| tally.borrow().clone()).map_err(NotifierRunError::Follow)
    }
}

/// A [`Notifier`] running in a background task.
#[derive(Debug)]
pub struct NotifierHandle {
    name: String,
    stop: watch::Sender<bool>,
    status: watch::Receiver<FollowStatus>,
    stats: watch::Receiver<NotifierStats>,
    task: JoinHandle<Result<NotifierStats, NotifierRunError>>,
}

impl NotifierHandle {
    /// Its checkpoint name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its log following is doing: position, retries, the failure it is retrying.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<FollowStatus> {
        self.status.clone()
    }

    /// What it delivered, skipped and refused, updated after every notification and batch.
    #[must_use]
    pub fn stats(&self) -> watch::Receiver<NotifierStats> {
        self.stats.clone()
    }

    /// Stops it after (or instead of) its current notification and waits for it. What was not
    /// checkpointed comes again next time (and what was delivered is not sent twice).
    ///
    /// # Errors
    /// As [`Notifier::run`]; [`NotifierRunError::Task`] when its task panicked.
    pub async fn stop(self) -> Result<NotifierStats, NotifierRunError> {
        self.stop.send_replace(true);
        self.task.await.map_err(NotifierRunError::Task)?
    }

    /// Kills it at once, as a crash would.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// The notifier's side of [`follow`].
struct Consumer<'a> {
    notifier: &'a Notifier,
    composer: Composer,
    ledger: Ledger,
    status: &'a watch::Sender<FollowStatus>,
    stats: &'a watch::Sender<NotifierStats>,
}

#[async_trait]
impl LogConsumer for Consumer<'_> {
    type Error = NotifierError;

    fn name(&self) -> &str {
        &self.notifier.config.name
    }

    async fn start_position(&mut self) -> Result<u64, NotifierError> {
        let position = self.notifier.checkpoints.load_checkpoint(&self.notifier.config.name).await?;
        self.stats.send_modify(|s| s.position = position);
        Ok(position)
    }

    async fn handle(&mut self, batch: &[Envelope]) -> Result<(), NotifierError> {
        let Some(last) = batch.last().map(|e| e.global_position) else { return Ok(()) };
        let span = tracing::debug_span!("notify_batch", count = batch.len(), last);
        async {
            for envelope in batch {
                for planned in self.composer.plan(envelope).await? {
                    self.notify(envelope, planned).await?;
                }
            }
            self.checkpoint(last).await
        }
        .instrument(span)
        .await
    }

    fn bad_event(&self, error: &NotifierError) -> Option<u64> {
        error.bad_event_position()
    }

    async fn skip(&mut self, position: u64) -> Result<(), NotifierError> {
        self.checkpoint(position).await
    }
}

impl Consumer<'_> {
    async fn checkpoint(&mut self, position: u64) -> Result<(), NotifierError> {
        self.notifier.checkpoints.save_checkpoint(&self.notifier.config.name, position).await?;
        self.stats.send_modify(|s| s.position = position);
        Ok(())
    }

    /// Delivers `planned` unless the ledger has it done, or reports its refusal.
    async fn notify(&mut self, cause: &Envelope, planned: Planned) -> Result<(), NotifierError> {
        let Planned { mark, make } = planned;
        let notification_id = mark.id;
        let Some(email) = self
            .notifier
            .directory
            .email(mark.customer_id)
            .await
            .map_err(|source| NotifierError::Directory { notification_id, source })?
        else {
            self.refused(NotifierError::NoAddress { notification_id, customer_id: mark.customer_id });
            return Ok(());
        };
        let Some(version) = self.claim(cause, mark).await? else {
            self.stats.send_modify(|s| s.duplicates += 1);
            return Ok(());
        };
        let notification = make(Recipient { customer_id: mark.customer_id, email });
        match self.notifier.sink.deliver(&notification).await {
            Ok(()) => {
                self.ledger.finish(mark, cause, version, None).await?;
                tracing::debug!(%notification_id, kind = mark.kind.as_str(), "notification delivered");
                self.stats.send_modify(|s| s.delivered += 1);
                Ok(())
            }
            Err(source) if source.is_refusal() => {
                let refusal = NotifierError::Delivery { notification_id, source_event: cause.event_id, source };
                self.ledger.finish(mark, cause, version, Some(report(&refusal))).await?;
                self.refused(refusal);
                Ok(())
            }
            // Our claim stays: the retry of this batch finds it ours and sends again.
            Err(source) => Err(NotifierError::Delivery { notification_id, source_event: cause.event_id, source }),
        }
    }

    /// Claims `mark`, waiting while another notifier holds it: the claim's version, or `None`
    /// when it is done already.
    async fn claim(&self, cause: &Envelope, mark: Mark) -> Result<Option<u64>, NotifierError> {
        let mut pauses = self.notifier.config.retry.backoff();
        loop {
            match self.ledger.claim(mark, cause).await? {
                Claim::Ours { version } => return Ok(Some(version)),
                Claim::Done => return Ok(None),
                Claim::Elsewhere { owner } => {
                    let pause = pauses.next().unwrap_or(self.notifier.config.retry.max_delay);
                    tracing::debug!(notification_id = %mark.id, %owner, ?pause, "another notifier is sending it; waiting");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn refused(&self, refusal: NotifierError) {
        tracing::warn!(error = %refusal, "notification refused");
        let refusal = Arc::new(refusal);
        let shared: Arc<dyn std::error::Error + Send + Sync> = refusal.clone();
        self.status.send_modify(|s| s.last_error = Some(shared));
        self.stats.send_modify(|s| {
            s.refused += 1;
            s.last_refusal = Some(refusal);
        });
    }
}

/// An error with its chain of causes, for the ledger's record of a refusal.
fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
