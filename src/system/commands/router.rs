//! One engine per aggregate type, and the routing of a [`TicketingAction`] to the stream it
//! addresses.

use std::sync::Arc;

use super::engine::{CommandError, Committed, Engine, EngineConfig};
use crate::aggregates::{
    AllowanceReducer, EventReducer, InventoryReducer, PaymentReducer, ReservationReducer, TicketingAction,
    TicketingEnv, TicketsReducer,
};
use crate::event_store::EventStore;
use crate::system::context::CommandContext;

/// Sends commands to the aggregate instance they name.
#[derive(Clone)]
pub(crate) struct CommandRouter {
    /// Event aggregates.
    pub(crate) events: Engine<EventReducer>,
    /// Inventories.
    pub(crate) inventories: Engine<InventoryReducer>,
    /// Reservations.
    pub(crate) reservations: Engine<ReservationReducer>,
    /// Payments.
    pub(crate) payments: Engine<PaymentReducer>,
    /// The tickets of purchases.
    pub(crate) tickets: Engine<TicketsReducer>,
    /// Customers' allowances of limited events.
    pub(crate) allowances: Engine<AllowanceReducer>,
}

impl CommandRouter {
    /// Six engines over `store`.
    pub(crate) fn new(store: &Arc<dyn EventStore>, env: &TicketingEnv, config: EngineConfig) -> Self {
        Self {
            events: Engine::new(EventReducer, env.event.clone(), Arc::clone(store), config),
            inventories: Engine::new(InventoryReducer, env.inventory.clone(), Arc::clone(store), config),
            reservations: Engine::new(ReservationReducer, env.reservation.clone(), Arc::clone(store), config),
            payments: Engine::new(PaymentReducer, env.payment.clone(), Arc::clone(store), config),
            tickets: Engine::new(TicketsReducer, env.tickets.clone(), Arc::clone(store), config),
            allowances: Engine::new(AllowanceReducer, (), Arc::clone(store), config),
        }
    }

    /// Handles `command` on its stream on behalf of `context`.
    ///
    /// # Errors
    /// The command's rejection, or a storage / contention error; see [`CommandError`].
    #[allow(clippy::result_large_err)] // the rejection is the answer, returned by value once
    pub(crate) async fn execute(
        &self,
        command: TicketingAction,
        context: CommandContext,
    ) -> Result<Committed<TicketingAction>, CommandError<TicketingAction>> {
        let Ok(Some(stream)) = command.stream() else { return Err(CommandError::NotACommand(command)) };
        match command {
            TicketingAction::Event(c) => lift(self.events.execute(&stream, c, context).await, TicketingAction::Event),
            TicketingAction::Inventory(c) => {
                lift(self.inventories.execute(&stream, c, context).await, TicketingAction::Inventory)
            }
            TicketingAction::Reservation(c) => {
                lift(self.reservations.execute(&stream, c, context).await, TicketingAction::Reservation)
            }
            TicketingAction::Payment(c) => {
                lift(self.payments.execute(&stream, c, context).await, TicketingAction::Payment)
            }
            TicketingAction::Tickets(c) => {
                lift(self.tickets.execute(&stream, c, context).await, TicketingAction::Tickets)
            }
            TicketingAction::Allowance(c) => {
                lift(self.allowances.execute(&stream, c, context).await, TicketingAction::Allowance)
            }
        }
    }

    /// Ends every stream worker once its queue is empty (see `Engine::retire_workers`).
    pub(crate) fn retire_workers(&self) {
        self.events.retire_workers();
        self.inventories.retire_workers();
        self.reservations.retire_workers();
        self.payments.retire_workers();
        self.tickets.retire_workers();
        self.allowances.retire_workers();
    }

    /// Waits until every background snapshot has been written.
    pub(crate) async fn snapshots_written(&self) {
        self.events.snapshots_written().await;
        self.inventories.snapshots_written().await;
        self.reservations.snapshots_written().await;
        self.payments.snapshots_written().await;
        self.tickets.snapshots_written().await;
        self.allowances.snapshots_written().await;
    }
}

/// Converts an aggregate's outcome into ticketing terms.
#[allow(clippy::result_large_err)]
fn lift<A>(
    outcome: Result<Committed<A>, CommandError<A>>,
    wrap: fn(A) -> TicketingAction,
) -> Result<Committed<TicketingAction>, CommandError<TicketingAction>> {
    match outcome {
        Ok(Committed { events, last_position }) => {
            Ok(Committed { events: events.into_iter().map(wrap).collect(), last_position })
        }
        Err(error) => Err(error.map_action(wrap)),
    }
}
