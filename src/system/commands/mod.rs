//! Command handling: the [`engine`] that runs each aggregate's reducer over the event store, the
//! [`router`] that sends a ticketing command to its aggregate.

mod engine;
mod router;

pub use engine::EngineConfig;
pub(crate) use engine::{CommandError, Committed};
pub(crate) use router::CommandRouter;
