//! [`TicketingSystem`]: the whole engine behind one async API.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    EventSpec, HeldSeats, OrderLineRequest, OrderRequest, PaymentDetails, Receipt, RefundRequest, ReserveRequest,
    TicketingSystemBuilder,
};
use crate::aggregates::{
    AllowanceError, CompensationReason, EventAction, OrderLine, PaymentAction, PaymentRecord, PaymentStatus,
    RefundRecord, Reservation, ReservationAction, ReservationError, ReservationStatus, SalesPolicy, TicketingAction,
    event_stream, payment_stream, reservation_stream,
};
use crate::domain::{EventId, PaymentId, RefundId, ReservationId, SectionName, ensure_storable_text};
use crate::event_bus::RelayHandle;
use crate::event_store::FollowStatus;
use crate::event_store::RetryPolicy;
use crate::event_store::{EventStore, FanOutEventStore};
use crate::framework::Clock;
use crate::notify::NotifierHandle;
use crate::projections::{
    AvailableSeatsProjection, AvailableSeatsQueries, CustomerHistoryProjection, CustomerHistoryQueries,
    CustomerTicketsProjection, CustomerTicketsQueries, DailySalesProjection, DailySalesQueries, GateCheckinsProjection,
    GateCheckinsQueries, ProjectionError, SalesAnalyticsProjection, SalesAnalyticsQueries,
};
#[cfg(doc)]
use crate::system::ReadModelStorage;
use crate::system::commands::{CommandError, CommandRouter, Committed};
use crate::system::context::CommandContext;
use crate::system::expiry::ExpiryIndex;
use crate::system::follower::AtOnce;
use crate::system::health::{ConsumerHealth, Health};
use crate::system::open_payments::OpenPayments;
use crate::system::read_models::{ReadModelQueries, ReadModels};
use crate::system::reconcile::Reconciliation;
use crate::system::reservation_watch::ReservationWatch;
use crate::system::saga::Saga;
use crate::system::vault::TokenVault;
use crate::system::{GatewayChoice, SimulatedGateway, SystemConfig, SystemError};

/// Connects the Kafka bus named by `KAFKA_BROKERS` (its other settings from the environment, see
/// [`KafkaConfig::from_env`](crate::event_bus::KafkaConfig::from_env)).
#[cfg(feature = "kafka")]
async fn with_kafka(
    builder: super::TicketingSystemBuilder,
    brokers: &str,
) -> Result<super::TicketingSystemBuilder, SystemError> {
    use crate::event_bus::{KafkaConfig, KafkaEventBus};
    let mut kafka = KafkaConfig::from_env()
        .map_err(|source| SystemError::Unreachable { what: "the Kafka configuration", source: Box::new(source) })?;
    brokers.clone_into(&mut kafka.brokers);
    let topics = kafka.router();
    let bus = KafkaEventBus::connect(kafka)
        .await
        .map_err(|source| SystemError::Unreachable { what: "KAFKA_BROKERS", source: Box::new(source) })?;
    Ok(builder.event_bus(Arc::new(bus), topics))
}

/// The gateway `PAYMENT_GATEWAY` chose; none chosen is an error, never a silent fake.
fn gateway_from_config(choice: Option<&GatewayChoice>) -> Result<Arc<dyn crate::system::PaymentGateway>, SystemError> {
    match choice {
        None => Err(SystemError::Config {
            reason: "PAYMENT_GATEWAY is not set: choose `stripe` (with STRIPE_SECRET_KEY) or `simulated` (a demo that moves no money)"
                .to_owned(),
        }),
        Some(GatewayChoice::Simulated) => {
            tracing::warn!("PAYMENT_GATEWAY=simulated: a demo gateway that approves every charge and moves no money");
            Ok(Arc::new(SimulatedGateway::always_succeed()))
        }
        #[cfg(feature = "stripe")]
        Some(GatewayChoice::Stripe { secret_key, api_base }) => {
            let mut config = crate::system::StripeConfig::new(secret_key.clone());
            if let Some(base) = api_base {
                base.clone_into(&mut config.api_base);
            }
            let gateway = crate::system::StripeGateway::new(config)
                .map_err(|source| SystemError::Unreachable { what: "the Stripe client", source: Box::new(source) })?;
            Ok(Arc::new(gateway))
        }
        #[cfg(not(feature = "stripe"))]
        Some(GatewayChoice::Stripe { .. }) => Err(SystemError::Config {
            reason: "PAYMENT_GATEWAY=stripe but boxoffice was built without the `stripe` feature".to_owned(),
        }),
    }
}

/// Without the `kafka` feature a configured broker is an error, not silently ignored.
#[cfg(not(feature = "kafka"))]
#[allow(clippy::unused_async)] // same signature as the Kafka variant
async fn with_kafka(_: super::TicketingSystemBuilder, _: &str) -> Result<super::TicketingSystemBuilder, SystemError> {
    Err(SystemError::Config {
        reason: "KAFKA_BROKERS is set but boxoffice was built without the `kafka` feature".to_owned(),
    })
}

/// Expires every hold whose deadline has passed, as soon as it passes on the injected clock. The
/// expiry is recorded under the correlation id of the request that took the hold, caused by its
/// `ReservationInitiated`.
pub(super) async fn sweep_expired(
    expiry: ExpiryIndex,
    router: CommandRouter,
    retry: RetryPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let unbounded = RetryPolicy { max_attempts: None, ..retry };
    let mut backoffs = unbounded.backoff();
    loop {
        tokio::select! {
            () = expiry.next_due() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let mut failed = false;
        for hold in expiry.due() {
            let reservation_id = hold.reservation_id;
            let context = CommandContext {
                correlation_id: hold.correlation_id,
                causation_id: hold.initiated_event,
                origin: None,
            };
            let command = TicketingAction::Reservation(ReservationAction::ExpireReservation { reservation_id });
            match router.execute(command, context).await {
                Ok(_) | Err(CommandError::Rejected(_)) => expiry.forget(reservation_id),
                Err(error) => {
                    tracing::warn!(%error, %reservation_id, "expiring a hold failed; will retry");
                    failed = true;
                }
            }
        }
        if failed {
            let delay = backoffs.next().unwrap_or(retry.max_delay);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        } else {
            backoffs = unbounded.backoff();
        }
    }
}

/// The ticketing engine: commands, the reservation saga, expiry and queries.
///
/// ```
/// use boxoffice::prelude::*;
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
///         policy: SalesPolicy::default(),
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
    pub(super) inner: Arc<Inner>,
    /// The request id every call through this handle records, if the caller chose one.
    request_id: Option<Uuid>,
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn EventStore>,
    /// The same store as `store`: its shared subscription ends at shutdown.
    pub(super) fan_out: FanOutEventStore,
    /// The store the system connected itself (from its configuration), closed at shutdown.
    #[cfg(feature = "postgres")]
    pub(super) owned_store: Option<crate::event_store::PostgresEventStore>,
    pub(super) router: CommandRouter,
    /// Starts this node's own follow-ups of what the calls append as those appends commit.
    pub(super) at_once: AtOnce,
    pub(super) saga: Saga,
    pub(super) vault: TokenVault,
    pub(super) open: OpenPayments,
    pub(super) saga_name: String,
    /// This process among the others on the same log.
    pub(super) node: Uuid,
    pub(super) saga_status: watch::Receiver<FollowStatus>,
    pub(super) reconcile_grace: Duration,
    pub(super) watch: ReservationWatch,
    pub(super) expiry: ExpiryIndex,
    pub(super) clock: Arc<dyn Clock>,
    /// The follower's frontier: every event at or before it has been read and reacted to.
    pub(super) position: watch::Receiver<u64>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(super) read_models: Mutex<Option<ReadModels>>,
    pub(super) relay: Mutex<Option<RelayHandle>>,
    pub(super) notifier: Mutex<Option<NotifierHandle>>,
    pub(super) reply_timeout: Duration,
    /// What signs ticket codes, when configured.
    pub(super) ticket_keys: Option<crate::domain::TicketKeys>,
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
    pub(super) fn assemble(inner: Inner) -> Self {
        Self { inner: Arc::new(inner), request_id: None }
    }

    /// A builder with in-memory defaults.
    #[must_use]
    pub fn builder() -> TicketingSystemBuilder {
        TicketingSystemBuilder::default()
    }

    /// A handle to the same system whose calls record `request_id` (for example the id of the
    /// HTTP request being served) as the correlation id of every event they cause, the saga's
    /// follow-ups and the payment gateway's outcome included. Without it each call gets a fresh
    /// id.
    #[must_use]
    pub fn with_request_id(&self, request_id: Uuid) -> Self {
        Self { inner: Arc::clone(&self.inner), request_id: Some(request_id) }
    }

    pub(super) fn context(&self) -> CommandContext {
        CommandContext::request(self.request_id.unwrap_or_else(Uuid::new_v4))
    }

    fn queries(&self) -> Result<ReadModelQueries, SystemError> {
        let models = self.inner.read_models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        models.as_ref().map(ReadModels::queries).ok_or(SystemError::ShuttingDown)
    }

    /// The read models' queries, unless the model `name` is failing right now.
    fn queries_of(&self, name: &str) -> Result<ReadModelQueries, SystemError> {
        let models = self.inner.read_models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let models = models.as_ref().ok_or(SystemError::ShuttingDown)?;
        let failing = models.statuses().into_iter().find(|(model, _)| model == name).and_then(|(_, s)| s.failing);
        match failing {
            Some(source) => Err(ProjectionError::Failing { projection: name.to_owned(), source }.into()),
            None => Ok(models.queries()),
        }
    }

    /// Seat availability per section, kept up to date from the log, from whichever
    /// [`ReadModelStorage`] the system uses:
    /// `system.available_seats()?.get_availability(event, "VIP").await?`.
    ///
    /// # Errors
    /// [`SystemError::ShuttingDown`] after [`TicketingSystem::shutdown`];
    /// [`SystemError::Projection`] ([`ProjectionError::Failing`], naming the model and its
    /// failure) while the model is failing: its answers would be stale.
    pub fn available_seats(&self) -> Result<Arc<dyn AvailableSeatsQueries>, SystemError> {
        Ok(self.queries_of(AvailableSeatsProjection::NAME)?.available_seats())
    }

    /// Revenue and sales per event.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn sales_analytics(&self) -> Result<Arc<dyn SalesAnalyticsQueries>, SystemError> {
        Ok(self.queries_of(SalesAnalyticsProjection::NAME)?.sales_analytics())
    }

    /// Purchases per customer.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn customer_history(&self) -> Result<Arc<dyn CustomerHistoryQueries>, SystemError> {
        Ok(self.queries_of(CustomerHistoryProjection::NAME)?.customer_history())
    }

    /// Completed orders and the tickets each customer holds now (transfers followed, revoked
    /// tickets shown as revoked).
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn customer_tickets(&self) -> Result<Arc<dyn CustomerTicketsQueries>, SystemError> {
        Ok(self.queries_of(CustomerTicketsProjection::NAME)?.customer_tickets())
    }

    /// Scans per event and gate (admitted, exited, turned away, offline) and holders inside now.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn gate_checkins(&self) -> Result<Arc<dyn GateCheckinsQueries>, SystemError> {
        Ok(self.queries_of(GateCheckinsProjection::NAME)?.gate_checkins())
    }

    /// Tickets, revenue and completed reservations per event and UTC day.
    ///
    /// # Errors
    /// As [`TicketingSystem::available_seats`].
    pub fn daily_sales(&self) -> Result<Arc<dyn DailySalesQueries>, SystemError> {
        Ok(self.queries_of(DailySalesProjection::NAME)?.daily_sales())
    }

    /// Read-your-writes: waits until every read model has applied the log up to `position`
    /// (for example [`EventStore::head_position`] after a command), in memory or in `PostgreSQL`.
    ///
    /// # Errors
    /// [`SystemError::Projection`] on timeout, when a read model stopped or its database failed.
    pub async fn wait_for_read_models(&self, position: u64, timeout: Duration) -> Result<(), SystemError> {
        match self.queries()?.wait_for(position, timeout).await {
            Err(ProjectionError::Timeout { projection, position, reached, timeout, cause: None }) => {
                // Name what the model's feed is failing with.
                let models = self.inner.read_models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let cause = models.as_ref().and_then(|models| {
                    let (_, status) = models.statuses().into_iter().find(|(name, _)| *name == projection)?;
                    status.trouble()
                });
                Err(ProjectionError::Timeout { projection, position, reached, timeout, cause }.into())
            }
            outcome => Ok(outcome?),
        }
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
    /// log); otherwise everything is in memory. With `DATABASE_SCHEMA` set, every boxoffice table
    /// and the crate's migration history live in that schema, created if missing (see
    /// [`SystemConfig::database_schema`]). The system owns the pool it connects here:
    /// [`TicketingSystem::shutdown`] closes it. The payment gateway is the one `PAYMENT_GATEWAY`
    /// names; there is no default. Callers may still override the clock, the payment gateway or
    /// the read model storage before `build()`.
    ///
    /// # Errors
    /// [`SystemError::Config`] when no payment gateway is chosen, `stripe` is chosen without the
    /// `stripe` feature, or `DATABASE_URL` is set but the `postgres` feature is off;
    /// [`SystemError::Unreachable`] when the database cannot be reached or migrated.
    #[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))]
    pub async fn builder_from_config(config: &SystemConfig) -> Result<TicketingSystemBuilder, SystemError> {
        let gateway = gateway_from_config(config.payment_gateway.as_ref())?;
        let mut builder = Self::builder().hold_duration(config.hold_duration).payment_gateway(gateway);
        if let Some(keys) = &config.ticket_keys {
            builder = builder.ticket_keys(keys.clone());
        }
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
            let postgres = PostgresConfig {
                max_connections: config.database_max_connections,
                schema: config.database_schema.clone(),
                ..PostgresConfig::default()
            };
            let store = PostgresEventStore::connect(url, postgres)
                .await
                .map_err(|source| SystemError::Unreachable { what: "DATABASE_URL", source: Box::new(source) })?;
            store.migrate().await.map_err(|source| SystemError::Unreachable {
                what: "the schema migration",
                source: Box::new(source),
            })?;
            let read_models = crate::projections::PostgresReadModels::new(store.pool().clone());
            let owned = store.clone();
            let store = Arc::new(store);
            Ok(builder
                .owning(owned)
                .event_store(Arc::clone(&store) as Arc<dyn EventStore>)
                .checkpoints(store)
                .read_models(crate::system::ReadModelStorage::Postgres(read_models)))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (url, builder);
            Err(SystemError::Config {
                reason: "DATABASE_URL is set but boxoffice was built without the `postgres` feature".to_owned(),
            })
        }
    }

    /// This system's node id, stamped on every event it appends
    /// ([`Metadata::node_id`](crate::event_store::Metadata::node_id)). Its saga reacts to those
    /// events only (and to those of systems that are gone), so several processes on one log run
    /// each step of a purchase once. New at every build.
    #[must_use]
    pub fn node_id(&self) -> Uuid {
        self.inner.node
    }

    /// The event store this system writes to.
    #[must_use]
    pub fn event_store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.inner.store)
    }

    pub(super) async fn command(
        &self,
        command: TicketingAction,
        context: CommandContext,
    ) -> Result<Committed<TicketingAction>, SystemError> {
        let committed = self.inner.router.execute(command, context).await?;
        self.inner.at_once.follow_up(&committed, context);
        Ok(committed)
    }

    async fn event_command(&self, command: EventAction) -> Result<(), SystemError> {
        self.command(TicketingAction::Event(command), self.context()).await?;
        Ok(())
    }

    /// Runs `command`, then waits until the saga has carried out what follows from it (for calls
    /// that promise it: an event's inventories exist once `create_event` returns).
    async fn command_and_follow_ups(&self, command: TicketingAction) -> Result<(), SystemError> {
        let committed = self.command(command, self.context()).await?;
        match committed.last_position {
            Some(position) => self.handled(position, self.inner.reply_timeout).await,
            None => Ok(()),
        }
    }

    /// Waits until the follower has read `position` and recorded the reactions to everything up to it.
    pub(super) async fn handled(&self, position: u64, timeout: Duration) -> Result<(), SystemError> {
        let mut frontier = self.inner.position.clone();
        let reached = tokio::time::timeout(timeout, frontier.wait_for(|handled| *handled >= position))
            .await
            .map(|reached| reached.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(SystemError::ShuttingDown),
            Err(_) => Err(SystemError::Lagging {
                consumer: self.inner.saga_name.clone(),
                position,
                handled: *frontier.borrow(),
                waited_ms: timeout.as_millis(),
                cause: self.inner.saga_status.borrow().trouble(),
            }),
        }
    }

    /// A reservation's reply did not come within `timeout`: who was behind, where, and why.
    fn timed_out(&self, reservation_id: ReservationId, timeout: Duration) -> SystemError {
        SystemError::Timeout {
            reservation_id,
            waited_ms: timeout.as_millis(),
            consumer: self.inner.saga_name.clone(),
            handled: *self.inner.position.borrow(),
            cause: self.inner.saga_status.borrow().trouble(),
        }
    }

    /// The order's lines priced now, if the event and every section are on sale. The cached
    /// state is enough to sell; a refusal is checked against the store first, because another
    /// process may have opened the sales.
    async fn price(
        &self,
        event_id: EventId,
        reservation_id: ReservationId,
        wanted: &[OrderLineRequest],
    ) -> Result<Priced, SystemError> {
        let stream = event_stream(event_id)?;
        let now = self.inner.clock.now();
        let not_on_sale =
            move |section: &SectionName| ReservationError::NotOnSale { event_id, section: section.clone() };
        let Some(first) = wanted.first() else { return Err(ReservationError::EmptyOrder { reservation_id }.into()) };
        for fresh in [false, true] {
            let wanted = wanted.to_vec();
            let priced = self
                .inner
                .router
                .events
                .read(&stream, fresh, move |event| {
                    event.filter(|e| e.is_on_sale()).map(|e| {
                        let policy = e.details.as_ref().map(|d| d.policy).unwrap_or_default();
                        let mut priced = Priced { lines: Vec::new(), policy, capacities: Vec::new() };
                        for line in wanted {
                            // A section the event does not have has no price: `EventError::NoPrice`.
                            let capacity = e.section(&line.section).map_or(0, |s| s.capacity.get());
                            priced.capacities.push(capacity);
                            priced.lines.push(OrderLine {
                                unit_price: e.price_of_tier(&line.section, line.tier, now)?,
                                section: line.section,
                                quantity: line.quantity,
                                tier: line.tier,
                            });
                        }
                        Ok::<_, SystemError>(priced)
                    })
                })
                .await
                .map_err(lift_event_error)?;
            if let Some(priced) = priced {
                return priced;
            }
        }
        Err(not_on_sale(&first.section).into())
    }

    /// Creates an event in Draft with its sections' inventories.
    ///
    /// # Errors
    /// [`SystemError::Event`] for invalid details (blank name or one with a NUL character, no
    /// sections, bad tiers, past date).
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
        self.event_command(EventAction::PublishEvent { event_id }).await
    }

    /// Published → `SalesOpen`.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`].
    pub async fn open_sales(&self, event_id: EventId) -> Result<(), SystemError> {
        self.event_command(EventAction::OpenSales { event_id }).await
    }

    /// `SalesOpen` → `SalesClosed`.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`].
    pub async fn close_sales(&self, event_id: EventId) -> Result<(), SystemError> {
        self.event_command(EventAction::CloseSales { event_id }).await
    }

    /// Cancels the event: every live hold is cancelled (its seats released) and every completed
    /// purchase is refunded in full.
    ///
    /// # Errors
    /// As [`TicketingSystem::publish_event`]; [`SystemError::Event`] also for a reason with a NUL
    /// character.
    pub async fn cancel_event(&self, event_id: EventId, reason: impl Into<String>) -> Result<(), SystemError> {
        let cancel = EventAction::CancelEvent { event_id, reason: reason.into() };
        self.command_and_follow_ups(TicketingAction::Event(cancel)).await
    }

    /// Holds `quantity` seats of one section for the customer and returns them with the hold
    /// deadline: [`TicketingSystem::reserve_order`] of one line.
    ///
    /// # Errors
    /// As [`TicketingSystem::reserve_order`].
    pub async fn reserve(&self, request: ReserveRequest) -> Result<HeldSeats, SystemError> {
        self.reserve_order(request.into()).await
    }

    /// Holds the seats of an order, one line per section (each at the tier it names, or the
    /// cheapest on sale), all or none, and returns them with the one hold deadline of the order.
    /// Each line is held in its section's inventory; if any section lacks seats, the order ends
    /// `Compensated` and the lines already held are released, so nothing stays held. The order
    /// is paid with one payment of its total ([`TicketingSystem::pay`]).
    ///
    /// A line for more seats than its section has can never be filled: the order is refused up
    /// front and nothing is recorded. An order that fits the sections but not the seats free
    /// right now goes through the saga: its reservation is recorded, finds too few seats and
    /// ends `Compensated` (those events are the record of losing the race for the seats).
    /// Under the event's per-customer ticket limit
    /// ([`SalesPolicy::max_tickets_per_customer`]) the seats of every line are first claimed on
    /// the customer's allowance, which counts every order of theirs at once; an order above the
    /// limit by itself is refused up front.
    ///
    /// # Errors
    /// [`SystemError::Allowance`] when the customer would pass the event's ticket limit (the
    /// reservation ended `Compensated`, or, above the limit by itself, was never recorded);
    /// [`SystemError::InsufficientInventory`] when a section cannot fill its line: with
    /// `available` the seats free when the hold was attempted, or, for more seats than the
    /// section has, with `available` its capacity and a `reservation_id` that was never
    /// recorded; [`SystemError::Invalid`] for an idempotency key with a NUL character;
    /// [`SystemError::Reservation`] when the event or a section is not on sale, the tier named
    /// is not on sale, or the order is invalid (no lines, a line of zero seats, a section twice);
    /// [`SystemError::Timeout`] when the saga did not answer in time.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use boxoffice::prelude::*;
    /// use boxoffice::system::{OrderLineRequest, OrderRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let system =
    ///     TicketingSystem::builder().payment_gateway(Arc::new(SimulatedGateway::always_succeed())).build().await?;
    /// let (stalls, vip) = (SectionName::new("Stalls")?, SectionName::new("VIP")?);
    /// let tier = |kind, section: &SectionName, price| PricingTier::new(kind, section.clone(), Money::new(price, Currency::EUR), None);
    /// let event = system
    ///     .create_event(EventSpec {
    ///         name: "Rust Live".into(),
    ///         venue: Venue::new(VenueId::new_v4(), "Hall 1")?,
    ///         date: chrono::Utc::now() + chrono::Duration::days(30),
    ///         sections: vec![
    ///             Section { name: stalls.clone(), capacity: Capacity::new(100)? },
    ///             Section { name: vip.clone(), capacity: Capacity::new(1)? },
    ///         ],
    ///         pricing_tiers: vec![tier(TierKind::Regular, &stalls, 5_000)?, tier(TierKind::Vip, &vip, 15_000)?],
    ///         policy: SalesPolicy::default(),
    ///     })
    ///     .await?;
    /// system.publish_event(event).await?;
    /// system.open_sales(event).await?;
    /// let line = |section: &SectionName, quantity| OrderLineRequest { section: section.clone(), quantity, tier: None };
    /// let order = |lines| OrderRequest { event_id: event, lines, customer_id: CustomerId::new_v4(), idempotency_key: None };
    ///
    /// let hold = system.reserve_order(order(vec![line(&stalls, 2), line(&vip, 1)])).await?;
    /// assert_eq!(hold.total, Money::new(2 * 5_000 + 15_000, Currency::EUR));
    /// let receipt = system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
    /// assert_eq!(receipt.amount, hold.total);
    ///
    /// // VIP is sold out now: a basket that needs it holds nothing, Stalls included.
    /// let short = system.reserve_order(order(vec![line(&stalls, 4), line(&vip, 1)])).await;
    /// assert!(matches!(short, Err(SystemError::InsufficientInventory { section: Some(s), .. }) if s == vip));
    /// system.settled().await?;
    /// let free = system.available_seats()?.get_availability(event, "Stalls").await?.map(|a| a.available);
    /// assert_eq!(free, Some(98));
    /// system.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve_order(&self, request: OrderRequest) -> Result<HeldSeats, SystemError> {
        if let Some(key) = &request.idempotency_key {
            ensure_storable_text("idempotency key", key)?;
        }
        let event_id = request.event_id;
        let reservation_id = match &request.idempotency_key {
            Some(key) => ReservationId::for_idempotency_key(request.customer_id, key),
            None => ReservationId::new_v4(),
        };
        let Priced { lines, policy, capacities } = self.price(event_id, reservation_id, &request.lines).await?;
        let requested: u32 = lines.iter().fold(0, |sum, line| sum.saturating_add(line.quantity));
        if let Some(limit) = policy.max_tickets_per_customer.filter(|limit| requested > *limit) {
            return Err(AllowanceError::LimitReached {
                event_id,
                customer_id: request.customer_id,
                reservation_id,
                requested,
                held: 0,
                limit,
            }
            .into());
        }
        let beyond = lines.iter().zip(&capacities).find(|(line, capacity)| line.quantity > **capacity);
        if let Some((line, capacity)) = beyond {
            // A keyed request whose reservation exists is a retry: it answers as the original did
            // (or as a reuse of the key with other details).
            let retry = request.idempotency_key.is_some() && self.reservation(reservation_id).await.is_ok();
            if !retry {
                return Err(SystemError::InsufficientInventory {
                    reservation_id,
                    requested: line.quantity,
                    available: *capacity,
                    section: Some(line.section.clone()),
                });
            }
        }
        let context = self.context();
        let mut waiter = self.inner.watch.watch(reservation_id);
        let initiate = ReservationAction::InitiateReservation {
            reservation_id,
            event_id,
            lines,
            customer_id: request.customer_id,
            policy,
        };
        self.command(TicketingAction::Reservation(initiate), context).await?;
        let timeout = self.inner.reply_timeout;
        let settled = tokio::time::timeout(
            timeout,
            waiter.until(|event| matches!(event, ReservationAction::SeatsAllocated { .. }) || event.is_ending()),
        );
        // A retried call finds the reservation already past the step it waits for.
        let reservation = self.reservation(reservation_id).await?;
        if reservation.status == ReservationStatus::Initiated {
            if settled.await.is_err() {
                return Err(self.timed_out(reservation_id, timeout));
            }
        } else {
            drop(settled);
        }
        drop(waiter);
        let reservation =
            self.reservation_reaching(reservation_id, |status| status != ReservationStatus::Initiated).await?;
        held_or_why(reservation)
    }

    /// Pays for a hold and waits for the outcome. The token goes to the payment gateway from
    /// this process's memory and is never stored.
    ///
    /// # Errors
    /// [`SystemError::PaymentDeclined`] (the seats are released), [`SystemError::PaymentPending`]
    /// when the gateway's answer is not known yet (reconciliation settles it),
    /// [`SystemError::ReservationEnded`] when the hold expired or was cancelled first,
    /// [`SystemError::Timeout`].
    pub async fn pay(&self, reservation_id: ReservationId, details: PaymentDetails) -> Result<Receipt, SystemError> {
        let context = self.context();
        let mut waiter = self.inner.watch.watch(reservation_id);
        // The token waits here for the charge. Whichever concurrent call records the request,
        // the saga takes the token kept for it; one left over goes when the reservation ends.
        self.inner.vault.put_if_absent(reservation_id, details.token);
        let request = ReservationAction::RequestPayment { reservation_id };
        let committed = match self.command(TicketingAction::Reservation(request), context).await {
            Ok(committed) => committed,
            Err(error) => {
                let reservation = self.reservation(reservation_id).await;
                self.forget_token_if_done(reservation.as_ref().ok());
                // Paying for a hold that already ended is not bad input: say how it ended.
                return match reservation.map(|r| ended(r.status)) {
                    Ok(Some(how)) => Err(SystemError::ReservationEnded { reservation_id, how }),
                    _ => Err(error),
                };
            }
        };
        let reservation = self.reservation(reservation_id).await?;
        self.forget_token_if_done(Some(&reservation));
        // A repeated call (nothing committed) may find the answer already recorded as unknown.
        let unknown = committed.last_position.is_none()
            && self.payment(reservation_id).await?.is_some_and(|p| p.status == PaymentStatus::Unknown);
        if unknown {
            return Err(SystemError::PaymentPending { reservation_id });
        }
        if !reservation.status.is_terminal() {
            let timeout = self.inner.reply_timeout;
            let unknown = waiter.payment_unknown();
            let outcome = tokio::time::timeout(timeout, async {
                tokio::select! {
                    _ = waiter.until(ReservationAction::is_ending) => false,
                    () = unknown => true,
                }
            })
            .await;
            match outcome {
                Ok(true) => return Err(SystemError::PaymentPending { reservation_id }),
                Ok(false) => {}
                Err(_) => return Err(self.timed_out(reservation_id, timeout)),
            }
        }
        drop(waiter);
        let reservation = self.reservation_reaching(reservation_id, ReservationStatus::is_terminal).await?;
        match reservation.status {
            ReservationStatus::Completed => Ok(Receipt {
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

    /// Drops a token kept for a reservation that has already ended (a call repeated after the
    /// purchase finished): no charge will take it.
    fn forget_token_if_done(&self, reservation: Option<&crate::aggregates::Reservation>) {
        if let Some(reservation) = reservation
            && reservation.status.is_terminal()
        {
            drop(self.inner.vault.take(reservation.reservation_id));
        }
    }

    /// The customer gives the hold up; its seats are released before this returns (so the same
    /// seats can be reserved again at once).
    ///
    /// # Errors
    /// [`SystemError::Reservation`] for an unknown or already finished reservation;
    /// [`SystemError::Lagging`] when the release is not recorded within the reply timeout.
    pub async fn cancel_reservation(&self, reservation_id: ReservationId) -> Result<(), SystemError> {
        let cancel = ReservationAction::CancelReservation { reservation_id };
        self.command_and_follow_ups(TicketingAction::Reservation(cancel)).await
    }

    /// Gives money back for a paid reservation: `request.amount`, or all that is left when it is
    /// `None`, never more than was paid. The refund is recorded, sent to the payment gateway and
    /// its answer recorded before this returns. A refund with an idempotency key is the same
    /// refund however often it is asked for. The returned record says where it stands:
    /// [`RefundStatus::Refunded`](crate::aggregates::RefundStatus::Refunded), `Declined` by the
    /// provider, or still `Requested` when the provider's answer is not known (it is sent again
    /// by reconciliation until it answers).
    ///
    /// # Errors
    /// [`SystemError::Invalid`] for an idempotency key with a NUL character,
    /// [`SystemError::UnknownReservation`] when nothing was paid, [`SystemError::Payment`] for a
    /// refund above what is left, of nothing, of another amount under a used key, or with a
    /// reason holding a NUL character.
    pub async fn refund(&self, request: RefundRequest) -> Result<RefundRecord, SystemError> {
        let RefundRequest { reservation_id, amount, reason, idempotency_key } = request;
        if let Some(key) = &idempotency_key {
            ensure_storable_text("idempotency key", key)?;
        }
        let payment_id = PaymentId::for_reservation(reservation_id);
        let payment =
            self.payment_fresh(reservation_id).await?.ok_or(SystemError::UnknownReservation { reservation_id })?;
        let refund_id = match &idempotency_key {
            Some(key) => RefundId::for_payment(payment_id, key),
            None => RefundId::new_v4(),
        };
        let amount = match (amount, payment.refund(refund_id)) {
            (Some(amount), _) => amount,
            (None, Some(earlier)) => earlier.amount,
            (None, None) => payment.refundable()?,
        };
        let refund = PaymentAction::RefundPayment { at_most: false, payment_id, refund_id, amount, reason };
        let committed = self.command(TicketingAction::Payment(refund), self.context()).await?;
        if let Some(requested) = committed.last_position {
            self.handled(requested, self.inner.reply_timeout).await?;
        }
        self.payment(reservation_id)
            .await?
            .and_then(|p| p.refund(refund_id).cloned())
            .ok_or(SystemError::UnknownReservation { reservation_id })
    }

    /// The payment of a reservation, as this process last saw it (`None` before one was made).
    ///
    /// # Errors
    /// [`SystemError::Storage`] when the store cannot be read.
    pub async fn payment(&self, reservation_id: ReservationId) -> Result<Option<PaymentRecord>, SystemError> {
        self.read_payment(reservation_id, false).await
    }

    async fn payment_fresh(&self, reservation_id: ReservationId) -> Result<Option<PaymentRecord>, SystemError> {
        self.read_payment(reservation_id, true).await
    }

    pub(super) async fn read_payment(
        &self,
        reservation_id: ReservationId,
        fresh: bool,
    ) -> Result<Option<PaymentRecord>, SystemError> {
        let stream = payment_stream(PaymentId::for_reservation(reservation_id))?;
        let read = |p: Option<&crate::aggregates::PaymentState>| p.and_then(|p| p.payment.clone());
        self.inner.router.payments.read(&stream, fresh, read).await.map_err(lift_payment_error)
    }

    /// Runs one payment reconciliation pass now (it also runs at start-up and on the schedule of
    /// [`TicketingSystemBuilder::payment_reconciliation`]): every charge whose answer was not
    /// recorded (it was unknown, or its process died mid-call) is settled by asking the
    /// provider, every unconfirmed refund is sent again under its refund id. Only entries older
    /// than the grace period are touched.
    ///
    /// # Errors
    /// [`SystemError::ShuttingDown`] when the system stopped first.
    pub async fn reconcile_payments(&self) -> Result<Reconciliation, SystemError> {
        self.inner
            .saga
            .reconcile(self.inner.clock.as_ref(), self.inner.reconcile_grace)
            .await
            .map_err(|_| SystemError::ShuttingDown)
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
    pub(super) async fn reservation_after_saga(
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
        let read = |s: Option<&crate::aggregates::ReservationState>| s.and_then(|s| s.reservation.clone());
        let found = self.inner.router.reservations.read(&stream, fresh, read).await.map_err(lift_reservation_error)?;
        found.ok_or(SystemError::UnknownReservation { reservation_id })
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
        let timeout = self.inner.reply_timeout;
        loop {
            let last = self.inner.store.last_committed_position().await?;
            self.handled(last, timeout).await?;
            self.inner.router.snapshots_written().await;
            if self.inner.expiry.due().is_empty() && self.inner.store.last_committed_position().await? == last {
                return self.wait_for_read_models(last, timeout).await;
            }
            tokio::task::yield_now().await;
        }
    }

    /// How the background work is doing: for the saga's follower (its position is the frontier
    /// of recorded reactions), each read model, with a bus the relay and with a notifier the
    /// notifier (its last error is its last refusal, if any), the position, the lag
    /// behind the last committed event, the retries and the failure being retried; plus the holds
    /// past their deadline and the payments awaiting reconciliation. Cheap: it reads what the
    /// consumers publish and asks the store for its head once.
    ///
    /// # Errors
    /// [`SystemError::Storage`] when the store's head cannot be read.
    pub async fn health(&self) -> Result<Health, SystemError> {
        let head = self.inner.store.last_committed_position().await?;
        let saga = self.inner.saga_status.borrow().clone();
        let mut consumers =
            vec![ConsumerHealth::from_status(self.inner.saga_name.clone(), &saga, *self.inner.position.borrow(), head)];
        if let Some(models) = self.inner.read_models.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            for (name, status) in models.statuses() {
                let position = status.position;
                consumers.push(ConsumerHealth::from_status(name, &status, position, head));
            }
        }
        if let Some(relay) = self.inner.relay.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let status = relay.status().borrow().clone();
            let position = *relay.progress().borrow();
            consumers.push(ConsumerHealth::from_status(
                format!("{}-relay", self.inner.saga_name),
                &status,
                position,
                head,
            ));
        }
        if let Some(notifier) = self.inner.notifier.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let status = notifier.status().borrow().clone();
            consumers.push(ConsumerHealth::from_status(notifier.name(), &status, status.position, head));
        }
        Ok(Health {
            head,
            consumers,
            overdue_holds: self.inner.expiry.due().len(),
            unsettled_payments: self.inner.open.len(),
        })
    }

    /// With an event bus: the global position up to which every event has been published (the
    /// relay's checkpoint), to wait on with `wait_for`.
    #[must_use]
    pub fn published_position(&self) -> Option<watch::Receiver<u64>> {
        self.inner.relay.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(RelayHandle::progress)
    }

    /// Finishes every saga step already decided (a paid hold's seats confirmed, a released hold's
    /// seats returned), then stops the follower, the sweeper, the read models, the relay and the
    /// notifier.
    /// Waits at most the reply timeout for the steps: whatever is left then (the store is down)
    /// stays durable in the log, and the next process carries it out from the checkpoint.
    ///
    /// Then it releases the database: the system's shared subscription to the store ends (on
    /// `PostgreSQL` its dedicated `LISTEN` connection closes), and when the system connected the
    /// store itself ([`TicketingSystem::builder_from_config`] with `DATABASE_URL`) its pool is
    /// closed, so no connection the system opened stays open; calls made afterwards fail. A store
    /// passed to [`TicketingSystemBuilder::event_store`] belongs to the caller and stays open
    /// (close it with its own `close`).
    pub async fn shutdown(&self) {
        let drained = async {
            loop {
                let last = self.inner.store.last_committed_position().await?;
                self.handled(last, self.inner.reply_timeout).await?;
                if self.inner.store.last_committed_position().await? == last {
                    return Ok::<(), SystemError>(());
                }
            }
        };
        if let Err(error) = drained.await {
            tracing::warn!(%error, "shutting down with saga steps left for the next process");
        }
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task of the system failed");
            }
        }
        self.inner.router.retire_workers();
        self.inner.router.snapshots_written().await;
        let relay = self.inner.relay.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(relay) = relay
            && let Err(error) = relay.stop().await
        {
            tracing::warn!(%error, "the outbox relay stopped with an error");
        }
        let notifier = self.inner.notifier.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(notifier) = notifier
            && let Err(error) = notifier.stop().await
        {
            tracing::warn!(%error, "the notifier stopped with an error; the next process sends what it had not");
        }
        let models = self.inner.read_models.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(models) = models {
            models.stop().await;
        }
        // The shared subscription to the store, and with it (on PostgreSQL) its LISTEN connection.
        self.inner.fan_out.stop().await;
        #[cfg(feature = "postgres")]
        if let Some(store) = &self.inner.owned_store {
            store.close().await;
        }
    }
}

/// What [`TicketingSystem::reserve`] needs to know of the event on sale.
struct Priced {
    /// The order's lines, priced now.
    lines: Vec<OrderLine>,
    /// The event's sales rules.
    policy: SalesPolicy,
    /// Each line's section's number of seats.
    capacities: Vec<u32>,
}

/// What `reserve_order` answers once the reservation is past `Initiated`: the seats held, or why
/// there are none.
fn held_or_why(reservation: Reservation) -> Result<HeldSeats, SystemError> {
    let reservation_id = reservation.reservation_id;
    match reservation.status {
        ReservationStatus::Compensated => match reservation.compensation {
            Some(CompensationReason::InsufficientInventory { requested, available, section }) => {
                Err(SystemError::InsufficientInventory { reservation_id, requested, available, section })
            }
            Some(CompensationReason::CustomerLimitReached { limit, held }) => Err(AllowanceError::LimitReached {
                event_id: reservation.event_id,
                customer_id: reservation.customer_id,
                reservation_id,
                requested: reservation.quantity,
                held,
                limit,
            }
            .into()),
            _ => Err(SystemError::ReservationEnded { reservation_id, how: "compensated" }),
        },
        status => match ended(status) {
            Some(how) => Err(SystemError::ReservationEnded { reservation_id, how }),
            None => Ok(HeldSeats {
                reservation_id,
                lines: reservation.held_lines(),
                seats: reservation.seats,
                total: reservation.total,
                expires_at: reservation.expires_at,
            }),
        },
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
