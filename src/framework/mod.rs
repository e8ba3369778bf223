//! Generic machinery for pure reducers: the [`Reducer`] trait, [`Effect`] values, the [`Store`]
//! runtime that executes them, injectable [`Clock`]s and the [`ReducerTest`] harness. Nothing in
//! here knows about tickets.

mod clock;
mod effect;
mod journal;
mod message;
mod reducer;
mod reducer_test;
mod store;

pub use clock::{Clock, FixedClock, SystemClock};
pub use effect::Effect;
pub use journal::{Journal, JournalError, MemoryJournal};
pub use message::{Message, MessageKind};
pub use reducer::{Effects, Reducer};
pub use reducer_test::{ReducerOutcome, ReducerTest, ReducerTestError};
pub use store::{ActionOutcome, PersistedObserver, Store, StoreError};
