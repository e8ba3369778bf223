//! # boxoffice
//!
//! An embeddable, event-sourced ticketing engine.
//!
//! The crate is layered; a module only uses the layers listed before it:
//!
//! - [`framework`]: the generic [`Reducer`](framework::Reducer) trait, [`Effect`](framework::Effect)
//!   values, the [`Store`](framework::Store) runtime, clocks and the reducer test harness.
//! - [`domain`]: validated value types (ids, money, capacity, seat numbers, venues, pricing tiers).
//! - [`aggregates`]: Event, Inventory, Reservation and Payment as pure reducers, and the
//!   [`Ticketing`](aggregates::Ticketing) composite that wires the reservation saga between them.
//!
//! [`prelude`] re-exports the types most programs need.

pub mod aggregates;
pub mod domain;
pub mod framework;
pub mod prelude;
