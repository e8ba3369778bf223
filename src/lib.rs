//! # boxoffice
//!
//! An embeddable, event-sourced ticketing engine.
//!
//! The crate is layered; a module only uses the layers listed before it:
//!
//! - [`framework`]: the generic [`Reducer`](framework::Reducer) trait, [`Effect`](framework::Effect)
//!   values, the [`Store`](framework::Store) runtime, clocks and the reducer test harness.
//! - [`event_store`]: the [`EventStore`](event_store::EventStore) trait over an append-only log of
//!   JSON events, with in-memory and `PostgreSQL` backends.
//! - [`event_bus`]: the [`EventBus`](event_bus::EventBus) trait with in-memory and Kafka backends,
//!   the outbox relay from the store to the bus, and consumer-side deduplication.
//! - [`domain`]: validated value types (ids, money, capacity, seat numbers, venues, pricing tiers).
//! - [`aggregates`]: Event, Inventory, Reservation and Payment as pure reducers, and the
//!   [`Ticketing`](aggregates::Ticketing) composite that wires the reservation saga between them.
//! - [`projections`]: the [`Projection`](projections::Projection) trait, the `AvailableSeats`,
//!   `SalesAnalytics` and `CustomerHistory` read models, and the checkpointed runner that feeds them.
//! - [`system`]: the assembled [`TicketingSystem`](system::TicketingSystem): command handling over
//!   the event store (per-stream workers, group commit, optimistic concurrency with retries), the
//!   saga driven from the log, durable expiry of holds, and the read models kept in memory or in
//!   `PostgreSQL`.
//!
//! [`prelude`] re-exports the types most programs need.

pub mod aggregates;
pub mod domain;
pub mod event_bus;
pub mod event_store;
pub mod framework;
pub mod prelude;
pub mod projections;
pub mod system;
