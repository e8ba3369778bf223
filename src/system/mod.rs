//! The assembly: the command engine over the event store, the reservation saga fed from the log,
//! the payment gateway port, durable expiry of holds, the read models (in memory or
//! `PostgreSQL`) and the [`TicketingSystem`] facade.

mod commands;
mod config;
mod context;
mod error;
mod expiry;
mod facade;
mod follower;
mod gateway;
mod read_models;
mod reservation_watch;
mod saga;

pub use commands::EngineConfig;
pub use config::SystemConfig;
pub use error::SystemError;
pub use facade::{
    EventSpec, HeldSeats, PaymentDetails, Receipt, ReserveRequest, TicketingSystem, TicketingSystemBuilder,
};
pub use gateway::{PaymentGateway, SimulatedGateway};
pub use read_models::ReadModelStorage;
