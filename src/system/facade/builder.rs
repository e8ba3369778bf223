//! [`TicketingSystemBuilder`]: assembles the engine, the saga's follower, the expiry sweeper, the
//! read models, (with a bus) the outbox relay and (with a sink) the notifier.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::api::{Inner, TicketingSystem, sweep_expired};
use crate::aggregates::{ReservationEnv, TicketingEnv};
use crate::domain::TicketKeys;
use crate::event_bus::{EventBus, OutboxRelay, RelayConfig, TopicRouter};
use crate::event_store::{
    BadEventPolicy, CheckpointStore, EventStore, EventStoreError, FanOutEventStore, MemoryCheckpointStore,
    MemoryEventStore,
};
use crate::framework::{Clock, SystemClock};
use crate::notify::{CustomerDirectory, NotificationSink, Notifier, NotifierConfig, NotifierHandle};
use crate::system::commands::{CommandRouter, EngineConfig};
use crate::system::expiry::ExpiryIndex;
use crate::system::follower::{Follower, Shared};
use crate::system::open_payments::OpenPayments;
use crate::system::read_models::ReadModels;
use crate::system::reconcile::{ReconcileSchedule, reconcile_on_schedule};
use crate::system::reservation_watch::ReservationWatch;
use crate::system::saga::{Saga, SagaParts};
use crate::system::vault::TokenVault;
use crate::system::{PaymentGateway, ReadModelStorage, SimulatedGateway, SystemError};

/// Recent events kept in memory for the system's own log followers (see [`FanOutEventStore`]).
const SHARED_TAIL: usize = 65_536;

/// The gateway of a system built without one, said loudly: it approves every charge and moves
/// no money.
fn demo_gateway() -> Arc<dyn PaymentGateway> {
    tracing::warn!(
        "no payment gateway configured: using SimulatedGateway, a demo that approves every charge and moves no money"
    );
    Arc::new(SimulatedGateway::always_succeed())
}

/// Whether `store` can be used: reachable, and migrated.
async fn ready(store: &dyn EventStore) -> Result<(), SystemError> {
    match store.ready().await {
        Ok(()) => Ok(()),
        Err(error @ EventStoreError::NotMigrated { .. }) => Err(SystemError::NotMigrated { source: Arc::new(error) }),
        Err(error) => Err(error.into()),
    }
}

/// Why a notifier needs a ledger of its own next to an event bus.
const NOTIFIER_WITH_BUS: &str = "a notifier with an event bus needs a notification_ledger store of its own: the relay would publish its ledger streams";

/// What [`TicketingSystemBuilder::notifier`] and its companions were given.
#[derive(Default)]
struct NotifierSetup {
    parts: Option<(Arc<dyn NotificationSink>, Arc<dyn CustomerDirectory>)>,
    ledger: Option<Arc<dyn EventStore>>,
    config: NotifierConfig,
}

impl NotifierSetup {
    /// Refuses a notifier whose ledger the relay would publish.
    fn check(&self, with_bus: bool) -> Result<(), SystemError> {
        if self.parts.is_some() && with_bus && self.ledger.is_none() {
            return Err(SystemError::Config { reason: NOTIFIER_WITH_BUS.to_owned() });
        }
        Ok(())
    }

    /// Starts the notifier over the system's `store`, if one was asked for, checkpointed as
    /// `<system>-notifier`.
    fn start(
        self,
        system: &str,
        bad_events: BadEventPolicy,
        store: &Arc<dyn EventStore>,
        checkpoints: &Arc<dyn CheckpointStore>,
        clock: &Arc<dyn Clock>,
        ticket_keys: Option<&TicketKeys>,
    ) -> Option<NotifierHandle> {
        let (sink, directory) = self.parts?;
        let config = NotifierConfig { name: format!("{system}-notifier"), bad_events, ..self.config };
        let ledger = self.ledger.unwrap_or_else(|| Arc::clone(store));
        let mut notifier = Notifier::new(Arc::clone(store), Arc::clone(checkpoints), sink, directory);
        if let Some(keys) = ticket_keys {
            notifier = notifier.ticket_keys(keys.clone());
        }
        Some(notifier.ledger(ledger).clock(Arc::clone(clock)).config(config).spawn())
    }
}

/// Assembles a [`TicketingSystem`]; every part has an in-memory default.
pub struct TicketingSystemBuilder {
    event_store: Option<Arc<dyn EventStore>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    clock: Arc<dyn Clock>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    reconcile: ReconcileSchedule,
    hold_duration: Duration,
    reply_timeout: Duration,
    engine: EngineConfig,
    checkpoint_name: String,
    event_bus: Option<(Arc<dyn EventBus>, TopicRouter)>,
    read_models: ReadModelStorage,
    bad_events: BadEventPolicy,
    ticket_keys: Option<TicketKeys>,
    notifier: NotifierSetup,
    /// The store [`TicketingSystem::builder_from_config`] connected: the system owns it and
    /// closes its pool at [`TicketingSystem::shutdown`].
    #[cfg(feature = "postgres")]
    owned_store: Option<crate::event_store::PostgresEventStore>,
}

impl Default for TicketingSystemBuilder {
    fn default() -> Self {
        Self {
            event_store: None,
            checkpoints: None,
            clock: Arc::new(SystemClock),
            gateway: None,
            reconcile: ReconcileSchedule::default(),
            hold_duration: Duration::from_secs(5 * 60),
            reply_timeout: Duration::from_secs(30),
            engine: EngineConfig::default(),
            checkpoint_name: "boxoffice-saga".to_owned(),
            event_bus: None,
            read_models: ReadModelStorage::Memory,
            bad_events: BadEventPolicy::default(),
            ticket_keys: None,
            notifier: NotifierSetup::default(),
            #[cfg(feature = "postgres")]
            owned_store: None,
        }
    }
}

impl TicketingSystemBuilder {
    /// The master secret ticket codes are signed from (see [`TicketKeys`]). Without it tickets
    /// are still issued and refunded, but their codes, the scanner kit and check-in are refused
    /// with [`SystemError::NoTicketKeys`](crate::system::SystemError::NoTicketKeys).
    /// [`TicketingSystem::builder_from_config`] sets it from `BOXOFFICE_TICKET_KEY`.
    #[must_use]
    pub fn ticket_keys(mut self, keys: TicketKeys) -> Self {
        self.ticket_keys = Some(keys);
        self
    }

    /// The event store (default: a fresh [`MemoryEventStore`]).
    #[must_use]
    pub fn event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.event_store = Some(store);
        self
    }

    /// Where the saga keeps its checkpoint (default: in memory).
    #[must_use]
    pub fn checkpoints(mut self, checkpoints: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Hands the system `store`, which it created, to close at shutdown.
    #[cfg(feature = "postgres")]
    pub(super) fn owning(mut self, store: crate::event_store::PostgresEventStore) -> Self {
        self.owned_store = Some(store);
        self
    }

    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The payment gateway. Without one the system runs on a [`SimulatedGateway`] that approves
    /// every charge and **moves no money** (a demo), and says so in a warning when it is built.
    #[must_use]
    pub fn payment_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// How often payment reconciliation runs (default: every 30 s, and once at start-up) and
    /// how old an unanswered charge or refund must be before it asks the provider about it
    /// (default: 60 s, well above any adapter's own call timeout, so a call still under way in
    /// another process is left alone). See [`TicketingSystem::reconcile_payments`].
    #[must_use]
    pub fn payment_reconciliation(mut self, every: Duration, grace: Duration) -> Self {
        self.reconcile = ReconcileSchedule { every, grace };
        self
    }

    /// How long seats stay held awaiting payment (default: 5 minutes).
    #[must_use]
    pub fn hold_duration(mut self, hold: Duration) -> Self {
        self.hold_duration = hold;
        self
    }

    /// How long `reserve`, `pay`, `settled` and `shutdown` wait for the saga (default: 30 s).
    #[must_use]
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Command engine tuning (batch size, retries, snapshots).
    #[must_use]
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The name of the saga's checkpoint; processes sharing a database may share it.
    #[must_use]
    pub fn checkpoint_name(mut self, name: impl Into<String>) -> Self {
        self.checkpoint_name = name.into();
        self
    }

    /// Publishes every committed event to `bus` (topics named by `topics`) through an
    /// [`OutboxRelay`] that runs with the system, checkpointed as `<checkpoint name>-relay` in the
    /// system's checkpoint store (default: no bus).
    #[must_use]
    pub fn event_bus(mut self, bus: Arc<dyn EventBus>, topics: TopicRouter) -> Self {
        self.event_bus = Some((bus, topics));
        self
    }

    /// Where the six read models live (default: [`ReadModelStorage::Memory`]).
    #[must_use]
    pub fn read_models(mut self, storage: ReadModelStorage) -> Self {
        self.read_models = storage;
        self
    }

    /// What every background consumer (the saga's follower, each read model, the relay) does
    /// with a stored event it can never read or apply: a row that cannot be decoded, a payload of
    /// the wrong shape, a schema version newer than this release reads. Default
    /// [`BadEventPolicy::Quarantine`]: it is reported (an `error` trace, the
    /// `boxoffice_quarantined_events_total` counter, [`ConsumerHealth::quarantined`](crate::system::ConsumerHealth::quarantined))
    /// and the consumer reads on. [`BadEventPolicy::Halt`] stops that consumer at it instead,
    /// loudly: [`TicketingSystem::health`] shows it failing, and its queries and waits fail
    /// naming it.
    #[must_use]
    pub fn bad_events(mut self, policy: BadEventPolicy) -> Self {
        self.bad_events = policy;
        self
    }

    /// Runs a [`Notifier`] with the system: purchase confirmations, refunds and cancelled events
    /// go to `sink`, addressed through `directory`, at least once and deduplicated (see
    /// [`notify`](crate::notify)). It is checkpointed as `<checkpoint name>-notifier` in the
    /// system's checkpoint store, follows the [`bad_events`](Self::bad_events) policy, shows in
    /// [`TicketingSystem::health`] under that name and stops at [`TicketingSystem::shutdown`]
    /// (what it had not sent then goes out from the next process). Default: no notifier.
    #[must_use]
    pub fn notifier(mut self, sink: Arc<dyn NotificationSink>, directory: Arc<dyn CustomerDirectory>) -> Self {
        self.notifier.parts = Some((sink, directory));
        self
    }

    /// Where the notifier keeps its ledger of claimed and delivered notifications (the
    /// `notified-<id>` streams). Default: the system's event store, whose log then holds them
    /// (no ticketing consumer reads them). Required with an [`event_bus`](Self::event_bus), so
    /// that the relay does not publish them: give it a store of its own (on `PostgreSQL`, one in
    /// another schema). Systems sharing a notifier checkpoint must share the ledger.
    #[must_use]
    pub fn notification_ledger(mut self, store: Arc<dyn EventStore>) -> Self {
        self.notifier.ledger = Some(store);
        self
    }

    /// Notifier tuning (batch size, retries, claim lease). Its `name` and `bad_events` are set
    /// by the builder (see [`notifier`](Self::notifier)).
    #[must_use]
    pub fn notifier_config(mut self, config: NotifierConfig) -> Self {
        self.notifier.config = config;
        self
    }

    /// Starts the system: the log follower (saga, waiters, deadlines), the expiry sweeper, the
    /// six read models, the relay and the notifier. Each resumes from its checkpoint. Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`SystemError::Config`] for a notifier with an event bus and no
    /// [`notification_ledger`](Self::notification_ledger); [`SystemError::NotMigrated`] when the event store's schema was never migrated,
    /// [`SystemError::Storage`] when the store cannot be reached, [`SystemError::Projection`]
    /// when a read model cannot start.
    pub async fn build(self) -> Result<TicketingSystem, SystemError> {
        self.notifier.check(self.event_bus.is_some())?;
        let store = self.event_store.unwrap_or_else(|| Arc::new(MemoryEventStore::new()));
        ready(&*store).await?;
        // The follower, the read models and the relay all follow the log: one subscription to
        // the store serves them all.
        let fan_out = FanOutEventStore::new(store, SHARED_TAIL);
        let store: Arc<dyn EventStore> = Arc::new(fan_out.clone());
        let checkpoints = self.checkpoints.unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new()));
        let clock = self.clock;
        let env = TicketingEnv {
            reservation: ReservationEnv::new(Arc::clone(&clock)).with_hold_duration(self.hold_duration),
            ..TicketingEnv::new(Arc::clone(&clock))
        };
        // This process among the others on the same log: it reacts to what it appends.
        let node = Uuid::new_v4();
        let router = CommandRouter::new(&store, &env, self.engine, node);
        let (stop, stop_rx) = watch::channel(false);
        let gateway = self.gateway.unwrap_or_else(demo_gateway);
        let open = OpenPayments::default();
        let vault = TokenVault::default();
        let parts = SagaParts {
            gateway,
            vault: vault.clone(),
            open: open.clone(),
            retry: self.engine.retry,
            stop: stop_rx.clone(),
        };
        let saga = Saga::new(router.clone(), parts);
        let start_head = store.last_committed_position().await?;
        let watch = ReservationWatch::default();
        let expiry = ExpiryIndex::new(Arc::clone(&clock));
        let (frontier, position) = watch::channel(0);
        let read_models = ReadModels::start(self.read_models, &store, self.bad_events).await?;
        let relay = self.event_bus.map(|(bus, topics)| {
            let config = RelayConfig {
                name: format!("{}-relay", self.checkpoint_name),
                bad_events: self.bad_events,
                ..RelayConfig::default()
            };
            OutboxRelay::new(Arc::clone(&store), bus, Arc::clone(&checkpoints), topics, config).spawn()
        });
        let keys = self.ticket_keys.as_ref();
        let notifier = self.notifier.start(&self.checkpoint_name, self.bad_events, &store, &checkpoints, &clock, keys);
        let follower_name = self.checkpoint_name.clone();
        let saga_status = watch::Sender::new(crate::event_store::FollowStatus::default());
        let follower = Follower {
            store: Arc::clone(&store),
            checkpoints,
            name: self.checkpoint_name.clone(),
            saga: saga.clone(),
            expiry: expiry.clone(),
            open: open.clone(),
            shared: Shared::new(frontier, watch.clone(), node),
            status: saga_status.clone(),
            stop: stop_rx.clone(),
            bad_events: self.bad_events,
        };
        let at_once = follower.at_once();
        let tasks = vec![
            tokio::spawn(follower.run()),
            tokio::spawn(sweep_expired(expiry.clone(), router.clone(), self.engine.retry, stop_rx.clone())),
            tokio::spawn(reconcile_on_schedule(
                saga.clone(),
                Arc::clone(&clock),
                self.reconcile,
                position.clone(),
                start_head,
                stop_rx,
            )),
        ];
        Ok(TicketingSystem::assemble(Inner {
            store,
            fan_out,
            #[cfg(feature = "postgres")]
            owned_store: self.owned_store,
            router,
            at_once,
            saga,
            vault,
            open,
            saga_name: follower_name,
            node,
            saga_status: saga_status.subscribe(),
            reconcile_grace: self.reconcile.grace,
            watch,
            expiry,
            clock,
            position,
            stop,
            tasks: Mutex::new(tasks),
            read_models: Mutex::new(Some(read_models)),
            relay: Mutex::new(relay),
            notifier: Mutex::new(notifier),
            reply_timeout: self.reply_timeout,
            ticket_keys: self.ticket_keys,
        }))
    }
}
