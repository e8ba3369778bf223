//! Read models folded from the global log: the [`Projection`] trait, the six ticketing read
//! models ([`AvailableSeatsProjection`], [`SalesAnalyticsProjection`],
//! [`CustomerHistoryProjection`], [`CustomerTicketsProjection`], [`GateCheckinsProjection`],
//! [`DailySalesProjection`]), the [`ProjectionHandle`] readers share, and the
//! [`ProjectionRunner`] that feeds a model from the event store with checkpoints and rebuilds it
//! without interrupting queries, or the [`BusProjectionRunner`] that feeds it from the event
//! bus's topics in global order (rebuilds still come from the store).
//!
//! Each read model turns a decoded event into row changes once; the in-memory models apply them
//! to maps, and with the `postgres`
//! feature `PostgresReadModels` applies the same changes to tables, with each model's checkpoint
//! in the same transaction. The query traits ([`AvailableSeatsQueries`], [`SalesAnalyticsQueries`],
//! [`CustomerHistoryQueries`], [`CustomerTicketsQueries`], [`GateCheckinsQueries`],
//! [`DailySalesQueries`]) give both storages one async query API.

mod available_seats;
mod bus_runner;
mod customer_history;
mod customer_tickets;
mod daily_sales;
mod decode;
mod error;
mod gate_checkins;
mod handle;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
mod queries;
mod reservation_facts;
mod runner;
mod sales_analytics;
#[cfg(test)]
mod test_log;

#[cfg(feature = "postgres")]
pub(crate) use available_seats::AVAILABLE_SEATS_EVENTS;
pub use available_seats::{AvailableSeatsProjection, SectionAvailability};
#[cfg(feature = "postgres")]
pub(crate) use available_seats::{SeatChange, SeatState};
pub use bus_runner::{BusProjectionRunner, BusRunnerConfig};
#[cfg(feature = "postgres")]
pub(crate) use customer_history::CUSTOMER_HISTORY_EVENTS;
#[cfg(feature = "postgres")]
pub(crate) use customer_history::CustomerChange;
pub use customer_history::{CustomerHistoryProjection, CustomerProfile, Purchase};
#[cfg(feature = "postgres")]
pub(crate) use customer_tickets::{CUSTOMER_TICKETS_EVENTS, TicketChange};
pub use customer_tickets::{CustomerTicketsProjection, HeldTicket, Order};
#[cfg(feature = "postgres")]
pub(crate) use daily_sales::{DAILY_SALES_EVENTS, DailyChange};
pub use daily_sales::{DailySalesProjection, DaySales, utc_day};
pub(crate) use decode::decode_ticketing;
pub use error::ProjectionError;
#[cfg(feature = "postgres")]
pub(crate) use gate_checkins::{GATE_CHECKINS_EVENTS, GateChange};
pub use gate_checkins::{GateCheckinsProjection, GateCounts};
pub use handle::ProjectionHandle;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresReadModels, ReadModel};
pub use projection::Projection;
use projection::projection_bookkeeping;
pub use queries::{
    AvailableSeatsQueries, CustomerHistoryQueries, CustomerTicketsQueries, DailySalesQueries, GateCheckinsQueries,
    SalesAnalyticsQueries,
};
pub(crate) use reservation_facts::{ReservationFacts, average_price, reads_payload, refund_split};
pub use runner::{ProjectionRunner, RunnerConfig, replay};
#[cfg(feature = "postgres")]
pub(crate) use sales_analytics::SALES_ANALYTICS_EVENTS;
#[cfg(feature = "postgres")]
pub(crate) use sales_analytics::{ReservationEnd, SalesChange};
pub use sales_analytics::{SalesAnalyticsProjection, SalesMetrics};
