//! Read models folded from the global log: the [`Projection`] trait, the three ticketing read
//! models ([`AvailableSeatsProjection`], [`SalesAnalyticsProjection`],
//! [`CustomerHistoryProjection`]), the [`ProjectionHandle`] readers share, and the
//! [`ProjectionRunner`] that feeds a model from the event store with checkpoints and rebuilds it
//! without interrupting queries, or the [`BusProjectionRunner`] that feeds it from the event
//! bus's topics in global order (rebuilds still come from the store).
//!
//! Each read model turns a decoded event into row changes ([`SeatChange`], [`SalesChange`],
//! [`CustomerChange`]) once; the in-memory models apply them to maps, and with the `postgres`
//! feature `PostgresReadModels` applies the same changes to tables, with each model's checkpoint
//! in the same transaction. The query traits ([`AvailableSeatsQueries`], [`SalesAnalyticsQueries`],
//! [`CustomerHistoryQueries`]) give both storages one async query API.

mod available_seats;
mod bus_runner;
mod customer_history;
mod decode;
mod error;
mod handle;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
mod queries;
mod reservation_facts;
mod runner;
mod sales_analytics;

pub use available_seats::{
    AVAILABLE_SEATS_EVENTS, AvailableSeatsProjection, SeatChange, SeatState, SectionAvailability,
};
pub use bus_runner::{BusProjectionRunner, BusRunnerConfig};
pub use customer_history::{
    CUSTOMER_HISTORY_EVENTS, CustomerChange, CustomerHistoryProjection, CustomerProfile, Purchase,
};
pub use decode::decode_ticketing;
pub use error::ProjectionError;
pub use handle::ProjectionHandle;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresReadModels, ReadModel};
pub use projection::Projection;
pub use queries::{AvailableSeatsQueries, CustomerHistoryQueries, SalesAnalyticsQueries};
pub use reservation_facts::{ReservationFacts, average_price, reads_payload};
pub use runner::{ProjectionRunner, RunnerConfig, replay};
pub use sales_analytics::{
    ReservationEnd, SALES_ANALYTICS_EVENTS, SalesAnalyticsProjection, SalesChange, SalesMetrics,
};
