//! The Payment aggregate: one charge against a customer and its refunds.
//!
//! The reducer never talks to a payment provider. `ProcessPayment` persists `PaymentProcessed`:
//! the durable intent to charge. The system then calls its payment gateway (outside any reducer)
//! and feeds the answer back as the command [`PaymentAction::RecordGatewayOutcome`], which
//! persists `PaymentSucceeded` or `PaymentFailed`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

use crate::domain::{DomainError, Money, PaymentId, RefundId, ReservationId, ensure_storable_text};
use crate::framework::{Clock, Effects, Message, MessageKind, Reducer, event_sourced};

/// What a payment provider answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayOutcome {
    /// The money was taken.
    Approved,
    /// The charge (or refund) was refused; no money moved.
    Declined {
        /// The provider's reason.
        reason: String,
    },
    /// The answer is not known: the call timed out, the connection broke, the provider failed.
    /// The money may or may not have moved; reconciliation asks the provider.
    Unknown {
        /// Why the answer is not known.
        reason: String,
    },
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// The intent is recorded; the gateway call is under way (or died with its process).
    Pending,
    /// The gateway's answer is not known (a timeout, a provider error); reconciliation asks the
    /// provider what became of the charge.
    Unknown,
    /// Money taken.
    Succeeded,
    /// Charge refused; no money moved.
    Failed,
}

impl PaymentStatus {
    /// Whether the charge still waits for the provider's answer.
    #[must_use]
    pub fn is_undecided(self) -> bool {
        matches!(self, Self::Pending | Self::Unknown)
    }
}

/// Where one refund stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundStatus {
    /// Asked of the gateway; no confirmed answer yet (it is retried until there is one).
    Requested,
    /// The gateway gave the money back.
    Refunded,
    /// The gateway refused; no money moved.
    Declined {
        /// The provider's reason.
        reason: String,
    },
}

/// One refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    /// The refund, the provider's idempotency key.
    pub refund_id: RefundId,
    /// How much.
    pub amount: Money,
    /// Why.
    pub reason: String,
    /// Where it stands.
    pub status: RefundStatus,
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
    /// Sum of the refunds the gateway confirmed (never more than `amount`).
    pub refunded: Money,
    /// Every refund asked for, in order.
    pub refunds: Vec<RefundRecord>,
}

impl PaymentRecord {
    /// What can still be refunded: the amount, less what was refunded and what is being refunded.
    ///
    /// # Errors
    /// [`DomainError`] if the sums do not fit (a corrupt log).
    pub fn refundable(&self) -> Result<Money, DomainError> {
        self.refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Requested)
            .try_fold(self.amount.checked_sub(self.refunded)?, |left, r| left.checked_sub(r.amount))
    }

    /// The refund `refund_id`, if asked for.
    #[must_use]
    pub fn refund(&self, refund_id: RefundId) -> Option<&RefundRecord> {
        self.refunds.iter().find(|r| r.refund_id == refund_id)
    }
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
    /// The refund would exceed what was paid minus what was refunded or is being refunded.
    #[error("payment {payment_id}: refund {requested} exceeds refundable {refundable}")]
    RefundExceedsPaid {
        /// The payment.
        payment_id: PaymentId,
        /// Refund asked for.
        requested: Money,
        /// What can still be refunded.
        refundable: Money,
    },
    /// A refund id was reused for another amount.
    #[error("payment {payment_id}: refund {refund_id} already exists with another amount")]
    RefundIdReused {
        /// The payment.
        payment_id: PaymentId,
        /// The refund.
        refund_id: RefundId,
    },
    /// An outcome for a refund never asked for.
    #[error("payment {payment_id}: no refund {refund_id}")]
    RefundNotFound {
        /// The payment.
        payment_id: PaymentId,
        /// The refund.
        refund_id: RefundId,
    },
    /// A refund's reason cannot be stored (it holds a NUL character).
    #[error("payment {payment_id}: {source}")]
    InvalidText {
        /// The payment.
        payment_id: PaymentId,
        /// Which text and why.
        #[source]
        source: DomainError,
    },
    /// Money arithmetic failed (overflow, currency mismatch).
    #[error("payment {payment_id}: {source}")]
    Money {
        /// The payment.
        payment_id: PaymentId,
        /// The domain error.
        #[source]
        source: DomainError,
    },
}

/// Commands, events and the rejection of the Payment aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentAction {
    /// Record the intent to charge `amount` for a reservation. The customer's token never comes
    /// here: it goes from the API call to the gateway in memory.
    ProcessPayment {
        /// The payment (generated by the caller).
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
    },
    /// Record the intent to give back part or all of a successful payment; the system then asks
    /// the gateway and records its answer with [`PaymentAction::RecordRefundOutcome`].
    RefundPayment {
        /// The payment.
        payment_id: PaymentId,
        /// The refund, the provider's idempotency key.
        refund_id: RefundId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
        /// Refund at most `amount`: what is left of the payment when less is left (nothing when
        /// nothing is), instead of refusing. The saga's refunds of seats and of cancelled events
        /// ask so: the amount they were decided with may have shrunk since, under another
        /// refund of the same payment, and what is left must still go back.
        #[serde(default)]
        at_most: bool,
    },
    /// The gateway answered the charge that `PaymentProcessed` recorded the intent of (or
    /// reconciliation learnt what became of it). Sent by the system.
    RecordGatewayOutcome {
        /// The payment.
        payment_id: PaymentId,
        /// The answer.
        outcome: GatewayOutcome,
    },
    /// The gateway answered a refund. Sent by the system.
    RecordRefundOutcome {
        /// The payment.
        payment_id: PaymentId,
        /// The refund.
        refund_id: RefundId,
        /// The answer.
        outcome: GatewayOutcome,
    },
    /// A charge was sent to the gateway: the durable intent.
    #[serde(rename = "PaymentProcessed")]
    PaymentProcessed {
        /// The payment.
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// How much.
        amount: Money,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        processed_at: DateTime<Utc>,
    },
    /// The gateway's answer to the charge is not known; reconciliation will ask.
    #[serde(rename = "PaymentOutcomeUnknown")]
    PaymentOutcomeUnknown {
        /// The payment.
        payment_id: PaymentId,
        /// What it pays for.
        reservation_id: ReservationId,
        /// Why the answer is not known.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        recorded_at: DateTime<Utc>,
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
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
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
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        failed_at: DateTime<Utc>,
    },
    /// A refund was asked for: the durable intent, before the gateway call.
    #[serde(rename = "RefundRequested")]
    RefundRequested {
        /// The payment.
        payment_id: PaymentId,
        /// What it was for.
        reservation_id: ReservationId,
        /// The refund.
        refund_id: RefundId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        requested_at: DateTime<Utc>,
    },
    /// The gateway gave money back.
    #[serde(rename = "PaymentRefunded")]
    PaymentRefunded {
        /// The payment.
        payment_id: PaymentId,
        /// What it was for.
        reservation_id: ReservationId,
        /// The refund (nil in logs written before refunds went through the gateway).
        #[serde(default = "legacy_refund_id")]
        refund_id: RefundId,
        /// How much.
        amount: Money,
        /// Why.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        refunded_at: DateTime<Utc>,
    },
    /// The gateway refused a refund; no money moved.
    #[serde(rename = "RefundDeclined")]
    RefundDeclined {
        /// The payment.
        payment_id: PaymentId,
        /// What it was for.
        reservation_id: ReservationId,
        /// The refund.
        refund_id: RefundId,
        /// The provider's reason.
        reason: String,
        /// When.
        #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
        declined_at: DateTime<Utc>,
    },
    /// A command was refused.
    Rejected(PaymentError),
}

fn legacy_refund_id() -> RefundId {
    RefundId::from_uuid(uuid::Uuid::nil())
}

impl PaymentAction {
    /// The payment this action addresses (`None` for a rejection).
    #[must_use]
    pub fn payment_id(&self) -> Option<PaymentId> {
        match self {
            Self::ProcessPayment { payment_id, .. }
            | Self::RefundPayment { payment_id, .. }
            | Self::RecordGatewayOutcome { payment_id, .. }
            | Self::RecordRefundOutcome { payment_id, .. }
            | Self::PaymentProcessed { payment_id, .. }
            | Self::PaymentOutcomeUnknown { payment_id, .. }
            | Self::PaymentSucceeded { payment_id, .. }
            | Self::PaymentFailed { payment_id, .. }
            | Self::RefundRequested { payment_id, .. }
            | Self::PaymentRefunded { payment_id, .. }
            | Self::RefundDeclined { payment_id, .. } => Some(*payment_id),
            Self::Rejected(_) => None,
        }
    }
}

impl Message for PaymentAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::ProcessPayment { .. }
            | Self::RefundPayment { .. }
            | Self::RecordGatewayOutcome { .. }
            | Self::RecordRefundOutcome { .. } => MessageKind::Command,
            Self::PaymentProcessed { .. }
            | Self::PaymentOutcomeUnknown { .. }
            | Self::PaymentSucceeded { .. }
            | Self::PaymentFailed { .. }
            | Self::RefundRequested { .. }
            | Self::PaymentRefunded { .. }
            | Self::RefundDeclined { .. } => MessageKind::Event,
            Self::Rejected(_) => MessageKind::Rejection,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::ProcessPayment { .. } => "ProcessPayment",
            Self::RefundPayment { .. } => "RefundPayment",
            Self::RecordGatewayOutcome { .. } => "RecordGatewayOutcome",
            Self::RecordRefundOutcome { .. } => "RecordRefundOutcome",
            Self::PaymentProcessed { .. } => "PaymentProcessed",
            Self::PaymentOutcomeUnknown { .. } => "PaymentOutcomeUnknown",
            Self::PaymentSucceeded { .. } => "PaymentSucceeded",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::RefundRequested { .. } => "RefundRequested",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::RefundDeclined { .. } => "RefundDeclined",
            Self::Rejected(_) => "PaymentRejected",
        }
    }
}

/// Dependencies of the Payment reducer.
#[derive(Debug, Clone)]
pub struct PaymentEnv {
    /// Timestamps.
    pub clock: Arc<dyn Clock>,
}

impl PaymentEnv {
    /// An environment reading `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// The Payment reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentReducer;

impl Reducer for PaymentReducer {
    type State = PaymentState;
    type Action = PaymentAction;
    type Env = PaymentEnv;

    /// A payment starts with `ProcessPayment`.
    fn creates(action: &PaymentAction) -> bool {
        matches!(action, PaymentAction::ProcessPayment { .. })
    }

    /// The charge's answer is recorded and no refund waits for the provider.
    fn at_rest(state: &PaymentState) -> bool {
        state.payment.as_ref().is_some_and(|p| {
            matches!(p.status, PaymentStatus::Succeeded | PaymentStatus::Failed)
                && p.refunds.iter().all(|r| r.status != RefundStatus::Requested)
        })
    }

    fn reduce(&self, state: &mut PaymentState, action: PaymentAction, env: &PaymentEnv) -> Effects<PaymentAction> {
        event_sourced(state, action, |s, a| decide(s, a, env), apply, PaymentAction::Rejected)
    }
}

type Decided = Result<SmallVec<[PaymentAction; 4]>, PaymentError>;

fn decide(state: &PaymentState, command: PaymentAction, env: &PaymentEnv) -> Decided {
    let now = env.clock.now();
    if let PaymentAction::ProcessPayment { payment_id, reservation_id, amount } = command {
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
    match command {
        PaymentAction::RecordGatewayOutcome { outcome, .. } => Ok(record_outcome(payment, outcome, now)),
        PaymentAction::RefundPayment { refund_id, amount, reason, at_most, .. } => {
            ensure_storable_text("refund reason", &reason)
                .map_err(|source| PaymentError::InvalidText { payment_id, source })?;
            if payment.status != PaymentStatus::Succeeded {
                return Err(PaymentError::NotRefundable { payment_id, status: payment.status });
            }
            if !amount.is_positive() {
                return Err(PaymentError::NonPositiveAmount { payment_id, amount });
            }
            if let Some(existing) = payment.refund(refund_id) {
                let same =
                    existing.amount == amount || (at_most && existing.amount.minor_units() <= amount.minor_units());
                return if same {
                    Ok(smallvec![])
                } else {
                    Err(PaymentError::RefundIdReused { payment_id, refund_id })
                };
            }
            let money = |source| PaymentError::Money { payment_id, source };
            let refundable = payment.refundable().map_err(money)?;
            let amount = if at_most
                && refundable.currency() == amount.currency()
                && refundable.minor_units() < amount.minor_units()
            {
                if !refundable.is_positive() {
                    return Ok(smallvec![]);
                }
                refundable
            } else {
                amount
            };
            let after = refundable.checked_sub(amount).map_err(money)?;
            if after.minor_units() < 0 {
                return Err(PaymentError::RefundExceedsPaid { payment_id, requested: amount, refundable });
            }
            Ok(smallvec![PaymentAction::RefundRequested {
                payment_id,
                reservation_id,
                refund_id,
                amount,
                reason,
                requested_at: now
            }])
        }
        PaymentAction::RecordRefundOutcome { refund_id, outcome, .. } => {
            let refund = payment.refund(refund_id).ok_or(PaymentError::RefundNotFound { payment_id, refund_id })?;
            if refund.status != RefundStatus::Requested {
                return Ok(smallvec![]);
            }
            Ok(match outcome {
                GatewayOutcome::Approved => smallvec![PaymentAction::PaymentRefunded {
                    payment_id,
                    reservation_id,
                    refund_id,
                    amount: refund.amount,
                    reason: refund.reason.clone(),
                    refunded_at: now,
                }],
                GatewayOutcome::Declined { reason } => smallvec![PaymentAction::RefundDeclined {
                    payment_id,
                    reservation_id,
                    refund_id,
                    reason,
                    declined_at: now,
                }],
                // Not known yet: the refund stays requested and is sent again.
                GatewayOutcome::Unknown { .. } => smallvec![],
            })
        }
        _ => Ok(smallvec![]),
    }
}

/// The gateway's (or reconciliation's) answer about the charge. The provider's word on money
/// wins: an approval after a recorded failure (a failure presumed by reconciliation, a charge
/// that landed after its call timed out) is recorded, and the reservation, long ended, has it
/// refunded. A decline or an unknown answer after a decision is a late duplicate.
fn record_outcome(
    payment: &PaymentRecord,
    outcome: GatewayOutcome,
    now: DateTime<Utc>,
) -> SmallVec<[PaymentAction; 4]> {
    let (payment_id, reservation_id) = (payment.payment_id, payment.reservation_id);
    match (outcome, payment.status) {
        (GatewayOutcome::Approved, PaymentStatus::Pending | PaymentStatus::Unknown | PaymentStatus::Failed) => {
            smallvec![PaymentAction::PaymentSucceeded {
                payment_id,
                reservation_id,
                amount: payment.amount,
                succeeded_at: now
            }]
        }
        (GatewayOutcome::Declined { reason }, status) if status.is_undecided() => {
            smallvec![PaymentAction::PaymentFailed { payment_id, reservation_id, reason, failed_at: now }]
        }
        (GatewayOutcome::Unknown { reason }, PaymentStatus::Pending) => {
            smallvec![PaymentAction::PaymentOutcomeUnknown { payment_id, reservation_id, reason, recorded_at: now }]
        }
        _ => smallvec![],
    }
}

fn apply(state: &mut PaymentState, event: &PaymentAction) {
    if let PaymentAction::PaymentProcessed { payment_id, reservation_id, amount, .. } = event {
        state.payment = Some(PaymentRecord {
            payment_id: *payment_id,
            reservation_id: *reservation_id,
            amount: *amount,
            status: PaymentStatus::Pending,
            refunded: Money::zero(amount.currency()),
            refunds: Vec::new(),
        });
        return;
    }
    let Some(p) = state.payment.as_mut() else { return };
    match event {
        PaymentAction::PaymentOutcomeUnknown { .. } => p.status = PaymentStatus::Unknown,
        PaymentAction::PaymentSucceeded { .. } => p.status = PaymentStatus::Succeeded,
        PaymentAction::PaymentFailed { .. } => p.status = PaymentStatus::Failed,
        PaymentAction::RefundRequested { refund_id, amount, reason, .. } => {
            p.refunds.push(RefundRecord {
                refund_id: *refund_id,
                amount: *amount,
                reason: reason.clone(),
                status: RefundStatus::Requested,
            });
        }
        PaymentAction::PaymentRefunded { refund_id, amount, .. } => {
            // Validated when decided; saturate rather than panic if a corrupt log says otherwise.
            p.refunded = p.refunded.checked_add(*amount).unwrap_or(p.amount);
            if let Some(refund) = p.refunds.iter_mut().find(|r| r.refund_id == *refund_id) {
                refund.status = RefundStatus::Refunded;
            }
        }
        PaymentAction::RefundDeclined { refund_id, reason, .. } => {
            if let Some(refund) = p.refunds.iter_mut().find(|r| r.refund_id == *refund_id) {
                refund.status = RefundStatus::Declined { reason: reason.clone() };
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::domain::Currency;
    use crate::framework::Effect;
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
    fn test() -> ReducerTest<PaymentReducer> {
        ReducerTest::new(PaymentReducer, PaymentEnv::new(Arc::new(FixedClock::new(now()))))
    }
    fn process(amount: i64) -> PaymentAction {
        PaymentAction::ProcessPayment { payment_id: pid(), reservation_id: rid(), amount: eur(amount) }
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
    fn refund_id(n: u128) -> RefundId {
        RefundId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }
    fn refund(n: u128, amount: i64) -> PaymentAction {
        PaymentAction::RefundPayment {
            at_most: false,
            payment_id: pid(),
            refund_id: refund_id(n),
            amount: eur(amount),
            reason: "r".into(),
        }
    }
    fn requested(n: u128, amount: i64) -> PaymentAction {
        PaymentAction::RefundRequested {
            payment_id: pid(),
            reservation_id: rid(),
            refund_id: refund_id(n),
            amount: eur(amount),
            reason: "r".into(),
            requested_at: now(),
        }
    }
    fn refunded(n: u128, amount: i64) -> PaymentAction {
        PaymentAction::PaymentRefunded {
            payment_id: pid(),
            reservation_id: rid(),
            refund_id: refund_id(n),
            amount: eur(amount),
            reason: "r".into(),
            refunded_at: now(),
        }
    }
    fn refund_outcome(n: u128, outcome: GatewayOutcome) -> PaymentAction {
        PaymentAction::RecordRefundOutcome { payment_id: pid(), refund_id: refund_id(n), outcome }
    }
    #[test]
    fn process_records_the_intent_and_the_outcome_comes_back_as_a_command() {
        let env = PaymentEnv::new(Arc::new(FixedClock::new(now())));
        let mut state = PaymentState::default();
        let effects = PaymentReducer.reduce(&mut state, process(1_000), &env);
        assert!(matches!(effects.as_slice(), [Effect::Persist(events)] if events[..] == [processed(1_000)]));
        assert_eq!(state.payment.as_ref().map(|p| p.status), Some(PaymentStatus::Pending));
        let answer = PaymentAction::RecordGatewayOutcome { payment_id: pid(), outcome: GatewayOutcome::Approved };
        let effects = PaymentReducer.reduce(&mut state, answer, &env);
        assert!(matches!(effects.as_slice(), [Effect::Persist(events)] if events[..] == [succeeded(1_000)]));
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
    fn an_unknown_answer_is_recorded_and_a_late_approval_wins_over_a_presumed_failure() -> Result<(), ReducerTestError>
    {
        let outcome = |outcome| PaymentAction::RecordGatewayOutcome { payment_id: pid(), outcome };
        let unknown = || outcome(GatewayOutcome::Unknown { reason: "timeout".into() });
        let became_unknown = PaymentAction::PaymentOutcomeUnknown {
            payment_id: pid(),
            reservation_id: rid(),
            reason: "timeout".into(),
            recorded_at: now(),
        };
        test()
            .given([processed(1_000)])?
            .when(unknown())
            .then_persisted(std::slice::from_ref(&became_unknown))?
            .then_state("unknown", |s| s.payment.as_ref().is_some_and(|p| p.status == PaymentStatus::Unknown))?;
        test().given([processed(1_000), became_unknown.clone()])?.when(unknown()).then_persisted(&[])?;
        test()
            .given([processed(1_000), became_unknown.clone()])?
            .when(outcome(GatewayOutcome::Approved))
            .then_persisted(&[succeeded(1_000)])?;
        test()
            .given([processed(1_000), became_unknown])?
            .when(outcome(GatewayOutcome::Declined { reason: "card".into() }))
            .then_persisted(&[failed("card")])?;
        test()
            .given([processed(1_000), failed("presumed")])?
            .when(outcome(GatewayOutcome::Approved))
            .then_persisted(&[succeeded(1_000)])?;
        test().given([processed(1_000), succeeded(1_000)])?.when(unknown()).then_persisted(&[])?.then_unchanged()?;
        Ok(())
    }

    #[test]
    fn a_refund_of_at_most_an_amount_gives_back_what_is_left() -> Result<(), ReducerTestError> {
        let at_most = |n, amount| match refund(n, amount) {
            PaymentAction::RefundPayment { payment_id, refund_id, amount, reason, .. } => {
                PaymentAction::RefundPayment { payment_id, refund_id, amount, reason, at_most: true }
            }
            other => other,
        };
        let paid = || [processed(1_000), succeeded(1_000)];
        // 1,000 paid, 400 on its way back: a refund of at most 900 takes the 600 left.
        test().given(paid())?.given([requested(1, 400)])?.when(at_most(2, 900)).then_persisted(&[requested(2, 600)])?;
        test().given(paid())?.given([requested(1, 400)])?.when(at_most(2, 500)).then_persisted(&[requested(2, 500)])?;
        // Redelivered after it was cut to what was left: nothing more.
        test()
            .given(paid())?
            .given([requested(1, 400), requested(2, 600)])?
            .when(at_most(2, 900))
            .then_persisted(&[])?;
        // Nothing left: nothing to do, and no refusal.
        test().given(paid())?.given([requested(1, 1_000)])?.when(at_most(2, 900)).then_persisted(&[])?;
        Ok(())
    }

    #[test]
    fn refunds_never_exceed_what_was_paid_or_is_being_refunded() -> Result<(), ReducerTestError> {
        let paid = || [processed(1_000), succeeded(1_000)];
        test()
            .given(paid())?
            .when(refund(1, 400))
            .then_persisted(&[requested(1, 400)])?
            .then_state("nothing refunded before the gateway says so", |s| {
                s.payment.as_ref().is_some_and(|p| p.refunded == eur(0) && p.refundable() == Ok(eur(600)))
            })?;
        test().given(paid())?.given([requested(1, 400)])?.when(refund(1, 400)).then_persisted(&[])?.then_unchanged()?;
        test().given(paid())?.given([requested(1, 400)])?.when(refund(1, 300)).then_rejected("reused id", |a| {
            matches!(a, PaymentAction::Rejected(PaymentError::RefundIdReused { .. }))
        })?;
        test()
            .given(paid())?
            .given([requested(1, 400)])?
            .when(refund(2, 601))
            .then_rejected("pending counts", |a| {
                matches!(a, PaymentAction::Rejected(PaymentError::RefundExceedsPaid { .. }))
            })?;
        test()
            .given(paid())?
            .given([requested(1, 400)])?
            .when(refund_outcome(1, GatewayOutcome::Approved))
            .then_persisted(&[refunded(1, 400)])?
            .then_state("400 refunded", |s| s.payment.as_ref().is_some_and(|p| p.refunded == eur(400)))?;
        test()
            .given(paid())?
            .given([requested(1, 400), refunded(1, 400)])?
            .when(refund_outcome(1, GatewayOutcome::Approved))
            .then_persisted(&[])?;
        test()
            .given(paid())?
            .given([requested(1, 1_000), refunded(1, 1_000)])?
            .when(refund(2, 1))
            .then_rejected("double", |a| {
                matches!(a, PaymentAction::Rejected(PaymentError::RefundExceedsPaid { .. }))
            })?;
        test().given(paid())?.when(refund(1, 1_001)).then_rejected("too much", |a| {
            matches!(a, PaymentAction::Rejected(PaymentError::RefundExceedsPaid { .. }))
        })?;
        Ok(())
    }

    #[test]
    fn a_declined_refund_frees_its_amount_and_an_unknown_one_stays_requested() -> Result<(), ReducerTestError> {
        let declined = PaymentAction::RefundDeclined {
            payment_id: pid(),
            reservation_id: rid(),
            refund_id: refund_id(1),
            reason: "closed card".into(),
            declined_at: now(),
        };
        test()
            .given([processed(1_000), succeeded(1_000), requested(1, 1_000)])?
            .when(refund_outcome(1, GatewayOutcome::Declined { reason: "closed card".into() }))
            .then_persisted(std::slice::from_ref(&declined))?
            .then_state("refundable again", |s| s.payment.as_ref().is_some_and(|p| p.refundable() == Ok(eur(1_000))))?;
        test()
            .given([processed(1_000), succeeded(1_000), requested(1, 1_000)])?
            .when(refund_outcome(1, GatewayOutcome::Unknown { reason: "timeout".into() }))
            .then_persisted(&[])?
            .then_unchanged()?;
        test()
            .given([processed(1_000), succeeded(1_000)])?
            .when(refund_outcome(9, GatewayOutcome::Approved))
            .then_rejected("never asked", |a| {
                matches!(a, PaymentAction::Rejected(PaymentError::RefundNotFound { .. }))
            })?;
        Ok(())
    }

    #[test]
    fn refund_rejections() -> Result<(), ReducerTestError> {
        test().given([processed(1_000)])?.when(refund(1, 1)).then_rejected("pending", |a| {
            matches!(a, PaymentAction::Rejected(PaymentError::NotRefundable { status: PaymentStatus::Pending, .. }))
        })?;
        test()
            .given([processed(1_000), succeeded(1_000)])?
            .when(refund(1, 0))
            .then_rejected("zero", |a| matches!(a, PaymentAction::Rejected(PaymentError::NonPositiveAmount { .. })))?;
        let usd = PaymentAction::RefundPayment {
            at_most: false,
            payment_id: pid(),
            refund_id: refund_id(1),
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
            .when(refund(1, 1))
            .then_rejected("unknown", |a| matches!(a, PaymentAction::Rejected(PaymentError::NotFound { .. })))?;
        let nul = PaymentAction::RefundPayment {
            at_most: false,
            payment_id: pid(),
            refund_id: refund_id(1),
            amount: Money::new(1, Currency::EUR),
            reason: "good\0will".into(),
        };
        test().given([processed(1_000), succeeded(1_000)])?.when(nul).then_rejected("nul reason", |a| {
            matches!(
                a,
                PaymentAction::Rejected(PaymentError::InvalidText { source: DomainError::InvalidText { .. }, .. })
            )
        })?;
        Ok(())
    }

    #[test]
    fn event_names_equal_serde_tags() {
        for event in [processed(1), succeeded(1), failed("x"), requested(1, 1), refunded(1, 1)] {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json.as_object().unwrap().keys().next().unwrap(), event.name());
            assert_eq!(serde_json::from_value::<PaymentAction>(json).unwrap(), event);
        }
    }

    #[test]
    fn a_payment_is_at_rest_once_answered_with_no_refund_waiting() {
        let mut state = PaymentState::default();
        apply(&mut state, &processed(5_000));
        assert!(!PaymentReducer::at_rest(&state), "waiting for the gateway");
        apply(&mut state, &succeeded(5_000));
        assert!(PaymentReducer::at_rest(&state));
        apply(&mut state, &requested(1, 1_000));
        assert!(!PaymentReducer::at_rest(&state), "a refund waits for the provider");
        apply(&mut state, &refunded(1, 1_000));
        assert!(PaymentReducer::at_rest(&state));
        let mut declined = PaymentState::default();
        apply(&mut declined, &processed(5_000));
        apply(&mut declined, &failed("card declined"));
        assert!(PaymentReducer::at_rest(&declined));
    }
}
