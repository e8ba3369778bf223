//! One repository per aggregate type, and the routing of a [`TicketingAction`] to the stream it
//! addresses.

use std::sync::Arc;

use smallvec::SmallVec;

use super::{CommandError, Repository, RepositoryConfig};
use crate::aggregates::{
    EventReducer, InventoryReducer, PaymentReducer, ReservationAction, ReservationReducer, TicketingAction,
    TicketingEnv,
};
use crate::event_store::{EventStore, StreamId};
use crate::framework::{Clock, PersistedObserver};

/// Events a command appended.
pub type Appended = SmallVec<[TicketingAction; 4]>;

/// Sends commands to the aggregate instance they name.
#[derive(Clone)]
pub struct CommandRouter {
    /// Event aggregates.
    pub events: Repository<EventReducer>,
    /// Inventories.
    pub inventories: Repository<InventoryReducer>,
    /// Reservations.
    pub reservations: Repository<ReservationReducer>,
    /// Payments.
    pub payments: Repository<PaymentReducer>,
}

impl CommandRouter {
    /// Four repositories over `store`, sharing `env`'s clock and gateway; `observer` (if any)
    /// hears about every batch of events any of them appends.
    #[must_use]
    pub fn new(
        store: &Arc<dyn EventStore>,
        env: &TicketingEnv,
        clock: &Arc<dyn Clock>,
        config: RepositoryConfig,
        observer: Option<&PersistedObserver<TicketingAction>>,
    ) -> Self {
        fn lift<A: Clone + 'static>(
            observer: Option<&PersistedObserver<TicketingAction>>,
            into: fn(A) -> TicketingAction,
        ) -> Option<PersistedObserver<A>> {
            let observer = Arc::clone(observer?);
            Some(Arc::new(move |events: &[A]| {
                let events: Vec<TicketingAction> = events.iter().cloned().map(into).collect();
                observer(&events);
            }))
        }
        Self {
            events: Repository::new(
                EventReducer,
                env.event.clone(),
                Arc::clone(clock),
                Arc::clone(store),
                lift(observer, TicketingAction::Event),
                config,
            ),
            inventories: Repository::new(
                InventoryReducer,
                env.inventory.clone(),
                Arc::clone(clock),
                Arc::clone(store),
                lift(observer, TicketingAction::Inventory),
                config,
            ),
            reservations: Repository::new(
                ReservationReducer,
                env.reservation.clone(),
                Arc::clone(clock),
                Arc::clone(store),
                lift(observer, TicketingAction::Reservation),
                config,
            ),
            payments: Repository::new(
                PaymentReducer,
                env.payment.clone(),
                Arc::clone(clock),
                Arc::clone(store),
                lift(observer, TicketingAction::Payment),
                config,
            ),
        }
    }

    /// Handles `command` on its stream.
    ///
    /// # Errors
    /// The command's rejection, or a storage / contention error; see [`CommandError`].
    pub async fn execute(&self, command: TicketingAction) -> Result<Appended, CommandError<TicketingAction>> {
        let Ok(Some(stream)) = command.stream() else { return Err(CommandError::NotACommand(command)) };
        self.execute_on(&stream, command).await
    }

    async fn execute_on(
        &self,
        stream: &StreamId,
        command: TicketingAction,
    ) -> Result<Appended, CommandError<TicketingAction>> {
        match command {
            TicketingAction::Event(c) => self
                .events
                .execute(stream, c)
                .await
                .map(|events| events.into_iter().map(TicketingAction::Event).collect())
                .map_err(|e| e.map_action(TicketingAction::Event)),
            TicketingAction::Inventory(c) => self
                .inventories
                .execute(stream, c)
                .await
                .map(|events| events.into_iter().map(TicketingAction::Inventory).collect())
                .map_err(|e| e.map_action(TicketingAction::Inventory)),
            TicketingAction::Reservation(c) => self
                .reservations
                .execute(stream, c)
                .await
                .map(|events| events.into_iter().map(TicketingAction::Reservation).collect())
                .map_err(|e| e.map_action(TicketingAction::Reservation)),
            TicketingAction::Payment(c) => self
                .payments
                .execute(stream, c)
                .await
                .map(|events| events.into_iter().map(TicketingAction::Payment).collect())
                .map_err(|e| e.map_action(TicketingAction::Payment)),
        }
    }
}

impl CommandRouter {
    /// Handles a Reservation command.
    ///
    /// # Errors
    /// As [`CommandRouter::execute`].
    pub async fn reservation(&self, command: ReservationAction) -> Result<Appended, CommandError<TicketingAction>> {
        self.execute(TicketingAction::Reservation(command)).await
    }

    /// Waits until every effect the four aggregates started has finished.
    pub async fn settled(&self) {
        self.events.settled().await;
        self.inventories.settled().await;
        self.reservations.settled().await;
        self.payments.settled().await;
    }
}
