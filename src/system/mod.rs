//! The assembly: command handling over the event store, the reservation saga, durable expiry of
//! holds and the [`TicketingSystem`] facade.

mod command_context;
mod repository;
mod stream_journal;

pub use command_context::CommandContext;
pub use repository::{CommandError, Repository, RepositoryConfig, RetryPolicy};
pub use stream_journal::{SCHEMA_VERSION, StreamJournal};
