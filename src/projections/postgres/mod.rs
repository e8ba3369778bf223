//! The six read models kept in `PostgreSQL` tables (feature `postgres`).
//!
//! The same row changes as the in-memory models ([`SeatChange`](super::SeatChange),
//! [`SalesChange`](super::SalesChange), [`CustomerChange`](super::CustomerChange),
//! [`TicketChange`](super::TicketChange), [`GateChange`](super::GateChange),
//! [`DailyChange`](super::DailyChange)) are computed
//! from each decoded event, coalesced per batch and written with set-based statements. A batch and
//! the model's row in `checkpoints` are written in one transaction that first locks that row and
//! skips events at or below it, so a redelivered or replayed event never counts twice, even with
//! two writers (an exactly-once effect).

mod customers;
mod daily;
mod gates;
mod read_models;
mod sales;
mod seats;
mod tickets;

pub use read_models::{PostgresReadModels, ReadModel};
