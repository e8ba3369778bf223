//! Where the assembled system keeps its six read models, and the tasks that feed them.

use std::sync::Arc;
use std::time::Duration;

use super::SystemError;
use crate::event_store::{BadEventPolicy, EventStore, FollowStatus, MemoryCheckpointStore};
use crate::projections::{
    AvailableSeatsProjection, AvailableSeatsQueries, CustomerHistoryProjection, CustomerHistoryQueries,
    CustomerTicketsProjection, CustomerTicketsQueries, DailySalesProjection, DailySalesQueries, GateCheckinsProjection,
    GateCheckinsQueries, Projection, ProjectionError, ProjectionHandle, ProjectionRunner, RunnerConfig,
    SalesAnalyticsProjection, SalesAnalyticsQueries,
};
#[cfg(feature = "postgres")]
use crate::projections::{PostgresReadModels, ReadModel};

/// Where a [`TicketingSystem`](super::TicketingSystem) keeps its read models (`AvailableSeats`,
/// `SalesAnalytics`, `CustomerHistory`, `CustomerTickets`, `GateCheckins`, `DailySales`). Queries look the same either way: the system hands out
/// the storage-neutral query traits ([`AvailableSeatsQueries`] and its siblings).
///
/// ```
/// use boxoffice::system::{ReadModelStorage, TicketingSystem};
///
/// let builder = TicketingSystem::builder().read_models(ReadModelStorage::Memory);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Default)]
pub enum ReadModelStorage {
    /// In process memory: each model is folded from the start of the log when the system starts
    /// and kept up to date from its subscription (the default).
    #[default]
    Memory,
    /// In `PostgreSQL` tables, each batch of rows committed with the model's checkpoint in one
    /// transaction, so a restarted system resumes where the tables end and never counts an event
    /// twice; several processes may feed the same tables. The tables must live in the event
    /// store's database and schema (the checkpoints are positions in its log): build them with
    /// `PostgresReadModels::new(store.pool().clone())`.
    #[cfg(feature = "postgres")]
    Postgres(PostgresReadModels),
}

/// The running read models: the query side, cheap to clone, and what feeds it.
pub(super) struct ReadModels {
    queries: ReadModelQueries,
    feeding: Feeding,
}

/// The query side of the read models.
#[derive(Clone)]
pub(super) enum ReadModelQueries {
    Memory {
        seats: ProjectionHandle<AvailableSeatsProjection>,
        sales: ProjectionHandle<SalesAnalyticsProjection>,
        customers: ProjectionHandle<CustomerHistoryProjection>,
        tickets: ProjectionHandle<CustomerTicketsProjection>,
        gates: ProjectionHandle<GateCheckinsProjection>,
        daily: ProjectionHandle<DailySalesProjection>,
    },
    #[cfg(feature = "postgres")]
    Postgres(PostgresReadModels),
}

/// The runners of the in-memory models (boxed in [`Feeding`]: six runners outweigh the
/// `PostgreSQL` variant many times).
struct MemoryRunners {
    seats: ProjectionRunner<AvailableSeatsProjection>,
    sales: ProjectionRunner<SalesAnalyticsProjection>,
    customers: ProjectionRunner<CustomerHistoryProjection>,
    tickets: ProjectionRunner<CustomerTicketsProjection>,
    gates: ProjectionRunner<GateCheckinsProjection>,
    daily: ProjectionRunner<DailySalesProjection>,
}

enum Feeding {
    Memory(Box<MemoryRunners>),
    #[cfg(feature = "postgres")]
    Postgres {
        stop: tokio::sync::watch::Sender<bool>,
        tasks: Vec<(ReadModel, tokio::task::JoinHandle<Result<(), ProjectionError>>)>,
    },
}

async fn run<P: Projection>(
    store: &Arc<dyn EventStore>,
    checkpoints: &Arc<MemoryCheckpointStore>,
    model: P,
    bad_events: BadEventPolicy,
) -> Result<ProjectionRunner<P>, SystemError> {
    let handle = ProjectionHandle::new(model);
    let config = RunnerConfig { bad_events, ..RunnerConfig::default() };
    Ok(ProjectionRunner::start(Arc::clone(store), checkpoints.clone(), handle, config).await?)
}

/// A memory model's name and feeding status, at the position the model itself has applied
/// (which the status reports a moment later).
fn memory_status<P: Projection>(runner: &ProjectionRunner<P>) -> (String, FollowStatus) {
    let mut status = runner.status().borrow().clone();
    status.position = status.position.max(runner.handle().position());
    (runner.handle().name().to_owned(), status)
}

impl ReadModels {
    /// Starts feeding the read models in `storage` from `store`'s log.
    pub(super) async fn start(
        storage: ReadModelStorage,
        store: &Arc<dyn EventStore>,
        bad_events: BadEventPolicy,
    ) -> Result<Self, SystemError> {
        match storage {
            ReadModelStorage::Memory => {
                // A model kept in memory starts empty in every process, so its runner replays the
                // log from 0 whatever a checkpoint says; its checkpoints stay in memory too, where
                // they cannot collide with durable models' checkpoints of the same name.
                let checkpoints = Arc::new(MemoryCheckpointStore::new());
                let seats = run(store, &checkpoints, AvailableSeatsProjection::new(), bad_events).await?;
                let sales = run(store, &checkpoints, SalesAnalyticsProjection::new(), bad_events).await?;
                let customers = run(store, &checkpoints, CustomerHistoryProjection::new(), bad_events).await?;
                let tickets = run(store, &checkpoints, CustomerTicketsProjection::new(), bad_events).await?;
                let gates = run(store, &checkpoints, GateCheckinsProjection::new(), bad_events).await?;
                let daily = run(store, &checkpoints, DailySalesProjection::new(), bad_events).await?;
                Ok(Self {
                    queries: ReadModelQueries::Memory {
                        seats: seats.handle().clone(),
                        sales: sales.handle().clone(),
                        customers: customers.handle().clone(),
                        tickets: tickets.handle().clone(),
                        gates: gates.handle().clone(),
                        daily: daily.handle().clone(),
                    },
                    feeding: Feeding::Memory(Box::new(MemoryRunners {
                        seats,
                        sales,
                        customers,
                        tickets,
                        gates,
                        daily,
                    })),
                })
            }
            #[cfg(feature = "postgres")]
            ReadModelStorage::Postgres(models) => {
                let (stop, stop_rx) = tokio::sync::watch::channel(false);
                let batch_size = RunnerConfig::default().batch_size;
                let tasks = ReadModel::ALL
                    .into_iter()
                    .map(|model| {
                        let (models, store, stop) = (models.clone(), Arc::clone(store), stop_rx.clone());
                        (
                            model,
                            tokio::spawn(
                                async move { models.follow(store, model, batch_size, bad_events, stop).await },
                            ),
                        )
                    })
                    .collect();
                Ok(Self { queries: ReadModelQueries::Postgres(models), feeding: Feeding::Postgres { stop, tasks } })
            }
        }
    }

    /// The query side.
    /// Each read model's name and how its feeding is doing.
    pub(super) fn statuses(&self) -> Vec<(String, FollowStatus)> {
        match &self.feeding {
            Feeding::Memory(runners) => {
                let MemoryRunners { seats, sales, customers, tickets, gates, daily } = &**runners;
                vec![
                    memory_status(seats),
                    memory_status(sales),
                    memory_status(customers),
                    memory_status(tickets),
                    memory_status(gates),
                    memory_status(daily),
                ]
            }
            #[cfg(feature = "postgres")]
            Feeding::Postgres { .. } => match &self.queries {
                ReadModelQueries::Postgres(models) => ReadModel::ALL
                    .into_iter()
                    .map(|model| (model.name().to_owned(), models.status(model).borrow().clone()))
                    .collect(),
                ReadModelQueries::Memory { .. } => Vec::new(),
            },
        }
    }

    pub(super) fn queries(&self) -> ReadModelQueries {
        self.queries.clone()
    }

    /// Stops feeding after the batch in hand; errors that had stopped a model are logged.
    pub(super) async fn stop(self) {
        let results = match self.feeding {
            Feeding::Memory(runners) => {
                let MemoryRunners { seats, sales, customers, tickets, gates, daily } = *runners;
                vec![
                    seats.stop().await,
                    sales.stop().await,
                    customers.stop().await,
                    tickets.stop().await,
                    gates.stop().await,
                    daily.stop().await,
                ]
            }
            #[cfg(feature = "postgres")]
            Feeding::Postgres { stop, tasks } => {
                stop.send_replace(true);
                let mut results = Vec::with_capacity(tasks.len());
                for (model, task) in tasks {
                    let stopped = || ProjectionError::Stopped { projection: model.name().to_owned() };
                    results.push(task.await.unwrap_or_else(|_| Err(stopped())));
                }
                results
            }
        };
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, "a read model stopped with an error");
        }
    }
}

impl ReadModelQueries {
    pub(super) fn available_seats(&self) -> Arc<dyn AvailableSeatsQueries> {
        match self {
            Self::Memory { seats, .. } => Arc::new(seats.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    pub(super) fn sales_analytics(&self) -> Arc<dyn SalesAnalyticsQueries> {
        match self {
            Self::Memory { sales, .. } => Arc::new(sales.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    pub(super) fn customer_history(&self) -> Arc<dyn CustomerHistoryQueries> {
        match self {
            Self::Memory { customers, .. } => Arc::new(customers.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    pub(super) fn customer_tickets(&self) -> Arc<dyn CustomerTicketsQueries> {
        match self {
            Self::Memory { tickets, .. } => Arc::new(tickets.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    pub(super) fn gate_checkins(&self) -> Arc<dyn GateCheckinsQueries> {
        match self {
            Self::Memory { gates, .. } => Arc::new(gates.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    pub(super) fn daily_sales(&self) -> Arc<dyn DailySalesQueries> {
        match self {
            Self::Memory { daily, .. } => Arc::new(daily.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => Arc::new(models.clone()),
        }
    }

    /// Waits until every model has applied the log up to `position`.
    pub(super) async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        match self {
            Self::Memory { seats, sales, customers, tickets, gates, daily } => {
                seats.wait_for_position(position, timeout).await?;
                sales.wait_for_position(position, timeout).await?;
                customers.wait_for_position(position, timeout).await?;
                tickets.wait_for_position(position, timeout).await?;
                gates.wait_for_position(position, timeout).await?;
                daily.wait_for_position(position, timeout).await
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(models) => {
                for model in ReadModel::ALL {
                    models.wait_for_position(model, position, timeout).await?;
                }
                Ok(())
            }
        }
    }
}
