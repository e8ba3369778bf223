//! The assembly: command handling over the event store, the reservation saga driven from the
//! log, durable expiry of holds, the read models (in memory or `PostgreSQL`) and the
//! [`TicketingSystem`] facade.

mod command_context;
mod config;
mod error;
mod expiry;
mod log_follower;
mod read_models;
mod repository;
mod reservation_watch;
mod router;
mod saga;
mod stream_journal;
mod ticketing_system;

pub use command_context::CommandContext;
pub use config::SystemConfig;
pub use error::SystemError;
pub use expiry::ExpiryIndex;
pub use log_follower::LogFollower;
pub use read_models::ReadModelStorage;
pub use repository::{CommandError, Repository, RepositoryConfig, RetryPolicy};
pub use reservation_watch::{ReservationWaiter, ReservationWatch};
pub use router::{Appended, CommandRouter};
pub use saga::Saga;
pub use stream_journal::{SCHEMA_VERSION, StreamJournal};
pub use ticketing_system::{
    EventSpec, HeldSeats, PaymentDetails, Purchase, ReserveRequest, TicketingSystem, TicketingSystemBuilder,
};
