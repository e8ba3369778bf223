//! Generic machinery for pure reducers: the [`Reducer`] trait, [`Effect`] values, the
//! [`Message`] classification, injectable [`Clock`]s and the [`ReducerTest`] harness. Nothing in
//! here knows about tickets; the runtime that executes reducers over an event store is the
//! system's command engine.

mod clock;
mod effect;
mod message;
mod reducer;
mod reducer_test;

pub use clock::{Clock, FixedClock, SystemClock};
pub use effect::Effect;
pub use message::{Message, MessageKind};
pub use reducer::{Effects, Reducer, event_sourced};
pub use reducer_test::{ReducerOutcome, ReducerTest, ReducerTestError};
