//! Shared by the bus-fed projection tests (memory and Kafka): the three read models fed from the
//! bus, their query answers, a bus that reports deliveries, and the end-to-end equality check.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice::aggregates::TICKETING_CATEGORIES;
use boxoffice::domain::Currency;
use boxoffice::event_bus::{Delivery, EventBus, EventBusError, OutboxRelay, Outgoing, RelayConfig, TopicRouter};
use boxoffice::event_store::{Envelope, EventStore, MemoryCheckpointStore, MemoryEventStore, RetryPolicy};
use boxoffice::projections::{
    AvailableSeatsProjection, BusProjectionRunner, BusRunnerConfig, CustomerHistoryProjection, Projection,
    ProjectionError, ProjectionHandle, SalesAnalyticsProjection,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::projections_support::{SECTIONS, append_all, customer, event, workload};

/// Long enough for Kafka group joins on a shared machine.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn unique(name: &str) -> String {
    format!("busfeed-{name}-{}", uuid::Uuid::new_v4().simple())
}

pub fn fold<P: Projection>(mut model: P, log: &[Envelope]) -> P {
    for envelope in log {
        model.apply(envelope).unwrap();
    }
    model
}

/// Every query of the three read models, for the two events of the workload and its customers,
/// one line per query so a difference names the query.
pub fn answers(
    seats: &AvailableSeatsProjection,
    sales: &SalesAnalyticsProjection,
    customers: &CustomerHistoryProjection,
) -> Vec<String> {
    let mut lines = vec![format!("total revenue = {:?}", sales.get_total_revenue_all_events())];
    for n in 0..2 {
        let e = event(n);
        lines.push(format!("total available {n} = {}", seats.get_total_available(e)));
        lines.push(format!("metrics {n} = {:?}", sales.get_metrics(e)));
        lines.push(format!("most popular {n} = {:?}", sales.get_most_popular_section(e)));
        lines.push(format!("attendees {n} = {:?}", customers.get_event_attendees(e)));
        for section in SECTIONS {
            lines.push(format!("availability {n} {section} = {:?}", seats.get_availability(e, section)));
            lines.push(format!("has 2 {n} {section} = {}", seats.has_availability(e, section, 2)));
        }
    }
    for currency in [Currency::EUR, Currency::USD] {
        lines.push(format!("top spenders {currency:?} = {:?}", customers.get_top_spenders(currency, usize::MAX)));
    }
    for n in 0..997 {
        let c = customer(n);
        lines.push(format!("profile {n} = {:?}", customers.get_customer_profile(c)));
        lines.push(format!("attended {n} = {}", customers.has_attended_event(c, event(0))));
    }
    lines
}

/// The three read models, shared with their runners.
#[derive(Clone)]
pub struct Models {
    pub seats: ProjectionHandle<AvailableSeatsProjection>,
    pub sales: ProjectionHandle<SalesAnalyticsProjection>,
    pub customers: ProjectionHandle<CustomerHistoryProjection>,
}

impl Models {
    pub fn new() -> Self {
        Self {
            seats: ProjectionHandle::new(AvailableSeatsProjection::new()),
            sales: ProjectionHandle::new(SalesAnalyticsProjection::new()),
            customers: ProjectionHandle::new(CustomerHistoryProjection::new()),
        }
    }

    pub fn answers(&self) -> Vec<String> {
        answers(&self.seats.snapshot(), &self.sales.snapshot(), &self.customers.snapshot())
    }

    /// The answers of models rebuilt from `log`, and checks the bus-fed models are equal to them
    /// as values too.
    pub fn assert_match_rebuild(&self, log: &[Envelope]) {
        let (seats, sales, customers) = (
            fold(AvailableSeatsProjection::new(), log),
            fold(SalesAnalyticsProjection::new(), log),
            fold(CustomerHistoryProjection::new(), log),
        );
        assert_eq!(self.answers(), answers(&seats, &sales, &customers));
        assert_eq!(self.seats.snapshot(), seats);
        assert_eq!(self.sales.snapshot(), sales);
        assert_eq!(self.customers.snapshot(), customers);
    }

    pub async fn wait_for(&self, position: u64) -> Result<(), ProjectionError> {
        self.seats.wait_for_position(position, WAIT).await?;
        self.sales.wait_for_position(position, WAIT).await?;
        self.customers.wait_for_position(position, WAIT).await
    }

    /// One runner per model, each in its own consumer group `{group}-{model}`.
    pub async fn start(&self, bus: &dyn EventBus, topics: &[String], group: &str) -> Runners {
        let config = BusRunnerConfig::default();
        let group = |name: &str| format!("{group}-{name}");
        Runners {
            seats: BusProjectionRunner::start(bus, topics, &group("seats"), self.seats.clone(), config).await.unwrap(),
            sales: BusProjectionRunner::start(bus, topics, &group("sales"), self.sales.clone(), config).await.unwrap(),
            customers: BusProjectionRunner::start(bus, topics, &group("customers"), self.customers.clone(), config)
                .await
                .unwrap(),
        }
    }
}

pub struct Runners {
    seats: BusProjectionRunner<AvailableSeatsProjection>,
    sales: BusProjectionRunner<SalesAnalyticsProjection>,
    customers: BusProjectionRunner<CustomerHistoryProjection>,
}

impl Runners {
    pub async fn stop(self) {
        let stopped = [self.seats.stop().await, self.sales.stop().await, self.customers.stop().await];
        let errors: Vec<String> = stopped.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "runners failed: {errors:?}");
    }

    /// Waits until every model has reached `position`; on a timeout, reports why the runners
    /// stopped (if they did) rather than only that they were late.
    pub async fn wait_for(self, models: &Models, position: u64) -> Self {
        if let Err(timeout) = models.wait_for(position).await {
            self.stop().await;
            panic!("{timeout}");
        }
        self
    }
}

pub fn relay(store: &Arc<dyn EventStore>, bus: &Arc<dyn EventBus>, router: &TopicRouter) -> OutboxRelay {
    let config = RelayConfig {
        batch_size: 16,
        retry: RetryPolicy { min_delay: Duration::from_millis(5), ..RetryPolicy::default() },
        ..RelayConfig::default()
    };
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    OutboxRelay::new(Arc::clone(store), Arc::clone(bus), checkpoints, router.clone(), config)
}

/// A random ticketing workload goes through the relay onto all four topics; the runners are
/// restarted half way while the relay is still publishing; at the end the bus-fed models answer
/// every query exactly as models rebuilt from the store. A probe group shows the messages really
/// arrive out of global order.
pub async fn bus_fed_models_answer_as_the_store_rebuild(bus: Arc<dyn EventBus>) {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let router = TopicRouter::new(unique("topics"));
    let topics = router.topics_for_categories(TICKETING_CATEGORIES);
    let relay = relay(&store, &bus, &router).spawn();
    let models = Models::new();
    let group = unique("models");
    let runners = models.start(&*bus, &topics, &group).await;

    let actions = workload(300);
    let (first, second) = actions.split_at(actions.len() / 2);
    append_all(&*store, first, 7).await;
    // Restart once the runners are under way, while the relay is still publishing.
    let under_way = store.head_position().await.unwrap() / 3;
    runners.wait_for(&models, under_way).await.stop().await;
    let runners = models.start(&*bus, &topics, &group).await;
    append_all(&*store, second, 7).await;
    let head = store.head_position().await.unwrap();
    runners.wait_for(&models, head).await.stop().await;
    relay.stop().await.unwrap();

    let log = store.read_all(0, usize::MAX).await.unwrap();
    assert!(log.len() > 2_000, "a workload of {} events", log.len());
    models.assert_match_rebuild(&log);

    let mut probe = bus.subscribe(&topics, &unique("probe")).await.unwrap();
    let mut arrival = Vec::with_capacity(log.len());
    while arrival.len() < log.len() {
        let delivery = tokio::time::timeout(WAIT, probe.next()).await.unwrap().unwrap().unwrap();
        arrival.push(delivery.envelope().global_position);
    }
    assert!(!arrival.is_sorted(), "the bus delivered in global order: the test proves nothing");
}

/// An [`EventBus`] that counts the deliveries its subscriptions have handed out, so a test can
/// wait until a runner holds a message instead of sleeping.
pub struct CountingBus {
    pub inner: Arc<dyn EventBus>,
    pub delivered: watch::Sender<usize>,
}

impl CountingBus {
    pub fn new(inner: Arc<dyn EventBus>) -> Self {
        Self { inner, delivered: watch::channel(0).0 }
    }

    pub async fn wait_for_deliveries(&self, count: usize) {
        let mut delivered = self.delivered.subscribe();
        tokio::time::timeout(WAIT, delivered.wait_for(|n| *n >= count)).await.unwrap().unwrap();
    }
}

#[async_trait]
impl EventBus for CountingBus {
    async fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<(), EventBusError> {
        self.inner.publish_batch(messages).await
    }

    async fn subscribe(
        &self,
        topics: &[String],
        group: &str,
    ) -> Result<BoxStream<'static, Result<Delivery, EventBusError>>, EventBusError> {
        let delivered = self.delivered.clone();
        let inner = self.inner.subscribe(topics, group).await?;
        Ok(Box::pin(inner.inspect(move |_| delivered.send_modify(|n| *n += 1))))
    }
}
