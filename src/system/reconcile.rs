//! Payment reconciliation: settles every charge and refund whose gateway answer never made it
//! into the log (the call answered `Unknown`, or its process died between the call and the
//! record). It runs once the follower has caught up at start-up, then on a schedule, and on
//! demand through [`TicketingSystem::reconcile_payments`](crate::system::TicketingSystem::reconcile_payments).
//!
//! - A charge is settled by asking the provider ([`PaymentGateway::status`](super::PaymentGateway::status)):
//!   approved or declined, the answer is recorded through the command engine like any other;
//!   not charged, and no process here holds its token, it is recorded declined (no money moved,
//!   the seats go back); still unknown, it waits for the next pass.
//! - A refund is settled by sending it again under its refund id, which the provider
//!   deduplicates.
//!
//! Only entries older than the grace period are touched, so a call still under way in another
//! process is not second-guessed; and if a provider approves a charge after all (it landed after
//! its call timed out), the approval is recorded and refunded as a late payment.

use std::time::Duration;

use tokio::sync::watch;

use super::context::CommandContext;
use super::open_payments::{ChargeStage, OpenCharge, OpenRefund};
use super::saga::{Saga, Stopped};
use super::{ChargeStatus, GatewayOutcome};
use crate::aggregates::{Charge, Refund};
use crate::framework::Clock;

/// What one reconciliation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Charges whose outcome it recorded.
    pub charges_settled: usize,
    /// Refunds whose outcome it recorded.
    pub refunds_settled: usize,
    /// Charges and refunds the provider could still not answer for; the next pass asks again.
    pub unresolved: usize,
}

/// When reconciliation runs, and which entries it leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReconcileSchedule {
    /// How often a pass runs.
    pub(crate) every: Duration,
    /// How old an open charge or refund must be before a pass touches it.
    pub(crate) grace: Duration,
}

impl Default for ReconcileSchedule {
    fn default() -> Self {
        Self { every: Duration::from_secs(30), grace: Duration::from_secs(60) }
    }
}

const NOT_CHARGED: &str = "the charge never reached the payment provider";

impl Saga {
    /// One pass over every open charge and refund that reached its stage at least `grace` ago.
    ///
    /// # Errors
    /// [`Stopped`] when the system stopped first.
    pub(crate) async fn reconcile(&self, clock: &dyn Clock, grace: Duration) -> Result<Reconciliation, Stopped> {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = clock.now().checked_sub_signed(grace).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let due = self.open.due(cutoff);
        let mut done = Reconciliation::default();
        for charge in due.charges {
            if self.settle_charge(&charge).await? {
                done.charges_settled += 1;
            } else {
                done.unresolved += 1;
            }
        }
        for refund in due.refunds {
            if self.settle_refund(&refund).await? {
                done.refunds_settled += 1;
            } else {
                done.unresolved += 1;
            }
        }
        if done != Reconciliation::default() {
            tracing::info!(?done, "payment reconciliation pass");
        }
        Ok(done)
    }

    async fn settle_charge(&self, open: &OpenCharge) -> Result<bool, Stopped> {
        let context = CommandContext { correlation_id: open.correlation_id, causation_id: open.cause, origin: None };
        let charge = Charge { payment_id: open.payment_id, reservation_id: open.reservation_id, amount: open.amount };
        let outcome = match self.gateway.status(open.payment_id).await {
            ChargeStatus::Approved => GatewayOutcome::Approved,
            ChargeStatus::Declined { reason } => GatewayOutcome::Declined { reason },
            // Its token is still here: the charge is about to be sent by this process.
            ChargeStatus::NotCharged if self.vault.holds(open.reservation_id) => return Ok(false),
            ChargeStatus::NotCharged => GatewayOutcome::Declined { reason: NOT_CHARGED.to_owned() },
            ChargeStatus::Unknown { reason } => {
                tracing::warn!(payment_id = %open.payment_id, %reason, "charge still unknown at the provider");
                return Ok(false);
            }
        };
        tracing::info!(payment_id = %open.payment_id, ?outcome, stage = ?open.stage, "charge reconciled");
        if open.stage == ChargeStage::Requested && self.execute(charge.intent(), context).await?.is_err() {
            return Ok(false);
        }
        self.dispatch(charge.outcome(outcome), context).await?;
        Ok(true)
    }

    async fn settle_refund(&self, open: &OpenRefund) -> Result<bool, Stopped> {
        let context = CommandContext { correlation_id: open.correlation_id, causation_id: open.cause, origin: None };
        let refund = Refund { payment_id: open.payment_id, refund_id: open.refund_id, amount: open.amount };
        match self.gateway.refund(open.payment_id, open.refund_id, open.amount).await {
            GatewayOutcome::Unknown { reason } => {
                tracing::warn!(payment_id = %open.payment_id, refund_id = %open.refund_id, %reason, "refund still unknown");
                Ok(false)
            }
            outcome => {
                self.dispatch(refund.outcome(outcome), context).await?;
                Ok(true)
            }
        }
    }
}

/// Runs a pass once the follower has handled everything committed when the system started, then
/// every `schedule.every`, until the system stops.
pub(crate) async fn reconcile_on_schedule(
    saga: Saga,
    clock: std::sync::Arc<dyn Clock>,
    schedule: ReconcileSchedule,
    mut caught_up: watch::Receiver<u64>,
    start_head: u64,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = caught_up.wait_for(|handled| *handled >= start_head) => {}
        _ = stop.wait_for(|stop| *stop) => return,
    }
    loop {
        if saga.reconcile(clock.as_ref(), schedule.grace).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(schedule.every) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}
