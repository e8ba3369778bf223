//! # boxoffice
//!
//! An embeddable, event-sourced ticketing engine.
//!
//! The crate is layered; a module only uses the layers listed before it:
//!
//! - [`framework`]: the generic [`Reducer`](framework::Reducer) trait, [`Effect`](framework::Effect)
//!   values, the [`Store`](framework::Store) runtime, clocks and the reducer test harness.
//! - `domain`: validated value types (ids, money, capacity, venues, pricing tiers).
//! - `aggregates`: Event, Inventory, Reservation and Payment as pure reducers.

pub mod event_bus;
pub mod framework;
