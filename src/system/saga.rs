//! Drives the reservation saga from persisted events: each event read from the log (or from the
//! bus) is turned into its follow-up commands by [`saga_reactions`], which are sent to their
//! aggregates. Every command is idempotent, so an event handled twice (after a crash, by two
//! processes, or by a redelivering broker) changes nothing the second time.

use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use tracing::Instrument;

use super::{CommandContext, CommandError, CommandRouter};
use crate::aggregates::{
    EventAction, HoldStatus, PaymentAction, ReservationAction, TicketingAction, inventory_stream, rejection_reactions,
    saga_reactions,
};
use crate::domain::PaymentId;

/// How often a reaction that failed for a non-business reason (storage, contention) is retried
/// before the saga gives up on it and leaves it to the expiry sweep.
const ATTEMPTS: u32 = 5;

/// Sends the saga's follow-up commands.
#[derive(Clone)]
pub struct Saga {
    router: CommandRouter,
}

impl Saga {
    /// A saga dispatching through `router`.
    #[must_use]
    pub fn new(router: CommandRouter) -> Self {
        Self { router }
    }

    /// Starts, in a task of its own, everything that must follow `events`, which this process
    /// has just appended: the saga's fast path, which does not wait for the log follower to read
    /// the events back. The follower still sees them and reacts too; every command is idempotent,
    /// so its second attempt changes nothing, and after a crash it alone carries the saga on.
    pub fn react_in_background(&self, events: &[TicketingAction]) {
        let reactive: Vec<TicketingAction> = events
            .iter()
            .filter(|event| {
                !saga_reactions(event).is_empty()
                    || matches!(event, TicketingAction::Event(EventAction::EventCancelled { .. }))
            })
            .cloned()
            .collect();
        if reactive.is_empty() {
            return;
        }
        let context = CommandContext::current().unwrap_or_else(CommandContext::new_request);
        let saga = self.clone();
        tokio::spawn(async move {
            join_all(reactive.iter().map(|event| saga.react(event, context))).await;
        });
    }

    /// Carries out everything that must follow `event`, concurrently, and returns when done.
    pub async fn react(&self, event: &TicketingAction, context: CommandContext) {
        let mut commands: Vec<TicketingAction> = saga_reactions(event).into_iter().collect();
        if let TicketingAction::Event(EventAction::EventCancelled { event_id, .. }) = event {
            commands.extend(self.cancellation_fallout(*event_id).await);
        }
        if commands.is_empty() {
            return;
        }
        let span = tracing::debug_span!("saga_react", event = %crate::framework::Message::name(event), correlation_id = %context.correlation_id);
        // Instrumented, not entered: an entered span held across an await would leak into
        // whatever else the worker thread polls meanwhile.
        join_all(commands.into_iter().map(|command| context.scope(self.dispatch(command)))).instrument(span).await;
    }

    fn dispatch(&self, command: TicketingAction) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for attempt in 1..=ATTEMPTS {
                match self.router.execute(command.clone()).await {
                    Ok(_) => return,
                    Err(CommandError::Rejected(rejection)) => {
                        for follow_up in rejection_reactions(&rejection) {
                            self.dispatch(follow_up).await;
                        }
                        return;
                    }
                    Err(error) if attempt < ATTEMPTS => {
                        tracing::warn!(%error, attempt, "saga command failed, retrying");
                        tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                    }
                    Err(error) => tracing::error!(%error, "saga command abandoned"),
                }
            }
        })
    }

    /// When an event is cancelled every live hold is cancelled (releasing its seats) and every
    /// completed purchase refunded in full.
    async fn cancellation_fallout(&self, event_id: crate::domain::EventId) -> Vec<TicketingAction> {
        let Ok(event_stream) = crate::aggregates::event_stream(event_id) else { return Vec::new() };
        let Ok(sections) = self
            .router
            .events
            .state(&event_stream, |s| {
                s.details.as_ref().map(|d| d.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            })
            .await
        else {
            return Vec::new();
        };
        let mut commands = Vec::new();
        for section in sections.unwrap_or_default() {
            let Ok(stream) = inventory_stream(event_id, &section) else { continue };
            let holds = self
                .router
                .inventories
                .state(&stream, |inventory| inventory.holds().map(|(id, hold)| (id, hold.status)).collect::<Vec<_>>())
                .await
                .unwrap_or_default();
            for (reservation_id, status) in holds {
                match status {
                    HoldStatus::Reserved => commands
                        .push(TicketingAction::Reservation(ReservationAction::CancelReservation { reservation_id })),
                    HoldStatus::Confirmed => {
                        let payment_id = PaymentId::for_reservation(reservation_id);
                        let Ok(stream) = crate::aggregates::payment_stream(payment_id) else { continue };
                        let refundable = self
                            .router
                            .payments
                            .state(&stream, |p| p.payment.as_ref().and_then(|p| p.amount.checked_sub(p.refunded).ok()))
                            .await;
                        if let Ok(Some(amount)) = refundable
                            && amount.is_positive()
                        {
                            commands.push(TicketingAction::Payment(PaymentAction::RefundPayment {
                                payment_id,
                                amount,
                                reason: format!("event {event_id} cancelled"),
                            }));
                        }
                    }
                    HoldStatus::Released => {}
                }
            }
        }
        commands
    }
}
