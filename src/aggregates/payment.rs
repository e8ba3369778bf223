//! The Payment aggregate: one charge against a customer and its refunds.
//!
//! The reducer never talks to a payment provider itself. `ProcessPayment` persists
//! `PaymentProcessed` and returns an [`Effect::Future`] that asks the [`PaymentGateway`] from the
//! environment; the gateway's answer comes back as the internal command
//! [`PaymentAction::RecordGatewayOutcome`], which persists `PaymentSucceeded` or `PaymentFailed`.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use crate::domain::{DomainError, Money, PaymentId, ReservationId};
use crate::framework::{Clock, Effect, Effects, Message, MessageKind, Reducer};

/// What a payment provider answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayOutcome {
    /// The money was taken.
    Approved,
    /// The charge was refused.
    Declined {
        /// The provider's reason.
        reason: String,
    },
}

/// A payment provider. Object-safe, so environments hold an `Arc<dyn PaymentGateway>`.
#[async_trait]
pub trait PaymentGateway: Send + Sync + Debug {
    /// Charges `amount` for `payment_id`. Providers deduplicate on `payment_id`.
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &str) -> GatewayOutcome;
}

/// A gateway for tests and demos: approves everything, declines everything, or declines the next
/// N charges and then approves.
#[derive(Debug)]
pub struct SimulatedGateway {
    always_fail: bool,
    failures_left: AtomicU32,
}

impl SimulatedGateway {
    /// Approves every charge.
    #[must_use]
    pub fn always_succeed() -> Self {
        Self { always_fail: false, failures_left: AtomicU32::new(0) }
    }

    /// Declines every charge.
    #[must_use]
    pub fn always_fail() -> Self {
        Self { always_fail: true, failures_left: AtomicU32::new(0) }
    }

    /// Declines the next `n` charges, then approves.
    #[must_use]
    pub fn fail_next(n: u32) -> Self {
        Self { always_fail: false, failures_left: AtomicU32::new(n) }
    }

    /// Adds `n` more declines to come.
    pub fn add_failures(&self, n: u32) {
        self.failures_left.fetch_add(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, _payment_id: PaymentId, _amount: Money, _token: &str) -> GatewayOutcome {
        let take_failure = self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if self.always_fail || take_failure.is_ok() {
            GatewayOutcome::Declined { reason: "simulated decline".into() }
        } else {
            GatewayOutcome::Approved
        }
    }
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Sent to the gateway, no answer yet.
    Pending,
    /// Money taken.
    Succeeded,
    /// Charge refused.
    Failed,
}

/// One payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// The payment.
    pub payment_id: PaymentId,
    /// What it pays for.
    pub reservation_id: ReservationId,
    /// The amount charged.
    pub amount: Money,
    /// Status.
    pub status: PaymentStatus,
    /// Sum of refunds so far (never more than `amount`).
    pub refunded: Money,
}

/// State of one Payment stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentState {
    /// Set by `PaymentProcessed`.
    pub payment: Option<PaymentRecord>,
}

/// Why a Payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PaymentError {
    /// The amount is zero or negative.
    #[error("payment {payment_id}: amount {amount} must be positive")]
    NonPositiveAmount {
        /// The payment.
        payment_id: PaymentId,
        /// The amount.
        amount: Money,
    },
    /// `ProcessPayment` reused a payment id for something else.
    #[error("payment {payment_id} already exists with other details")]
    AlreadyExists {
        /// The payment.
        payment_id: PaymentId,
    },
    /// No such payment.
    #[error("payment {payment_id} not found")]
    NotFound {
        /// The payment.
        payment_id: PaymentId,
    },
    /// Refund of a payment that did not succeed.
    #[error("payment {payment_id} is {status:?}, not refundable")]
    NotRefundable {
        /// The payment.
        payment_id: PaymentId,
        /// Its status.
        status: PaymentStatus,
    },
    /// The refund would exceed what was paid minus what was refunded.
    #[error("payment {payment_id}: refund {requested} exceeds refundable {refundable}")]
    RefundExceedsPaid {
        /// The payment.
        payment_id: PaymentId,
        /// Refund asked for.
        requested: Money,
        /// What can still be refunded.
        refundable: Money,
    },
    /// Money arithmetic failed (overflow, currency mismatch).
    #[error("payment {payment_id}: {source}")]
    Money {
        /// The payment.
        payment_id: PaymentId,
        /// The domain error.
        source: DomainError,
    },
}

/// Commands, events and the rejection of the Payment aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentAction {
    /// Charge `amount` for a reservation.
    ProcessPayment {
        /// The payment (generated by the caller).
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
        /// The customer's payment-provider token, handed to the gateway and not stored.
        payment_token: String,
    },
    /// Give back part or all of a successful payment.
    RefundPayment {
        /// The payment.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
    },
    /// Force a pending payment to fail, as if the provider had declined (tests, demos).
    SimulatePaymentFailure {
        /// The payment.
        payment_id: PaymentId,
        /// The reason to record.
        reason: String,
    },
    /// Internal: the gateway answered. Sent by the effect of `ProcessPayment`.
    RecordGatewayOutcome {
        /// The payment.
        payment_id: PaymentId,
        /// The answer.
        outcome: GatewayOutcome,
    },
    /// A charge was sent to the gateway.
    #[serde(rename = "PaymentProcessed")]
    PaymentProcessed {
        /// The payment.
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
        /// When.
        processed_at: DateTime<Utc>,
    },
    /// The money was taken.
    #[serde(rename = "PaymentSucceeded")]
    PaymentSucceeded {
        /// The payment.
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
        /// When.
        succeeded_at: DateTime<Utc>,
    },
    /// The charge was refused.
    #[serde(rename = "PaymentFailed")]
    PaymentFailed {
        /// The payment.
        payment_id: PaymentId,
        /// What it was for.
        reservation_id: ReservationId,
        /// Why.
        reason: String,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// Money was given back.
    #[serde(rename = "PaymentRefunded")]
    PaymentRefunded {
        /// The payment.
        payment_id: PaymentId,
        /// What it was for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
        /// When.
        refunded_at: DateTime<Utc>,
    },
    /// A command was refused.
    Rejected(PaymentError),
}

impl PaymentAction {
    /// The payment this action addresses (`None` for a rejection).
    #[must_use]
    pub fn payment_id(&self) -> Option<PaymentId> {
        match self {
            Self::ProcessPayment { payment_id, .. }
            | Self::RefundPayment { payment_id, .. }
            | Self::SimulatePaymentFailure { payment_id, .. }
            | Self::RecordGatewayOutcome { payment_id, .. }
            | Self::PaymentProcessed { payment_id, .. }
            | Self::PaymentSucceeded { payment_id, .. }
            | Self::PaymentFailed { payment_id, .. }
            | Self::PaymentRefunded { payment_id, .. } => Some(*payment_id),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for PaymentAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::ProcessPayment { .. }
            | Self::RefundPayment { .. }
            | Self::SimulatePaymentFailure { .. }
            | Self::RecordGatewayOutcome { .. } => MessageKind::Command,
            Self::PaymentProcessed { .. }
            | Self::PaymentSucceeded { .. }
            | Self::PaymentFailed { .. }
            | Self::PaymentRefunded { .. } => MessageKind::Event,
            Self::Rejected(_) => MessageKind::Rejection,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::ProcessPayment { .. } => "ProcessPayment",
            Self::RefundPayment { .. } => "RefundPayment",
            Self::SimulatePaymentFailure { .. } => "SimulatePaymentFailure",
            Self::RecordGatewayOutcome { .. } => "RecordGatewayOutcome",
            Self::PaymentProcessed { .. } => "PaymentProcessed",
            Self::PaymentSucceeded { .. } => "PaymentSucceeded",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::Rejected(_) => "PaymentRejected",
        }
    }
}

/// Dependencies of the Payment reducer.
#[derive(Debug, Clone)]
pub struct PaymentEnv {
    /// Timestamps.
    pub clock: Arc<dyn Clock>,
    /// The payment provider.
    pub gateway: Arc<dyn PaymentGateway>,
}

impl PaymentEnv {
    /// An environment with `clock` and `gateway`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { clock, gateway }
    }
}

/// The Payment reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentReducer;

impl Reducer for PaymentReducer {
    type State = PaymentState;
    type Action = PaymentAction;
    type Env = PaymentEnv;

    fn reduce(&self, state: &mut PaymentState, action: PaymentAction, env: &PaymentEnv) -> Effects<PaymentAction> {
        match action.kind() {
            MessageKind::Event => {
                apply(state, &action);
                smallvec![]
            }
            MessageKind::Rejection => smallvec![],
            MessageKind::Command => {
                let token = match &action {
                    PaymentAction::ProcessPayment { payment_token, .. } => Some(payment_token.clone()),
                    _ => None,
                };
                match decide(state, action, env) {
                    Ok(events) if events.is_empty() => smallvec![],
                    Ok(events) => {
                        for event in &events {
                            apply(state, event);
                        }
                        let token = token.unwrap_or_default();
                        let charge = events.iter().find_map(|e| match e {
                            PaymentAction::PaymentProcessed { payment_id, amount, .. } => Some((*payment_id, *amount)),
                            _ => None,
                        });
                        let mut effects: Effects<PaymentAction> = smallvec![Effect::Persist(events)];
                        if let Some((payment_id, amount)) = charge {
                            let gateway = Arc::clone(&env.gateway);
                            effects.push(Effect::Future(Box::pin(async move {
                                let outcome = gateway.charge(payment_id, amount, &token).await;
                                Some(PaymentAction::RecordGatewayOutcome { payment_id, outcome })
                            })));
                        }
                        effects
                    }
                    Err(error) => smallvec![Effect::Reject(Box::new(PaymentAction::Rejected(error)))],
                }
            }
        }
    }
}

fn decide(
    state: &PaymentState,
    command: PaymentAction,
    env: &PaymentEnv,
) -> Result<SmallVec<[PaymentAction; 4]>, PaymentError> {
    let now = env.clock.now();
    if let PaymentAction::ProcessPayment { payment_id, reservation_id, amount, .. } = command {
        if !amount.is_positive() {
            return Err(PaymentError::NonPositiveAmount { payment_id, amount });
        }
        return match &state.payment {
            None => {
                Ok(smallvec![PaymentAction::PaymentProcessed { payment_id, reservation_id, amount, processed_at: now }])
            }
            Some(p) if p.payment_id == payment_id && p.reservation_id == reservation_id && p.amount == amount => {
                Ok(smallvec![])
            }
            Some(_) => Err(PaymentError::AlreadyExists { payment_id }),
        };
    }
    let Some(payment_id) = command.payment_id() else { return Ok(smallvec![]) };
    let payment =
        state.payment.as_ref().filter(|p| p.payment_id == payment_id).ok_or(PaymentError::NotFound { payment_id })?;
    let reservation_id = payment.reservation_id;
    let pending = payment.status == PaymentStatus::Pending;
    match command {
        PaymentAction::RecordGatewayOutcome { outcome: GatewayOutcome::Approved, .. } if pending => {
            Ok(smallvec![PaymentAction::PaymentSucceeded {
                payment_id,
                reservation_id,
                amount: payment.amount,
                succeeded_at: now
            }])
        }
        PaymentAction::RecordGatewayOutcome { outcome: GatewayOutcome::Declined { reason }, .. }
        | PaymentAction::SimulatePaymentFailure { reason, .. }
            if pending =>
        {
            Ok(smallvec![PaymentAction::PaymentFailed { payment_id, reservation_id, reason, failed_at: now }])
        }
        PaymentAction::RefundPayment { amount, reason, .. } => {
            if payment.status != PaymentStatus::Succeeded {
                return Err(PaymentError::NotRefundable { payment_id, status: payment.status });
            }
            if !amount.is_positive() {
                return Err(PaymentError::NonPositiveAmount { payment_id, amount });
            }
            let money = |source| PaymentError::Money { payment_id, source };
            let refundable = payment.amount.checked_sub(payment.refunded).map_err(money)?;
            let after = refundable.checked_sub(amount).map_err(money)?;
            if after.minor_units() < 0 {
                return Err(PaymentError::RefundExceedsPaid { payment_id, requested: amount, refundable });
            }
            Ok(smallvec![PaymentAction::PaymentRefunded {
                payment_id,
                reservation_id,
                amount,
                reason,
                refunded_at: now
            }])
        }
        // A gateway answer or simulated failure after the payment was decided is a late duplicate.
        _ => Ok(smallvec![]),
    }
}

fn apply(state: &mut PaymentState, event: &PaymentAction) {
    match event {
        PaymentAction::PaymentProcessed { payment_id, reservation_id, amount, .. } => {
            state.payment = Some(PaymentRecord {
                payment_id: *payment_id,
                reservation_id: *reservation_id,
                amount: *amount,
                status: PaymentStatus::Pending,
                refunded: Money::zero(amount.currency()),
            });
        }
        PaymentAction::PaymentSucceeded { .. } => set_status(state, PaymentStatus::Succeeded),
        PaymentAction::PaymentFailed { .. } => set_status(state, PaymentStatus::Failed),
        PaymentAction::PaymentRefunded { amount, .. } => {
            if let Some(p) = state.payment.as_mut() {
                // Validated when decided; saturate rather than panic if a corrupt log says otherwise.
                p.refunded = p.refunded.checked_add(*amount).unwrap_or(p.amount);
            }
        }
        _ => {}
    }
}

fn set_status(state: &mut PaymentState, status: PaymentStatus) {
    if let Some(p) = state.payment.as_mut() {
        p.status = status;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::domain::Currency;
    use crate::framework::{FixedClock, ReducerTest, ReducerTestError};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
    }
    fn pid() -> PaymentId {
        PaymentId::from_uuid(uuid::Uuid::from_u128(5))
    }
    fn rid() -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(6))
    }
    fn eur(m: i64) -> Money {
        Money::new(m, Currency::EUR)
    }
    fn test_with(gateway: SimulatedGateway) -> ReducerTest<PaymentReducer> {
        ReducerTest::new(PaymentReducer, PaymentEnv::new(Arc::new(FixedClock::new(now())), Arc::new(gateway)))
    }
    fn test() -> ReducerTest<PaymentReducer> {
        test_with(SimulatedGateway::always_succeed())
    }
    fn process(amount: i64) -> PaymentAction {
        PaymentAction::ProcessPayment {
            payment_id: pid(),
            reservation_id: rid(),
            amount: eur(amount),
            payment_token: "tok_test".into(),
        }
    }
    fn processed(amount: i64) -> PaymentAction {
        PaymentAction::PaymentProcessed {
            payment_id: pid(),
            reservation_id: rid(),
            amount: eur(amount),
            processed_at: now(),
        }
    }
    fn succeeded(amount: i64) -> PaymentAction {
        PaymentAction::PaymentSucceeded {
            payment_id: pid(),
            reservation_id: rid(),
            amount: eur(amount),
            succeeded_at: now(),
        }
    }
    fn failed(reason: &str) -> PaymentAction {
        PaymentAction::PaymentFailed {
            payment_id: pid(),
            reservation_id: rid(),
            reason: reason.into(),
            failed_at: now(),
        }
    }
    fn refund(amount: i64) -> PaymentAction {
        PaymentAction::RefundPayment { payment_id: pid(), amount: eur(amount), reason: "r".into() }
    }
    fn refunded(amount: i64) -> PaymentAction {
        PaymentAction::PaymentRefunded {
            payment_id: pid(),
            reservation_id: rid(),
            amount: eur(amount),
            reason: "r".into(),
            refunded_at: now(),
        }
    }
    #[tokio::test]
    async fn process_persists_then_the_gateway_answer_comes_back_as_a_command() {
        let declined = GatewayOutcome::Declined { reason: "simulated decline".into() };
        for (gateway, expected) in [
            (SimulatedGateway::always_succeed(), GatewayOutcome::Approved),
            (SimulatedGateway::always_fail(), declined),
        ] {
            let env = PaymentEnv::new(Arc::new(FixedClock::new(now())), Arc::new(gateway));
            let mut state = PaymentState::default();
            let mut effects = PaymentReducer.reduce(&mut state, process(1_000), &env).into_iter();
            assert!(matches!(effects.next(), Some(Effect::Persist(events)) if events[..] == [processed(1_000)]));
            let Some(Effect::Future(answer)) = effects.next() else { panic!("expected the gateway call") };
            assert_eq!(
                answer.await,
                Some(PaymentAction::RecordGatewayOutcome { payment_id: pid(), outcome: expected })
            );
            assert_eq!(state.payment.map(|p| p.status), Some(PaymentStatus::Pending));
        }
    }

    #[tokio::test]
    async fn fail_next_n_declines_n_times_then_approves() {
        let gateway = SimulatedGateway::fail_next(2);
        let declined = GatewayOutcome::Declined { reason: "simulated decline".into() };
        assert_eq!(gateway.charge(pid(), eur(1), "tok").await, declined);
        assert_eq!(gateway.charge(pid(), eur(1), "tok").await, declined);
        assert_eq!(gateway.charge(pid(), eur(1), "tok").await, GatewayOutcome::Approved);
        gateway.add_failures(1);
        assert_eq!(gateway.charge(pid(), eur(1), "tok").await, declined);
    }

    #[test]
    fn process_rejects_non_positive_and_conflicting_ids() -> Result<(), ReducerTestError> {
        test()
            .when(process(0))
            .then_rejected("zero", |a| matches!(a, PaymentAction::Rejected(PaymentError::NonPositiveAmount { .. })))?;
        test()
            .given([processed(1_000)])?
            .when(process(2_000))
            .then_rejected("reuse", |a| matches!(a, PaymentAction::Rejected(PaymentError::AlreadyExists { .. })))?;
        test().given([processed(1_000)])?.when(process(1_000)).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn gateway_outcome_decides_once() -> Result<(), ReducerTestError> {
        let approved = || PaymentAction::RecordGatewayOutcome { payment_id: pid(), outcome: GatewayOutcome::Approved };
        test().given([processed(1_000)])?.when(approved()).then_persisted(&[succeeded(1_000)])?;
        let declined = PaymentAction::RecordGatewayOutcome {
            payment_id: pid(),
            outcome: GatewayOutcome::Declined { reason: "card".into() },
        };
        test().given([processed(1_000)])?.when(declined).then_persisted(&[failed("card")])?;
        test().given([processed(1_000), succeeded(1_000)])?.when(approved()).then_persisted(&[])?.then_unchanged()?;
        test()
            .when(approved())
            .then_rejected("unknown", |a| matches!(a, PaymentAction::Rejected(PaymentError::NotFound { .. })))?;
        Ok(())
    }

    #[test]
    fn simulated_failure_fails_a_pending_payment_only() -> Result<(), ReducerTestError> {
        let simulate = || PaymentAction::SimulatePaymentFailure { payment_id: pid(), reason: "test".into() };
        test()
            .given([processed(1_000)])?
            .when(simulate())
            .then_persisted(&[failed("test")])?
            .then_state("failed", |s| s.payment.as_ref().is_some_and(|p| p.status == PaymentStatus::Failed))?;
        test().given([processed(1_000), succeeded(1_000)])?.when(simulate()).then_persisted(&[])?;
        Ok(())
    }

    #[test]
    fn refunds_never_exceed_what_was_paid() -> Result<(), ReducerTestError> {
        test()
            .given([processed(1_000), succeeded(1_000)])?
            .when(refund(400))
            .then_persisted(&[refunded(400)])?
            .then_state("400 refunded", |s| s.payment.as_ref().is_some_and(|p| p.refunded == eur(400)))?;
        test()
            .given([processed(1_000), succeeded(1_000), refunded(400)])?
            .when(refund(600))
            .then_persisted(&[refunded(600)])?;
        test()
            .given([processed(1_000), succeeded(1_000), refunded(1_000)])?
            .when(refund(1))
            .then_rejected("double", |a| {
                matches!(a, PaymentAction::Rejected(PaymentError::RefundExceedsPaid { .. }))
            })?;
        test().given([processed(1_000), succeeded(1_000)])?.when(refund(1_001)).then_rejected("too much", |a| {
            matches!(a, PaymentAction::Rejected(PaymentError::RefundExceedsPaid { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn refund_rejections() -> Result<(), ReducerTestError> {
        test().given([processed(1_000)])?.when(refund(1)).then_rejected("pending", |a| {
            matches!(a, PaymentAction::Rejected(PaymentError::NotRefundable { status: PaymentStatus::Pending, .. }))
        })?;
        test()
            .given([processed(1_000), succeeded(1_000)])?
            .when(refund(0))
            .then_rejected("zero", |a| matches!(a, PaymentAction::Rejected(PaymentError::NonPositiveAmount { .. })))?;
        let usd = PaymentAction::RefundPayment {
            payment_id: pid(),
            amount: Money::new(1, Currency::USD),
            reason: String::new(),
        };
        test().given([processed(1_000), succeeded(1_000)])?.when(usd).then_rejected("currency", |a| {
            matches!(
                a,
                PaymentAction::Rejected(PaymentError::Money { source: DomainError::CurrencyMismatch { .. }, .. })
            )
        })?;
        test()
            .when(refund(1))
            .then_rejected("unknown", |a| matches!(a, PaymentAction::Rejected(PaymentError::NotFound { .. })))?;
        Ok(())
    }

    #[test]
    fn event_names_equal_serde_tags() {
        for event in [processed(1), succeeded(1), failed("x"), refunded(1)] {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json.as_object().unwrap().keys().next().unwrap(), event.name());
            assert_eq!(serde_json::from_value::<PaymentAction>(json).unwrap(), event);
        }
    }
}
