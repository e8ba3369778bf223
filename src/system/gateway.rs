//! The payment gateway port: the one place the system talks to a payment provider. Reducers
//! never call it; the saga calls it after `PaymentProcessed` (the durable intent) is in the log
//! and records the answer through the command engine.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use crate::aggregates::GatewayOutcome;
use crate::domain::{Money, PaymentId};

/// A payment provider. Object-safe: the system holds an `Arc<dyn PaymentGateway>`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, PaymentId};

    fn pid() -> PaymentId {
        PaymentId::from_uuid(uuid::Uuid::from_u128(5))
    }
    fn eur(m: i64) -> Money {
        Money::new(m, Currency::EUR)
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
}
