//! One engine per aggregate type, and the routing of a [`TicketingAction`] to the stream it
//! addresses.

use std::sync::Arc;

use super::engine::{CommandError, Committed, Engine, EngineConfig};
use crate::aggregates::{
    AllowanceReducer, EventReducer, HoldStatus, InventoryReducer, PaymentReducer, ReservationReducer, TicketingAction,
    TicketingEnv, TicketsReducer, event_stream, inventory_stream,
};
use crate::domain::{EventId, ReservationId};
use crate::event_store::EventStore;
use crate::system::context::CommandContext;
use uuid::Uuid;

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
    /// Engines writing to `store`, stamping `node` on every event they append.
    pub(crate) fn new(store: &Arc<dyn EventStore>, env: &TicketingEnv, config: EngineConfig, node: Uuid) -> Self {
        Self {
            events: Engine::new(EventReducer, env.event.clone(), Arc::clone(store), config, node),
            inventories: Engine::new(InventoryReducer, env.inventory.clone(), Arc::clone(store), config, node),
            reservations: Engine::new(ReservationReducer, env.reservation.clone(), Arc::clone(store), config, node),
            payments: Engine::new(PaymentReducer, env.payment.clone(), Arc::clone(store), config, node),
            tickets: Engine::new(TicketsReducer, env.tickets.clone(), Arc::clone(store), config, node),
            allowances: Engine::new(AllowanceReducer, (), Arc::clone(store), config, node),
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

    /// Every reservation that took a hold on the inventories of `event_id`'s sections, with its
    /// status, read fresh from the store (another process may have taken or settled some). An
    /// order of several sections holds in each of them and is listed once: `Confirmed` if any of
    /// its holds is (it was bought; the other confirmations are on their way), else `Reserved`
    /// if any is, else `Released`.
    ///
    /// # Errors
    /// [`CommandError`] when a stream cannot be read or the system is stopping.
    #[allow(clippy::result_large_err)] // as `execute`
    pub(crate) async fn holds_of_event(
        &self,
        event_id: EventId,
    ) -> Result<Vec<(ReservationId, HoldStatus)>, CommandError<TicketingAction>> {
        // Stream ids of uuids are always valid: these cannot fail.
        let Ok(stream) = event_stream(event_id) else { return Ok(Vec::new()) };
        let sections = self
            .events
            .read(&stream, true, |s| {
                s.and_then(|s| s.details.as_ref())
                    .map(|d| d.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            })
            .await
            .map_err(|e| e.map_action(TicketingAction::Event))?;
        let mut holds = Vec::new();
        for section in sections.unwrap_or_default() {
            let Ok(stream) = inventory_stream(event_id, &section) else { continue };
            let taken = self
                .inventories
                .read(&stream, true, |i| i.map(|i| i.holds().map(|(id, hold)| (id, hold.status)).collect::<Vec<_>>()))
                .await
                .map_err(|e| e.map_action(TicketingAction::Inventory))?;
            for (reservation_id, status) in taken.unwrap_or_default() {
                merge_hold(&mut holds, reservation_id, status);
            }
        }
        Ok(holds)
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

/// Adds one inventory's hold of `reservation_id` to `holds`, merging it with the holds of the
/// same order in other sections (see [`CommandRouter::holds_of_event`]).
fn merge_hold(holds: &mut Vec<(ReservationId, HoldStatus)>, reservation_id: ReservationId, status: HoldStatus) {
    let rank = |status: HoldStatus| match status {
        HoldStatus::Confirmed => 2,
        HoldStatus::Reserved => 1,
        HoldStatus::Released => 0,
    };
    match holds.iter_mut().find(|(id, _)| *id == reservation_id) {
        Some((_, merged)) if rank(status) > rank(*merged) => *merged = status,
        Some(_) => {}
        None => holds.push((reservation_id, status)),
    }
}

/// Converts an aggregate's outcome into ticketing terms.
#[allow(clippy::result_large_err)]
fn lift<A>(
    outcome: Result<Committed<A>, CommandError<A>>,
    wrap: fn(A) -> TicketingAction,
) -> Result<Committed<TicketingAction>, CommandError<TicketingAction>> {
    match outcome {
        Ok(Committed { events, last_position, recorded }) => {
            Ok(Committed { events: events.into_iter().map(wrap).collect(), last_position, recorded })
        }
        Err(error) => Err(error.map_action(wrap)),
    }
}
