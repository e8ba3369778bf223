//! [`TicketingSystem`]: the whole engine behind one async API.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::read_models::{ReadModelQueries, ReadModels};
use super::{
    CommandContext, CommandError, CommandRouter, ExpiryIndex, LogFollower, ReadModelStorage, RepositoryConfig,
    ReservationWatch, Saga, SystemConfig, SystemError,
};
use crate::aggregates::{
    CompensationReason, EventAction, EventEnv, InventoryEnv, PaymentAction, PaymentEnv, PaymentGateway,
    ReservationAction, ReservationEnv, ReservationError, ReservationStatus, Section, SimulatedGateway, TicketingAction,
    TicketingEnv, event_stream, payment_stream, reservation_stream,
};
use crate::domain::{CustomerId, EventId, Money, PaymentId, PricingTier, ReservationId, SeatId, SectionName, Venue};
use crate::event_bus::{EventBus, OutboxRelay, RelayConfig, RelayHandle, TopicRouter};
use crate::event_store::{CheckpointStore, EventStore, FanOutEventStore, MemoryCheckpointStore, MemoryEventStore};
use crate::framework::{Clock, PersistedObserver, SystemClock};
use crate::projections::{AvailableSeatsQueries, CustomerHistoryQueries, SalesAnalyticsQueries};

/// Recent events kept in memory for the system's own log followers (see [`FanOutEventStore`]).
const SHARED_TAIL: usize = 65_536;

/// What [`TicketingSystem::create_event`] needs.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// Display name.
    pub name: String,
    /// Where it happens.
    pub venue: Venue,
    /// When it happens.
    pub date: DateTime<Utc>,
    /// The seating plan.
    pub sections: Vec<Section>,
    /// Prices per section.
    pub pricing_tiers: Vec<PricingTier>,
}

impl EventSpec {
    /// The `CreateEvent` command that creates this event as `event_id`.
    #[must_use]
    pub fn into_command(self, event_id: EventId) -> EventAction {
        EventAction::CreateEvent {
            event_id,
            name: self.name,
            venue: self.venue,
            date: self.date,
            sections: self.sections,
            pricing_tiers: self.pricing_tiers,
        }
    }
}

/// A request for seats.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// The event.
    pub event_id: EventId,
    /// The section.
    pub section: SectionName,
    /// How many seats.
    pub quantity: u32,
    /// Who buys.
    pub customer_id: CustomerId,
    /// Makes retries safe: the same customer and key always address the same reservation, so a
    /// retried call returns the original outcome and never holds seats twice.
    pub idempotency_key: Option<String>,
}

/// Seats held for a customer until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeats {
    /// The reservation to pay or cancel.
    pub reservation_id: ReservationId,
    /// The seats held.
    pub seats: Vec<SeatId>,
    /// What paying costs: the tier price times the quantity.
    pub total: Money,
    /// When the hold runs out.
    pub expires_at: DateTime<Utc>,
}

/// A completed purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The payment that paid for it.
    pub payment_id: PaymentId,
    /// The seats sold.
    pub seats: Vec<SeatId>,
    /// What was paid.
    pub amount: Money,
}

/// Payment details handed to the gateway: an opaque token from the customer's payment provider
/// (never a card number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDetails {
    /// The provider's token.
    pub token: String,
}

/// Assembles a [`TicketingSystem`]; every part has an in-memory default.
pub struct TicketingSystemBuilder {
    event_store: Option<Arc<dyn EventStore>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    clock: Arc<dyn Clock>,
    gateway: Arc<dyn PaymentGateway>,
    hold_duration: Duration,
    reply_timeout: Duration,
    repository: RepositoryConfig,
    checkpoint_name: String,
    event_bus: Option<(Arc<dyn EventBus>, TopicRouter)>,
    read_models: ReadModelStorage,
}

impl Default for TicketingSystemBuilder {
    fn default() -> Self {
        Self {
            event_store: None,
            checkpoints: None,
            clock: Arc::new(SystemClock),
            gateway: Arc::new(SimulatedGateway::always_succeed()),
            hold_duration: Duration::from_secs(5 * 60),
            reply_timeout: Duration::from_secs(30),
            repository: RepositoryConfig::default(),
            checkpoint_name: "boxoffice-saga".to_owned(),
            event_bus: None,
            read_models: ReadModelStorage::Memory,
        }
    }
}

impl TicketingSystemBuilder {
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

    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The payment gateway (default: a [`SimulatedGateway`] that approves everything).
    #[must_use]
    pub fn payment_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = gateway;
        self
    }

    /// How long seats stay held awaiting payment (default: 5 minutes).
    #[must_use]
    pub fn hold_duration(mut self, hold: Duration) -> Self {
        self.hold_duration = hold;
        self
    }

    /// How long `reserve` and `pay` wait for the saga (default: 30 s).
    #[must_use]
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Command handling tuning (batch size, retries).
    #[must_use]
    pub fn repository_config(mut self, config: RepositoryConfig) -> Self {
        self.repository = config;
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

    /// Where the three read models live (default: [`ReadModelStorage::Memory`]).
    #[must_use]
    pub fn read_models(mut self, storage: ReadModelStorage) -> Self {
        self.read_models = storage;
        self
    }

    /// Starts the system: the log follower (saga, waiters, deadlines), the expiry sweeper and
    /// the three read models. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`SystemError::Projection`] when a read model cannot start.
    pub async fn build(self) -> Result<TicketingSystem, SystemError> {
        let store = self.event_store.unwrap_or_else(|| Arc::new(MemoryEventStore::new()));
        // The follower, the read models and the relay all follow the log: one subscription to
        // the store serves them all.
        let store: Arc<dyn EventStore> = Arc::new(FanOutEventStore::new(store, SHARED_TAIL));
        let checkpoints = self.checkpoints.unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new()));
        let clock = self.clock;
        let env = TicketingEnv {
            event: EventEnv::new(Arc::clone(&clock)),
            inventory: InventoryEnv::new(Arc::clone(&clock)),
            reservation: ReservationEnv::new(Arc::clone(&clock)).with_hold_duration(self.hold_duration),
            payment: PaymentEnv::new(Arc::clone(&clock), self.gateway),
        };
        let watch = ReservationWatch::default();
        // The fast path: what this process appends wakes its waiters and moves the saga on at
        // once; the log follower below is the path for other processes' events and for recovery.
        let fast_path: Arc<RwLock<Option<Saga>>> = Arc::default();
        let observer: PersistedObserver<TicketingAction> = {
            let (fast_path, watch) = (Arc::clone(&fast_path), watch.clone());
            Arc::new(move |events: &[TicketingAction]| {
                for event in events {
                    if let TicketingAction::Reservation(event) = event {
                        watch.observe(event);
                    }
                }
                if let Some(saga) = &*fast_path.read().unwrap_or_else(PoisonError::into_inner) {
                    saga.react_in_background(events);
                }
            })
        };
        let router = CommandRouter::new(&store, &env, &clock, self.repository, Some(&observer));
        let saga = Saga::new(router.clone());
        *fast_path.write().unwrap_or_else(PoisonError::into_inner) = Some(saga.clone());
        let expiry = ExpiryIndex::new(Arc::clone(&clock));
        let (position_tx, position) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        let read_models = ReadModels::start(self.read_models, &store).await?;
        let relay = self.event_bus.map(|(bus, topics)| {
            let config = RelayConfig { name: format!("{}-relay", self.checkpoint_name), ..RelayConfig::default() };
            OutboxRelay::new(Arc::clone(&store), bus, Arc::clone(&checkpoints), topics, config).spawn()
        });
        let follower = LogFollower {
            store: Arc::clone(&store),
            checkpoints,
            name: self.checkpoint_name,
            saga: Some(saga.clone()),
            watch: watch.clone(),
            expiry: expiry.clone(),
            position: position_tx,
        };
        let tasks = vec![
            tokio::spawn(follower.run(stop_rx.clone())),
            tokio::spawn(sweep_expired(expiry.clone(), router.clone(), stop_rx)),
        ];
        Ok(TicketingSystem {
            inner: Arc::new(Inner {
                store,
                router,
                saga,
                watch,
                expiry,
                clock,
                position,
                stop,
                fast_path,
                tasks: Mutex::new(tasks),
                read_models: Mutex::new(Some(read_models)),
                relay: Mutex::new(relay),
                reply_timeout: self.reply_timeout,
            }),
        })
    }
}

/// Connects the Kafka bus named by `KAFKA_BROKERS` (its other settings from the environment, see
/// [`KafkaConfig::from_env`](crate::event_bus::KafkaConfig::from_env)).
#[cfg(feature = "kafka")]
async fn with_kafka(builder: TicketingSystemBuilder, brokers: &str) -> Result<TicketingSystemBuilder, SystemError> {
    use crate::event_bus::{KafkaConfig, KafkaEventBus};
    let mut kafka = KafkaConfig::from_env().map_err(|error| SystemError::Config(error.to_string()))?;
    brokers.clone_into(&mut kafka.brokers);
    let topics = kafka.router();
    let bus = KafkaEventBus::connect(kafka)
        .await
        .map_err(|error| SystemError::Config(format!("cannot connect to KAFKA_BROKERS: {error}")))?;
    Ok(builder.event_bus(Arc::new(bus), topics))
}

/// Without the `kafka` feature a configured broker is an error, not silently ignored.
#[cfg(not(feature = "kafka"))]
#[allow(clippy::unused_async)] // same signature as the Kafka variant
async fn with_kafka(_: TicketingSystemBuilder, _: &str) -> Result<TicketingSystemBuilder, SystemError> {
    Err(SystemError::Config("KAFKA_BROKERS is set but boxoffice was built without the `kafka` feature".to_owned()))
}

/// Expires every hold whose deadline has passed, as soon as it passes on the injected clock.
async fn sweep_expired(expiry: ExpiryIndex, router: CommandRouter, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = expiry.next_due() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let mut failed = false;
        for reservation_id in expiry.due() {
            let context = CommandContext::new_request();
            let command = ReservationAction::ExpireReservation { reservation_id };
            match context.scope(router.reservation(command)).await {
                Ok(_) | Err(CommandError::Rejected(_)) => expiry.forget(reservation_id),
                Err(error) => {
                    tracing::warn!(%error, %reservation_id, "expiring a hold failed; will retry");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The ticketing engine: commands, the reservation saga, expiry and queries.
///
/// ```
/// use boxoffice::prelude::*;
/// use boxoffice::system::{EventSpec, PaymentDetails, ReserveRequest, TicketingSystem};
/// use boxoffice::aggregates::Section;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let system = TicketingSystem::builder().build().await?;
/// let eur = Currency::new("EUR")?;
/// let vip = SectionName::new("VIP")?;
/// let event = system
///     .create_event(EventSpec {
///         name: "Rust Live".into(),
///         venue: Venue::new(VenueId::new_v4(), "Hall 1")?,
///         date: chrono::Utc::now() + chrono::Duration::days(30),
///         sections: vec![Section { name: vip.clone(), capacity: Capacity::new(10)? }],
///         pricing_tiers: vec![PricingTier::new(TierKind::Regular, vip.clone(), Money::new(5_000, eur), None)?],
///     })
///     .await?;
/// system.publish_event(event).await?;
/// system.open_sales(event).await?;
///
/// let customer = CustomerId::new_v4();
/// let hold = system
///     .reserve(ReserveRequest { event_id: event, section: vip, quantity: 2, customer_id: customer, idempotency_key: None })
///     .await?;
/// let purchase = system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
/// assert_eq!(purchase.amount, Money::new(10_000, eur));
///
/// system.settled().await?;
/// let left = system.available_seats()?.get_availability(event, "VIP").await?.map(|a| a.available);
/// assert_eq!(left, Some(8));
/// system.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TicketingSystem {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EventStore>,
    router: CommandRouter,
    saga: Saga,
    watch: ReservationWatch,
    expiry: ExpiryIndex,
    clock: Arc<dyn Clock>,
    position: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    /// The saga the fast path drives; emptied at shutdown (it also breaks the reference cycle
    /// saga → repositories → observer → saga).
    fast_path: Arc<RwLock<Option<Saga>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    read_models: Mutex<Option<ReadModels>>,
    relay: Mutex<Option<RelayHandle>>,
    reply_timeout: Duration,
}

fn ended(status: ReservationStatus) -> Option<&'static str> {
    match status {
        ReservationStatus::Expired => Some("expired"),
        ReservationStatus::Cancelled => Some("cancelled"),
        ReservationStatus::Compensated => Some("compensated"),
        _ => None,
    }
}

impl TicketingSystem {
    /// A builder with in-memory defaults.
    #[must_use]
    pub fn builder() -> TicketingSystemBuilder {
        TicketingSystemBuilder::default()
    }

    fn queries(&self) -> Result<ReadModelQueries, SystemError> {
        let models = self.inner.read_models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        models.as_ref().map(ReadModels::queries).ok_or(SystemError::ShuttingDown)
    }

    /// Seat availability per section, kept up to date from the log, from whichever
    /// [`ReadModelStorage`] the system uses:
    /// `system.available_seats()?.get_availability(event, "VIP").await?`.
    ///
    /// # Errors
    /// [`SystemError::ShuttingDown`] after [`TicketingSystem::shutdown`].
    pub fn available_seats(&self) -> Result<Arc<dyn AvailableSeatsQueries>, SystemError> {
        Ok(self.queries()?.available_seats())
    }

    /// Revenue and sales per event.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn sales_analytics(&self) -> Result<Arc<dyn SalesAnalyticsQueries>, SystemError> {
        Ok(self.queries()?.sales_analytics())
    }

    /// Purchases per customer.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn customer_history(&self) -> Result<Arc<dyn CustomerHistoryQueries>, SystemError> {
        Ok(self.queries()?.customer_history())
    }

    /// Read-your-writes: waits until every read model has applied the log up to `position`
    /// (for example [`EventStore::head_position`] after a command), in memory or in `PostgreSQL`.
    ///
    /// # Errors
    /// [`SystemError::Projection`] on timeout, when a read model stopped or its database failed.
    pub async fn wait_for_read_models(&self, position: u64, timeout: Duration) -> Result<(), SystemError> {
        Ok(self.queries()?.wait_for(position, timeout).await?)
    }

    /// Starts a system configured from the environment (see [`SystemConfig::from_env`]).
    ///
    /// # Errors
    /// As [`TicketingSystem::builder_from_config`].
    pub async fn from_env() -> Result<Self, SystemError> {
        let config = SystemConfig::from_env()?;
        Self::builder_from_config(&config).await?.build().await
    }

    /// A builder whose event store, checkpoint store, read models and hold duration follow
    /// `config`: with `DATABASE_URL` set, a
    /// [`PostgresEventStore`](crate::event_store::PostgresEventStore) (schema migrated) serves as
    /// event store and checkpoint store and the read models live in its database
    /// ([`ReadModelStorage::Postgres`], so a restart resumes them instead of replaying the whole
    /// log); otherwise everything is in memory. Callers may still override the clock, the payment
    /// gateway or the read model storage before `build()`.
    ///
    /// # Errors
    /// [`SystemError::Config`] when `DATABASE_URL` is set but the `postgres` feature is off, or
    /// the database cannot be reached or migrated.
    #[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))]
    pub async fn builder_from_config(config: &SystemConfig) -> Result<TicketingSystemBuilder, SystemError> {
        let mut builder = Self::builder().hold_duration(config.hold_duration);
        if let Some(group) = &config.consumer_group {
            builder = builder.checkpoint_name(group.clone());
        }
        if let Some(brokers) = &config.kafka_brokers {
            builder = with_kafka(builder, brokers).await?;
        }
        let Some(url) = &config.database_url else { return Ok(builder) };
        #[cfg(feature = "postgres")]
        {
            use crate::event_store::{PostgresConfig, PostgresEventStore};
            let postgres =
                PostgresConfig { max_connections: config.database_max_connections, ..PostgresConfig::default() };
            let store = PostgresEventStore::connect(url, postgres)
                .await
                .map_err(|error| SystemError::Config(format!("cannot connect to DATABASE_URL: {error}")))?;
            store
                .migrate()
                .await
                .map_err(|error| SystemError::Config(format!("cannot migrate the schema: {error}")))?;
            let read_models = crate::projections::PostgresReadModels::new(store.pool().clone());
            let store = Arc::new(store);
            Ok(builder
                .event_store(Arc::clone(&store) as Arc<dyn EventStore>)
                .checkpoints(store)
                .read_models(ReadModelStorage::Postgres(read_models)))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (url, builder);
            Err(SystemError::Config(
                "DATABASE_URL is set but boxoffice was built without the `postgres` feature".to_owned(),
            ))
        }
    }

    /// The event store this system writes to.
    #[must_use]
    pub fn event_store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.inner.store)
    }

    /// Runs `command` with a fresh correlation id. What it appends reaches the saga's fast path
    /// through the repositories' observer, in the background.
    async fn command(&self, command: TicketingAction) -> Result<(), SystemError> {
        CommandContext::new_request().scope(self.inner.router.execute(command)).await?;
        Ok(())
    }

    /// Like [`command`](Self::command), but returns only once the saga's follow-ups of what it
    /// appended are done, for calls that promise them (the fast path's background attempt
    /// then finds them done and changes nothing).
    async fn command_and_follow_ups(&self, command: TicketingAction) -> Result<(), SystemError> {
        let context = CommandContext::new_request();
        let appended = context.scope(self.inner.router.execute(command)).await?;
        for event in &appended {
            self.inner.saga.react(event, context).await;
        }
        Ok(())
    }

    /// Creates an event in Draft with its sections' inventories.
    ///
    /// # Errors
    /// [`SystemError::Event`] for invalid details (blank name, no sections, bad tiers, past date).
    pub async fn create_event(&self, spec: EventSpec) -> Result<EventId, SystemError> {
        let event_id = EventId::new_v4();
        self.command_and_follow_ups(TicketingAction::Event(spec.into_command(event_id))).await?;
        Ok(event_id)
    }

    /// Draft → Published.
    ///
    /// # Errors
    /// [`SystemError::Event`] for an unknown event or an illegal transition.
    pub async fn publish_event(&self, event_id: EventId) -> Result<(), SystemError> {
        self.command(TicketingAction::Event(EventAction::PublishEvent { event_id })).await
    }

    /// Published → `SalesOpen`.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`].
    pub async fn open_sales(&self, event_id: EventId) -> Result<(), SystemError> {
        self.command(TicketingAction::Event(EventAction::OpenSales { event_id })).await
    }

    /// `SalesOpen` → `SalesClosed`.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`].
    pub async fn close_sales(&self, event_id: EventId) -> Result<(), SystemError> {
        self.command(TicketingAction::Event(EventAction::CloseSales { event_id })).await
    }

    /// Cancels the event: every live hold is cancelled (its seats released) and every completed
    /// purchase is refunded in full.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`].
    pub async fn cancel_event(&self, event_id: EventId, reason: impl Into<String>) -> Result<(), SystemError> {
        let cancel = EventAction::CancelEvent { event_id, reason: reason.into() };
        self.command_and_follow_ups(TicketingAction::Event(cancel)).await
    }

    /// Holds `quantity` seats for the customer and returns them with the hold deadline.
    ///
    /// # Errors
    /// [`SystemError::InsufficientInventory`] when the section cannot fill the request,
    /// [`SystemError::Reservation`] when the event is not on sale or the request is invalid,
    /// [`SystemError::Timeout`] when the saga did not answer in time.
    pub async fn reserve(&self, request: ReserveRequest) -> Result<HeldSeats, SystemError> {
        let now = self.inner.clock.now();
        let section = request.section.clone();
        let event_id = request.event_id;
        let price = self
            .inner
            .router
            .events
            .state(&event_stream(event_id)?, move |event| event.is_on_sale().then(|| event.price_at(&section, now)))
            .await
            .map_err(lift_event_error)?;
        let unit_price = match price {
            Some(price) => price?,
            None => return Err(ReservationError::NotOnSale { event_id, section: request.section }.into()),
        };
        let reservation_id = match &request.idempotency_key {
            Some(key) => ReservationId::for_idempotency_key(request.customer_id, key),
            None => ReservationId::new_v4(),
        };
        let mut waiter = self.inner.watch.watch(reservation_id);
        let initiate = ReservationAction::InitiateReservation {
            reservation_id,
            event_id,
            section: request.section,
            quantity: request.quantity,
            customer_id: request.customer_id,
            unit_price,
        };
        self.command(TicketingAction::Reservation(initiate)).await?;
        let timeout = self.inner.reply_timeout;
        let settled = tokio::time::timeout(
            timeout,
            waiter.until(|event| matches!(event, ReservationAction::SeatsAllocated { .. }) || event.is_ending()),
        );
        // A retried call finds the reservation already past the step it waits for.
        let reservation = self.reservation(reservation_id).await?;
        if reservation.status == ReservationStatus::Initiated {
            if settled.await.is_err() {
                return Err(SystemError::Timeout { reservation_id, waited_ms: timeout.as_millis() });
            }
        } else {
            drop(settled);
        }
        drop(waiter);
        let reservation =
            self.reservation_reaching(reservation_id, |status| status != ReservationStatus::Initiated).await?;
        match reservation.status {
            ReservationStatus::Compensated => match reservation.compensation {
                Some(CompensationReason::InsufficientInventory { requested, available }) => {
                    Err(SystemError::InsufficientInventory { reservation_id, requested, available })
                }
                _ => Err(SystemError::ReservationEnded { reservation_id, how: "compensated" }),
            },
            status => match ended(status) {
                Some(how) => Err(SystemError::ReservationEnded { reservation_id, how }),
                None => Ok(HeldSeats {
                    reservation_id,
                    seats: reservation.seats,
                    total: reservation.total,
                    expires_at: reservation.expires_at,
                }),
            },
        }
    }

    /// Pays for a hold and waits for the outcome.
    ///
    /// # Errors
    /// [`SystemError::PaymentDeclined`] (the seats are released), [`SystemError::ReservationEnded`]
    /// when the hold expired or was cancelled first, [`SystemError::Timeout`].
    pub async fn pay(&self, reservation_id: ReservationId, details: PaymentDetails) -> Result<Purchase, SystemError> {
        let mut waiter = self.inner.watch.watch(reservation_id);
        let request = ReservationAction::RequestPayment { reservation_id, payment_token: details.token };
        if let Err(error) = self.command(TicketingAction::Reservation(request)).await {
            // Paying for a hold that already ended is not bad input: say how it ended.
            return match self.reservation(reservation_id).await.map(|r| ended(r.status)) {
                Ok(Some(how)) => Err(SystemError::ReservationEnded { reservation_id, how }),
                _ => Err(error),
            };
        }
        let reservation = self.reservation(reservation_id).await?;
        if !reservation.status.is_terminal() {
            let timeout = self.inner.reply_timeout;
            let done = tokio::time::timeout(timeout, waiter.until(ReservationAction::is_ending)).await;
            if done.is_err() {
                return Err(SystemError::Timeout { reservation_id, waited_ms: timeout.as_millis() });
            }
        }
        drop(waiter);
        let reservation = self.reservation_reaching(reservation_id, ReservationStatus::is_terminal).await?;
        match reservation.status {
            ReservationStatus::Completed => Ok(Purchase {
                reservation_id,
                payment_id: reservation.payment_id.unwrap_or_else(|| PaymentId::for_reservation(reservation_id)),
                seats: reservation.seats,
                amount: reservation.total,
            }),
            ReservationStatus::Compensated => match reservation.compensation {
                Some(CompensationReason::PaymentFailed { reason }) => {
                    Err(SystemError::PaymentDeclined { reservation_id, reason })
                }
                _ => Err(SystemError::ReservationEnded { reservation_id, how: "compensated" }),
            },
            status => Err(SystemError::ReservationEnded { reservation_id, how: ended(status).unwrap_or("pending") }),
        }
    }

    /// The customer gives the hold up; its seats are released.
    ///
    /// # Errors
    /// [`SystemError::Reservation`] for an unknown or already finished reservation.
    pub async fn cancel_reservation(&self, reservation_id: ReservationId) -> Result<(), SystemError> {
        let cancel = ReservationAction::CancelReservation { reservation_id };
        self.command(TicketingAction::Reservation(cancel)).await
    }

    /// Refunds whatever is left of a completed purchase's payment and returns the amount.
    ///
    /// # Errors
    /// [`SystemError::Payment`] when there is nothing to refund.
    pub async fn refund(&self, reservation_id: ReservationId, reason: impl Into<String>) -> Result<Money, SystemError> {
        let payment_id = PaymentId::for_reservation(reservation_id);
        let refundable = self
            .inner
            .router
            .payments
            .state(&payment_stream(payment_id)?, |p| p.payment.as_ref().map(|p| p.amount.checked_sub(p.refunded)))
            .await
            .map_err(lift_payment_error)?
            .ok_or(SystemError::UnknownReservation { reservation_id })??;
        let refund = PaymentAction::RefundPayment { payment_id, amount: refundable, reason: reason.into() };
        self.command(TicketingAction::Payment(refund)).await?;
        Ok(refundable)
    }

    /// The reservation as this process last saw it.
    ///
    /// # Errors
    /// [`SystemError::UnknownReservation`].
    pub async fn reservation(
        &self,
        reservation_id: ReservationId,
    ) -> Result<crate::aggregates::Reservation, SystemError> {
        self.load_reservation(reservation_id, false).await
    }

    /// The reservation once its status satisfies `reached`: the cached state when it already
    /// does (the saga step ran in this process, the common case), else reloaded from the store,
    /// because the step just awaited may have been written by another process. Statuses only
    /// move forward, so a cached state that reached the step is as good as a reloaded one, and
    /// skipping the reload saves re-reading and re-folding the whole stream on every call.
    async fn reservation_reaching(
        &self,
        reservation_id: ReservationId,
        reached: impl Fn(ReservationStatus) -> bool,
    ) -> Result<crate::aggregates::Reservation, SystemError> {
        let cached = self.reservation(reservation_id).await?;
        if reached(cached.status) {
            return Ok(cached);
        }
        self.reservation_after_saga(reservation_id).await
    }

    /// Like [`TicketingSystem::reservation`], but reloaded from the store first: the step just
    /// awaited may have been written by another process.
    async fn reservation_after_saga(
        &self,
        reservation_id: ReservationId,
    ) -> Result<crate::aggregates::Reservation, SystemError> {
        self.load_reservation(reservation_id, true).await
    }

    async fn load_reservation(
        &self,
        reservation_id: ReservationId,
        fresh: bool,
    ) -> Result<crate::aggregates::Reservation, SystemError> {
        let stream = reservation_stream(reservation_id)?;
        let reservations = &self.inner.router.reservations;
        let read = |s: &crate::aggregates::ReservationState| s.reservation.clone();
        let found =
            if fresh { reservations.fresh_state(&stream, read).await } else { reservations.state(&stream, read).await };
        found.map_err(lift_reservation_error)?.ok_or(SystemError::UnknownReservation { reservation_id })
    }

    /// Waits until everything committed so far has been handled by the saga, every effect has
    /// finished, no hold is overdue and the read models have caught up. Tests call it after
    /// moving a [`FixedClock`](crate::framework::FixedClock) instead of sleeping.
    ///
    /// "Committed so far" is [`EventStore::last_committed_position`], not the readable head: in
    /// `PostgreSQL` a commit can stay unreadable for a moment while an older transaction is open,
    /// and waiting only for the readable head would return before the saga or the read models
    /// have seen it.
    ///
    /// # Errors
    /// [`SystemError::Storage`] when the store cannot be read, [`SystemError::Projection`] when a
    /// read model does not catch up within the reply timeout.
    pub async fn settled(&self) -> Result<(), SystemError> {
        let mut position = self.inner.position.clone();
        loop {
            self.inner.router.settled().await;
            let last = self.inner.store.last_committed_position().await?;
            if position.wait_for(|handled| *handled >= last).await.is_err() {
                return Err(SystemError::ShuttingDown);
            }
            self.inner.router.settled().await;
            if self.inner.expiry.due().is_empty() && self.inner.store.last_committed_position().await? == last {
                return self.wait_for_read_models(last, self.inner.reply_timeout).await;
            }
            tokio::task::yield_now().await;
        }
    }

    /// With an event bus: the global position up to which every event has been published (the
    /// relay's checkpoint), to wait on with `wait_for`.
    #[must_use]
    pub fn published_position(&self) -> Option<watch::Receiver<u64>> {
        self.inner.relay.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(RelayHandle::progress)
    }

    /// Stops the follower, the sweeper, the read models and the relay after the work in hand;
    /// commands already accepted have been appended.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        self.inner.fast_path.write().unwrap_or_else(PoisonError::into_inner).take();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
        let relay = self.inner.relay.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(relay) = relay
            && let Err(error) = relay.stop().await
        {
            tracing::warn!(%error, "the outbox relay stopped with an error");
        }
        let models = self.inner.read_models.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(models) = models {
            models.stop().await;
        }
    }
}

fn lift_event_error(error: CommandError<EventAction>) -> SystemError {
    error.map_action(TicketingAction::Event).into()
}

fn lift_payment_error(error: CommandError<PaymentAction>) -> SystemError {
    error.map_action(TicketingAction::Payment).into()
}

fn lift_reservation_error(error: CommandError<ReservationAction>) -> SystemError {
    error.map_action(TicketingAction::Reservation).into()
}
