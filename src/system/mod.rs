//! The assembly: the command engine over the event store, the reservation saga fed from the log,
//! the payment gateway port with payment reconciliation, durable expiry of holds, the read models (in memory or
//! `PostgreSQL`) and the [`TicketingSystem`] facade.

mod commands;
mod config;
mod context;
mod error;
mod expiry;
mod facade;
mod follower;
mod gateway;
mod health;
mod open_payments;
mod peers;
mod read_models;
mod reconcile;
mod reservation_watch;
mod saga;
mod telemetry;
mod vault;
mod writers;

pub use commands::EngineConfig;
pub use config::{GatewayChoice, SystemConfig};
pub use error::SystemError;
pub use facade::{
    CheckIn, EventSpec, Gate, HeldSeats, IssuedTicket, OfflineScan, OrderLineRequest, OrderRequest, PaymentDetails,
    Receipt, RefundRequest, ReserveRequest, TicketRefund, TicketRefundRequest, TicketingSystem, TicketingSystemBuilder,
};
pub use gateway::{ChargeStatus, GatewayOutcome, PaymentGateway, SimulatedGateway};
#[cfg(feature = "stripe")]
pub use gateway::{StripeConfig, StripeGateway, StripeSetupError};
pub use health::{ConsumerHealth, Health};
pub use read_models::ReadModelStorage;
pub use reconcile::Reconciliation;
