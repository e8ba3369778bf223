//! Adapter-independent checks every `PaymentGateway` must pass: the guarantees listed in the
//! gateway port's documentation (`src/system/gateway/mod.rs`). Each check uses fresh random
//! payment and refund ids, so checks are independent and can share one gateway.
//!
//! A test file provides a [`Harness`] (the gateway, a token it approves, a token it declines and
//! a [`GatewayFaults`] hook) and calls [`gateway_conformance_suite!`] with an async function that
//! builds one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code, clippy::missing_panics_doc)]

use boxoffice::domain::{Currency, Money, PaymentId, RefundId};
use boxoffice::system::{ChargeStatus, GatewayOutcome, PaymentGateway, SimulatedGateway};
use secrecy::SecretString;

/// How a test makes the gateway lose an answer, and looks into the provider's ledger.
pub trait GatewayFaults: Send + Sync {
    /// The next call takes effect at the provider, but its answer never reaches the caller.
    fn lose_next_answer(&self);

    /// How many successful charges the provider holds under `payment_id`, when the test can see
    /// its ledger. The refund-based proof of "charged once" alone cannot catch an adapter that
    /// charges twice but refunds from one charge only.
    fn charges_taken(&self, _payment_id: PaymentId) -> Option<usize> {
        None
    }
}

impl GatewayFaults for SimulatedGateway {
    fn lose_next_answer(&self) {
        self.lose_next_answers(1);
    }

    fn charges_taken(&self, payment_id: PaymentId) -> Option<usize> {
        Some(usize::from(self.charged(payment_id).is_some()))
    }
}

fn assert_charged_once(subject: Subject<'_>, payment_id: PaymentId) {
    if let Some(taken) = subject.faults.charges_taken(payment_id) {
        assert_eq!(taken, 1, "the provider holds exactly one successful charge under the payment id");
    }
}

/// What the checks run against.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The adapter under test.
    pub gateway: &'a dyn PaymentGateway,
    /// A token the provider approves.
    pub approving: &'a SecretString,
    /// A token the provider declines.
    pub declining: &'a SecretString,
    /// The fault hook.
    pub faults: &'a dyn GatewayFaults,
}

/// Owns whatever a [`Subject`] borrows (a gateway, a fake server) for one test.
pub trait Harness {
    /// The subject of the checks.
    fn subject(&self) -> Subject<'_>;
}

/// Every check, one `#[tokio::test]` each; `$setup` is an async fn returning a [`Harness`].
macro_rules! gateway_conformance_suite {
    ($setup:path) => {
        gateway_conformance::gateway_conformance_suite!(
            $setup;
            same_charge_key_charges_once,
            unknown_outcome_is_resolved_by_status,
            refund_above_what_was_paid_is_declined,
            refunds_are_idempotent_by_refund_id,
            status_tells_not_charged_and_declined,
            refund_of_a_declined_charge_is_declined,
        );
    };
    ($setup:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let harness = $setup().await;
            gateway_conformance::$name(gateway_conformance::Harness::subject(&harness)).await;
        }
    )*};
}
pub(crate) use gateway_conformance_suite;

/// `minor_units` euro cents.
pub fn eur(minor_units: i64) -> Money {
    Money::new(minor_units, Currency::EUR)
}

fn declined(outcome: &GatewayOutcome) -> bool {
    matches!(outcome, GatewayOutcome::Declined { .. })
}

/// Charges `amount` with the approving token under a fresh payment id and checks it was approved.
pub async fn approved_charge(subject: Subject<'_>, amount: Money) -> PaymentId {
    let payment = PaymentId::new_v4();
    let outcome = subject.gateway.charge(payment, amount, subject.approving).await;
    assert_eq!(outcome, GatewayOutcome::Approved, "a charge with the approving token");
    payment
}

/// Guarantee 1: the same payment id charged twice takes the money once and answers as the first
/// call did. Only one charge's worth can be refunded.
pub async fn same_charge_key_charges_once(subject: Subject<'_>) {
    let gateway = subject.gateway;
    let payment = PaymentId::new_v4();
    let first = gateway.charge(payment, eur(1_000), subject.approving).await;
    let second = gateway.charge(payment, eur(1_000), subject.approving).await;
    assert_eq!(first, GatewayOutcome::Approved);
    assert_eq!(second, GatewayOutcome::Approved, "a repeated charge answers as the first");
    assert_eq!(gateway.status(payment).await, ChargeStatus::Approved);
    assert_charged_once(subject, payment);
    let all_of_it = gateway.refund(payment, RefundId::new_v4(), eur(1_000)).await;
    assert_eq!(all_of_it, GatewayOutcome::Approved, "the whole charge can be refunded");
    let more = gateway.refund(payment, RefundId::new_v4(), eur(1)).await;
    assert!(declined(&more), "only one charge's worth was taken, so a further cent is declined, got {more:?}");
}

/// Guarantees 3 and 4: a charge whose answer was lost answers `Unknown`, and `status` tells it
/// took the money; charging again under the same id takes nothing more.
pub async fn unknown_outcome_is_resolved_by_status(subject: Subject<'_>) {
    let gateway = subject.gateway;
    let payment = PaymentId::new_v4();
    subject.faults.lose_next_answer();
    let outcome = gateway.charge(payment, eur(1_000), subject.approving).await;
    assert!(matches!(outcome, GatewayOutcome::Unknown { .. }), "a lost answer is Unknown, got {outcome:?}");
    assert_eq!(gateway.status(payment).await, ChargeStatus::Approved, "status tells the money moved");
    let retry = gateway.charge(payment, eur(1_000), subject.approving).await;
    assert_eq!(retry, GatewayOutcome::Approved, "a retry answers as the charge that landed");
    assert_charged_once(subject, payment);
    assert_eq!(gateway.refund(payment, RefundId::new_v4(), eur(1_000)).await, GatewayOutcome::Approved);
    let more = gateway.refund(payment, RefundId::new_v4(), eur(1)).await;
    assert!(declined(&more), "the retry took nothing more, got {more:?}");
}

/// Guarantee 5: a refund above what was paid is declined, never clipped, and changes nothing.
pub async fn refund_above_what_was_paid_is_declined(subject: Subject<'_>) {
    let gateway = subject.gateway;
    let payment = approved_charge(subject, eur(1_000)).await;
    let too_much = gateway.refund(payment, RefundId::new_v4(), eur(1_001)).await;
    assert!(declined(&too_much), "a refund above the charge is declined, got {too_much:?}");
    let exact = gateway.refund(payment, RefundId::new_v4(), eur(1_000)).await;
    assert_eq!(exact, GatewayOutcome::Approved, "the declined refund gave nothing back");
}

/// Guarantee 2: the same refund id twice gives the money back once.
pub async fn refunds_are_idempotent_by_refund_id(subject: Subject<'_>) {
    let gateway = subject.gateway;
    let payment = approved_charge(subject, eur(1_000)).await;
    let r1 = RefundId::new_v4();
    assert_eq!(gateway.refund(payment, r1, eur(400)).await, GatewayOutcome::Approved);
    assert_eq!(gateway.refund(payment, r1, eur(400)).await, GatewayOutcome::Approved, "a repeat answers the same");
    assert_eq!(
        gateway.refund(payment, RefundId::new_v4(), eur(600)).await,
        GatewayOutcome::Approved,
        "the repeat gave nothing more back, so 600 are left"
    );
    let more = gateway.refund(payment, RefundId::new_v4(), eur(1)).await;
    assert!(declined(&more), "the whole charge is refunded, got {more:?}");
}

/// Guarantee 4: status of an id never charged is `NotCharged`; of a declined charge, `Declined`.
pub async fn status_tells_not_charged_and_declined(subject: Subject<'_>) {
    let gateway = subject.gateway;
    assert_eq!(gateway.status(PaymentId::new_v4()).await, ChargeStatus::NotCharged);
    let payment = PaymentId::new_v4();
    let outcome = gateway.charge(payment, eur(1_000), subject.declining).await;
    assert!(declined(&outcome), "the declining token is declined, got {outcome:?}");
    let status = gateway.status(payment).await;
    assert!(matches!(status, ChargeStatus::Declined { .. }), "status of a declined charge, got {status:?}");
}

/// A declined charge took nothing, so nothing can be refunded.
pub async fn refund_of_a_declined_charge_is_declined(subject: Subject<'_>) {
    let gateway = subject.gateway;
    let payment = PaymentId::new_v4();
    let outcome = gateway.charge(payment, eur(1_000), subject.declining).await;
    assert!(declined(&outcome), "the declining token is declined, got {outcome:?}");
    let refund = gateway.refund(payment, RefundId::new_v4(), eur(1_000)).await;
    assert!(declined(&refund), "a refund of a declined charge is declined, got {refund:?}");
}
