//! Carries out the saga's reactions to one event read from the log: sends the follow-up commands
//! through the command engine and performs the side effects, the payment gateway's charges and
//! refunds, each between its durable intent (`PaymentProcessed`, `RefundRequested`) and its
//! recorded outcome.
//!
//! A step is retried, at the pace of the engine's [`RetryPolicy`], until it is recorded or refused; it is
//! given up only when the system stops, and then it stays durable: the follower does not move
//! its checkpoint past the event, so the next process carries the step out. Every command is
//! idempotent, so an event handled twice (after a crash, or by two processes) changes nothing
//! the second time.

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, join_all};
use secrecy::SecretString;
use smallvec::SmallVec;
use tokio::sync::watch;
use tracing::Instrument;

use super::PaymentGateway;
use super::commands::{CommandError, CommandRouter, Committed};
use super::context::CommandContext;
use super::open_payments::{Calling, OpenPayments};
use super::vault::TokenVault;
use super::writers::Inventory;
use crate::aggregates::{
    Charge, EVENT_CANCELLED_REFUND, EventAction, GatewayOutcome, HoldStatus, PaymentAction, PaymentStatus, Reaction,
    Refund, ReservationAction, TicketingAction, payment_stream, reactions, rejection_reactions, reservation_stream,
};
use crate::domain::{EventId, Money, PaymentId, RefundId, ReservationId};
use crate::event_store::RetryPolicy;
use crate::framework::Message;

/// The part of the reactions to one event that one node carries out: the inventory steps go to
/// each inventory's writer, the rest to the event's node ([`writers`](super::writers)). It names
/// the steps by their places in the event's [`reactions`], which are the same wherever they are
/// computed, so a share is small and the steps are not copied around.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Share {
    /// The places of its steps in the event's reactions.
    steps: SmallVec<[u32; 4]>,
    /// Whether it holds the fallout of a cancelled event (its holds cancelled, its purchases
    /// refunded), which is the event's node's.
    fallout: bool,
}

impl Share {
    /// Every reaction to `event`, whose [`reactions`] are `steps` many, whichever node carries
    /// each out.
    pub(crate) fn all(event: &TicketingAction, steps: usize) -> Self {
        let steps = (0..u32::try_from(steps).unwrap_or(u32::MAX)).collect();
        Self { steps, fallout: matches!(event, TicketingAction::Event(EventAction::EventCancelled { .. })) }
    }

    /// The steps of `steps` (the event's [`reactions`]) that the node whose saga an event belongs
    /// to carries out at once when it appended the event itself: every command but those of
    /// inventories another node may write (`writes` says which inventories this node writes as
    /// of the claims it has read; a claim it has not read yet costs at worst a step done twice,
    /// which the inventory takes as done), and the charge (its token leaves the vault once, to
    /// whichever takes the event up first: the step's own node at once, or its reader). Refunds
    /// wait for the reader.
    pub(crate) fn at_once(steps: &[Reaction], writes: impl Fn(&Inventory) -> bool) -> Self {
        let steps = (0u32..)
            .zip(steps)
            .filter(|(_, step)| match step {
                Reaction::Command(command) => Inventory::of(command).is_none_or(|inventory| writes(&inventory)),
                Reaction::Charge(_) => true,
                Reaction::Refund(_) => false,
            })
            .map(|(index, _)| index)
            .collect();
        Self { steps, fallout: false }
    }

    /// Takes out every step of `other`.
    pub(crate) fn remove_all(&mut self, other: &Self) {
        self.steps.retain(|i| !other.steps.contains(i));
    }

    /// The share of step `index` alone.
    pub(crate) fn step(index: u32) -> Self {
        Self { steps: smallvec::smallvec![index], fallout: false }
    }

    /// Adds step `index`.
    pub(crate) fn add(&mut self, index: u32) {
        self.steps.push(index);
    }

    /// Takes step `index` out.
    pub(crate) fn remove(&mut self, index: u32) {
        self.steps.retain(|i| *i != index);
    }

    /// Whether step `index` is in it.
    pub(crate) fn holds(&self, index: usize) -> bool {
        u32::try_from(index).is_ok_and(|index| self.steps.contains(&index))
    }

    /// Whether there is nothing in it to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty() && !self.fallout
    }
}

/// An event a saga step appended for this node's own saga (not on behalf of another node's),
/// at its place in the log: this node carries out its own steps at once
/// ([`follower`](super::follower)), rather than when it reads the event back.
#[derive(Debug)]
pub(crate) struct Appended {
    /// Its global position.
    pub(crate) position: u64,
    /// The event.
    pub(crate) action: TicketingAction,
    /// The context of the commands that react to it.
    pub(crate) context: CommandContext,
}

/// Where a reaction's steps add the events they append for this node's own saga.
type Sink<'a> = Option<&'a Mutex<Vec<Appended>>>;

/// Adds the events of `committed`, appended in `context`, to `sink` when they belong to this
/// node's own saga and their positions are known.
fn collect(sink: Sink<'_>, committed: Committed<TicketingAction>, context: CommandContext) {
    let Some(sink) = sink else { return };
    sink.lock().unwrap_or_else(PoisonError::into_inner).extend(Appended::of(committed, context));
}

impl Appended {
    /// The events of `committed`, appended in `context`, when they belong to this node's own
    /// saga and their positions are known; none otherwise.
    pub(crate) fn of(committed: Committed<TicketingAction>, context: CommandContext) -> Vec<Self> {
        if context.origin.is_some() || committed.recorded.len() != committed.events.len() {
            return Vec::new();
        }
        let correlation_id = context.correlation_id;
        committed
            .events
            .into_iter()
            .zip(committed.recorded)
            .map(|(action, (causation_id, position))| Self {
                position,
                action,
                context: CommandContext { correlation_id, causation_id, origin: None },
            })
            .collect()
    }
}

/// The system stopped before a step was recorded; the step stays for the next process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// The customer's token for one charge, taken from the vault, with the mark that the charge is
/// under way in this process.
pub(crate) struct ChargeToken {
    token: SecretString,
    _calling: Calling,
}

/// Runs the saga's reactions.
#[derive(Clone)]
pub(crate) struct Saga {
    pub(super) router: CommandRouter,
    pub(super) gateway: Arc<dyn PaymentGateway>,
    pub(super) vault: TokenVault,
    pub(super) open: OpenPayments,
    retry: RetryPolicy,
    stop: watch::Receiver<bool>,
}

/// What the saga needs besides the command engine.
pub(crate) struct SagaParts {
    pub(crate) gateway: Arc<dyn PaymentGateway>,
    pub(crate) vault: TokenVault,
    pub(crate) open: OpenPayments,
    pub(crate) retry: RetryPolicy,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Saga {
    pub(crate) fn new(router: CommandRouter, parts: SagaParts) -> Self {
        let SagaParts { gateway, vault, open, retry, stop } = parts;
        Self { router, gateway, vault, open, retry, stop }
    }

    /// Whether `event` needs any reaction at all (most events of a purchase do).
    pub(crate) fn reacts_to(event: &TicketingAction) -> bool {
        !reactions(event).is_empty() || matches!(event, TicketingAction::Event(EventAction::EventCancelled { .. }))
    }

    /// Takes the customer's token for the charge `event` asks for, if this process holds it.
    /// From then on the charge counts as under way here, so reconciliation leaves it alone.
    pub(crate) fn token_for(&self, event: &TicketingAction) -> Option<ChargeToken> {
        match event {
            TicketingAction::Reservation(ReservationAction::PaymentRequested {
                reservation_id, payment_id, ..
            }) => {
                // Under way before the token leaves the vault: reconciliation leaves a charge alone
                // while either holds, and in between it would have found neither and recorded a
                // decline for a charge about to be sent.
                let calling = self.open.calling(payment_id.as_uuid());
                let token = self.vault.take(*reservation_id)?;
                Some(ChargeToken { token, _calling: calling })
            }
            _ => None,
        }
    }

    /// Carries out `share` of what must follow `event`, concurrently, and returns when all of
    /// it is recorded, with the events its steps appended for this node's own saga, in log
    /// order. `token` is the customer's token for the charge it asks for, when this process took
    /// the payment call ([`Saga::token_for`]).
    ///
    /// # Errors
    /// [`Stopped`] when the system stopped first.
    pub(crate) async fn react(
        &self,
        event: &TicketingAction,
        share: Share,
        context: CommandContext,
        mut token: Option<ChargeToken>,
    ) -> Result<Vec<Appended>, Stopped> {
        let mut steps: Vec<Reaction> =
            reactions(event).into_iter().enumerate().filter(|(i, _)| share.holds(*i)).map(|(_, step)| step).collect();
        if share.fallout
            && let TicketingAction::Event(EventAction::EventCancelled { event_id, .. }) = event
        {
            steps.extend(self.cancellation_fallout(*event_id, context).await?.into_iter().map(Reaction::Command));
        }
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let span = tracing::debug_span!("saga_react", event = %event.name(), correlation_id = %context.correlation_id);
        let appended = Mutex::new(Vec::new());
        let outcomes = join_all(steps.into_iter().map(|step| {
            let token = if matches!(step, Reaction::Charge(_)) { token.take() } else { None };
            self.run(step, context, token, Some(&appended))
        }))
        .instrument(span)
        .await;
        outcomes.into_iter().collect::<Result<(), Stopped>>()?;
        let mut appended = appended.into_inner().unwrap_or_else(PoisonError::into_inner);
        appended.sort_by_key(|a| a.position);
        Ok(appended)
    }

    async fn run(
        &self,
        step: Reaction,
        context: CommandContext,
        token: Option<ChargeToken>,
        sink: Sink<'_>,
    ) -> Result<(), Stopped> {
        match step {
            Reaction::Command(command) => self.dispatch_into(command, context, sink).await,
            Reaction::Charge(charge) => self.charge(&charge, context, token, sink).await,
            Reaction::Refund(refund) => self.refund(&refund, context, sink).await,
        }
    }

    /// Sends `command` until it is recorded or refused; a refusal's own follow-ups (a seat
    /// shortage ends the reservation) are sent in turn.
    pub(super) fn dispatch(
        &self,
        command: TicketingAction,
        context: CommandContext,
    ) -> BoxFuture<'_, Result<(), Stopped>> {
        self.dispatch_into(command, context, None)
    }

    /// [`Saga::dispatch`], adding what it appends for this node's own saga to `sink`.
    fn dispatch_into<'a>(
        &'a self,
        command: TicketingAction,
        context: CommandContext,
        sink: Sink<'a>,
    ) -> BoxFuture<'a, Result<(), Stopped>> {
        Box::pin(async move {
            match self.execute(command, context).await? {
                Ok(committed) => {
                    collect(sink, committed, context);
                    Ok(())
                }
                Err(rejection) => {
                    for follow_up in rejection_reactions(&rejection) {
                        self.dispatch_into(follow_up, context, sink).await?;
                    }
                    Ok(())
                }
            }
        })
    }

    /// Executes `command`, retrying whatever may pass, and returns what became of it: its
    /// events, or its rejection.
    pub(super) async fn execute(
        &self,
        command: TicketingAction,
        context: CommandContext,
    ) -> Result<Result<Committed<TicketingAction>, TicketingAction>, Stopped> {
        let mut backoffs = RetryPolicy { max_attempts: None, ..self.retry }.backoff();
        let mut attempt: u32 = 1;
        loop {
            match self.router.execute(command.clone(), context).await {
                Ok(committed) => return Ok(Ok(committed)),
                Err(CommandError::Rejected(rejection)) => return Ok(Err(rejection)),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, attempt, command = %command.name(), "saga step failed; retrying");
                }
                Err(CommandError::WorkerStopped { .. }) => return Err(Stopped),
                Err(error) => {
                    // Not retryable (an undecodable stream): the step cannot be carried out by
                    // this code; stop here rather than pretend, so the event is handled again
                    // by the next process.
                    tracing::error!(%error, command = %command.name(), "saga step cannot be carried out");
                    return Err(Stopped);
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = backoffs.next().unwrap_or(self.retry.max_delay);
            let mut stop = self.stop.clone();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop) => return Err(Stopped),
            }
        }
    }

    /// In the process that took the payment call (the only one holding the customer's token):
    /// records the intent, calls the gateway if the payment is still undecided, and records the
    /// answer. Elsewhere it does nothing: a charge whose process died before recording its
    /// answer is settled by reconciliation, which asks the provider.
    async fn charge(
        &self,
        charge: &Charge,
        context: CommandContext,
        token: Option<ChargeToken>,
        sink: Sink<'_>,
    ) -> Result<(), Stopped> {
        let Some(ChargeToken { token, _calling: calling }) = token else { return Ok(()) };
        match self.execute(charge.intent(), context).await? {
            Ok(committed) => collect(sink, committed, context),
            Err(_) => return Ok(()),
        }
        if self.payment_status(charge.payment_id).await? != Some(PaymentStatus::Pending) {
            return Ok(());
        }
        let span = tracing::info_span!("gateway_charge", payment_id = %charge.payment_id, correlation_id = %context.correlation_id);
        let outcome = self.gateway.charge(charge.payment_id, charge.amount, &token).instrument(span).await;
        // The call is over: from here reconciliation may settle the charge too (both record the
        // provider's answer, and the second record changes nothing).
        drop((token, calling));
        self.dispatch_into(charge.outcome(outcome), context, sink).await
    }

    /// Asks the gateway for the refund and records a definite answer. An unknown answer leaves
    /// the refund requested; reconciliation sends it again under the same refund id.
    async fn refund(&self, refund: &Refund, context: CommandContext, sink: Sink<'_>) -> Result<(), Stopped> {
        let calling = self.open.calling(refund.refund_id.as_uuid());
        let span = tracing::info_span!("gateway_refund", payment_id = %refund.payment_id, refund_id = %refund.refund_id, correlation_id = %context.correlation_id);
        let outcome = self.gateway.refund(refund.payment_id, refund.refund_id, refund.amount).instrument(span).await;
        drop(calling);
        if let GatewayOutcome::Unknown { reason } = &outcome {
            tracing::warn!(payment_id = %refund.payment_id, refund_id = %refund.refund_id, %reason, "refund answer unknown; reconciliation will send it again");
            return Ok(());
        }
        self.dispatch_into(refund.outcome(outcome), context, sink).await
    }

    async fn payment_status(&self, payment_id: PaymentId) -> Result<Option<PaymentStatus>, Stopped> {
        let Ok(stream) = payment_stream(payment_id) else { return Ok(None) };
        let read = |s: Option<&crate::aggregates::PaymentState>| s.and_then(|s| s.payment.as_ref()).map(|p| p.status);
        // The engine's copy is current for this process's writes; one behind another process's
        // answer only costs a repeated call, which the provider deduplicates by payment id.
        self.router.payments.read(&stream, false, read).await.map_err(|_| Stopped)
    }

    /// When an event is cancelled every live hold is cancelled (releasing its seats) and every
    /// completed purchase refunded in full: its kept seats are refunded (`RefundSeats`, which
    /// revokes their tickets and gives back what is left of the payment), and a payment taken for
    /// a hold not confirmed yet is refunded as it is.
    async fn cancellation_fallout(
        &self,
        event_id: EventId,
        context: CommandContext,
    ) -> Result<Vec<TicketingAction>, Stopped> {
        let holds = self.router.holds_of_event(event_id).await.map_err(|_| Stopped)?;
        let mut commands = Vec::new();
        for (reservation_id, status) in holds {
            if status == HoldStatus::Released {
                continue;
            }
            if status == HoldStatus::Reserved {
                commands.push(TicketingAction::Reservation(ReservationAction::CancelReservation { reservation_id }));
            }
            // A held seat may belong to a purchase already paid whose confirmation is still
            // on its way: whatever was paid is refunded either way.
            let payment_id = PaymentId::for_reservation(reservation_id);
            let refund_id = RefundId::for_payment(payment_id, EVENT_CANCELLED_REFUND);
            let Ok(stream) = payment_stream(payment_id) else { continue };
            let refundable = self
                .router
                .payments
                .read(&stream, true, |p| {
                    p.and_then(|p| p.payment.as_ref())
                        .filter(|p| p.status == PaymentStatus::Succeeded)
                        .and_then(|p| p.refundable().ok())
                })
                .await
                .map_err(|_| Stopped)?;
            let reason = format!("event {event_id} cancelled");
            if status == HoldStatus::Confirmed {
                commands.extend(self.refund_kept_seats(reservation_id, refund_id, refundable, reason).await?);
            } else if let Some(amount) = refundable
                && amount.is_positive()
            {
                commands.push(TicketingAction::Payment(PaymentAction::RefundPayment {
                    at_most: true,
                    payment_id,
                    refund_id,
                    amount,
                    reason,
                }));
            }
        }
        tracing::debug!(%event_id, commands = commands.len(), correlation_id = %context.correlation_id, "event cancelled");
        Ok(commands)
    }

    /// The `RefundSeats` of every seat `reservation_id` kept, giving back their price or, when
    /// less is left of the payment (`refundable`), what is left.
    async fn refund_kept_seats(
        &self,
        reservation_id: ReservationId,
        refund_id: RefundId,
        refundable: Option<Money>,
        reason: String,
    ) -> Result<Option<TicketingAction>, Stopped> {
        let Ok(stream) = reservation_stream(reservation_id) else { return Ok(None) };
        let price = self
            .router
            .reservations
            .read(&stream, true, |r| {
                let r = r.and_then(|r| r.reservation.as_ref())?;
                r.kept_seats().next()?;
                r.kept_price().ok()
            })
            .await
            .map_err(|_| Stopped)?;
        let Some(price) = price else { return Ok(None) };
        let left = refundable.unwrap_or_else(|| Money::new(0, price.currency()));
        let amount = if left.currency() == price.currency() && left.minor_units() < price.minor_units() {
            Money::new(left.minor_units().max(0), price.currency())
        } else {
            price
        };
        Ok(Some(TicketingAction::Reservation(ReservationAction::RefundSeats {
            reservation_id,
            seats: Vec::new(),
            refund_id,
            amount,
            reason,
        })))
    }
}
