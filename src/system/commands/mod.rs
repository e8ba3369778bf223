//! Command handling: the [`engine`] that runs each aggregate's reducer over the event store, the
//! [`router`] that sends a ticketing command to its aggregate, and the one [`RetryPolicy`].

mod engine;
mod retry;
mod router;

pub use engine::EngineConfig;
pub(crate) use engine::{CommandError, Committed};
pub use retry::RetryPolicy;
pub(crate) use router::CommandRouter;
