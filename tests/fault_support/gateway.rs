//! [`CountingGateway`]: a payment provider that approves every charge and remembers which
//! payments it took money for, so a test can check each one against the log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use boxoffice::aggregates::GatewayOutcome;
use boxoffice::domain::{Money, PaymentId, RefundId};
use boxoffice::system::{ChargeStatus, PaymentGateway};
use secrecy::SecretString;

/// Approves every charge. Like a real provider it deduplicates on the payment id: the first
/// charge of a payment takes the money, later charges of the same id return the same answer
/// without taking it again (they are counted as repeats).
#[derive(Debug, Default)]
pub struct CountingGateway {
    charges: Mutex<BTreeMap<PaymentId, Charges>>,
}

/// What the gateway did for one payment id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charges {
    /// The amount taken (once).
    pub amount: Money,
    /// Charge calls for this payment id, the first included.
    pub calls: u32,
}

impl CountingGateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every payment id money was taken for.
    pub fn approved(&self) -> BTreeMap<PaymentId, Charges> {
        self.charges.lock().unwrap().clone()
    }

    /// Charge calls in total, repeats included.
    pub fn calls(&self) -> u32 {
        self.charges.lock().unwrap().values().map(|c| c.calls).sum()
    }
}

#[async_trait]
impl PaymentGateway for CountingGateway {
    async fn charge(&self, payment_id: PaymentId, amount: Money, _token: &SecretString) -> GatewayOutcome {
        let mut charges = self.charges.lock().unwrap();
        charges.entry(payment_id).and_modify(|c| c.calls += 1).or_insert(Charges { amount, calls: 1 });
        GatewayOutcome::Approved
    }

    async fn refund(&self, payment_id: PaymentId, _refund_id: RefundId, _amount: Money) -> GatewayOutcome {
        if self.charges.lock().unwrap().contains_key(&payment_id) {
            GatewayOutcome::Approved
        } else {
            GatewayOutcome::Declined { reason: "no charge to refund".into() }
        }
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        if self.charges.lock().unwrap().contains_key(&payment_id) {
            ChargeStatus::Approved
        } else {
            ChargeStatus::NotCharged
        }
    }
}
