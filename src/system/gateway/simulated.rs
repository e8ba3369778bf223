//! [`SimulatedGateway`]: an in-memory payment provider for tests and demos. It keeps a ledger
//! like a real provider (charges by payment id, refunds by refund id), so it honours the whole
//! [gateway contract](super::PaymentGateway), and it can be told to decline, to lose answers, to be unreachable
//! or to be slow.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{ChargeStatus, GatewayOutcome, PaymentGateway};
use crate::domain::{Money, PaymentId, RefundId};

/// The token the simulated provider always declines, whatever its settings.
const DECLINED_TOKEN: &str = "tok_declined";

/// A payment provider in memory, for tests and demos. **It moves no money**: a system built
/// without an explicit gateway uses one and says so in a warning.
///
/// Charges are approved unless the gateway is told otherwise ([`SimulatedGateway::always_fail`],
/// [`SimulatedGateway::fail_next`]) or the token is `tok_declined`. Faults for tests:
/// [`SimulatedGateway::lose_next_answers`] (the money moves, the answer is lost: `Unknown`),
/// [`SimulatedGateway::unreachable_next`] (nothing happens: `Unknown`) and
/// [`SimulatedGateway::set_delay`].
#[derive(Debug, Default)]
pub struct SimulatedGateway {
    state: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    always_fail: bool,
    declines_left: u32,
    lost_answers_left: u32,
    unreachable_left: u32,
    delay: Duration,
    charges: HashMap<PaymentId, Charged>,
    refunds: HashMap<RefundId, (PaymentId, Money, GatewayOutcome)>,
    charge_calls: usize,
    refund_calls: usize,
}

#[derive(Debug, Clone)]
struct Charged {
    amount: Money,
    outcome: GatewayOutcome,
    refunded: Money,
}

/// What one call does, decided under the lock before any delay.
enum Fault {
    None,
    LoseAnswer,
    Unreachable,
}

impl SimulatedGateway {
    /// Approves every charge.
    #[must_use]
    pub fn always_succeed() -> Self {
        Self::default()
    }

    /// Declines every charge.
    #[must_use]
    pub fn always_fail() -> Self {
        let gateway = Self::default();
        gateway.ledger().always_fail = true;
        gateway
    }

    /// Declines the next `n` new charges, then approves.
    #[must_use]
    pub fn fail_next(n: u32) -> Self {
        let gateway = Self::default();
        gateway.add_failures(n);
        gateway
    }

    /// Adds `n` more declines to come.
    pub fn add_failures(&self, n: u32) {
        let mut ledger = self.ledger();
        ledger.declines_left = ledger.declines_left.saturating_add(n);
    }

    /// The next `n` calls (charges or refunds) take effect but their answer is lost: they return
    /// [`GatewayOutcome::Unknown`], as a timeout after the provider acted would.
    pub fn lose_next_answers(&self, n: u32) {
        let mut ledger = self.ledger();
        ledger.lost_answers_left = ledger.lost_answers_left.saturating_add(n);
    }

    /// The next `n` calls (charges, refunds or status queries) never reach the provider: they
    /// change nothing and return `Unknown`.
    pub fn unreachable_next(&self, n: u32) {
        let mut ledger = self.ledger();
        ledger.unreachable_left = ledger.unreachable_left.saturating_add(n);
    }

    /// Every call waits `delay` before it answers.
    pub fn set_delay(&self, delay: Duration) {
        self.ledger().delay = delay;
    }

    /// What was taken for `payment_id` (`None` when nothing was).
    #[must_use]
    pub fn charged(&self, payment_id: PaymentId) -> Option<Money> {
        let ledger = self.ledger();
        ledger.charges.get(&payment_id).filter(|c| c.outcome == GatewayOutcome::Approved).map(|c| c.amount)
    }

    /// What was given back of `payment_id` so far.
    #[must_use]
    pub fn refunded(&self, payment_id: PaymentId) -> Option<Money> {
        self.ledger().charges.get(&payment_id).map(|c| c.refunded)
    }

    /// How many charge calls arrived (each retry counts).
    #[must_use]
    pub fn charge_calls(&self) -> usize {
        self.ledger().charge_calls
    }

    /// How many refund calls arrived (each retry counts).
    #[must_use]
    pub fn refund_calls(&self) -> usize {
        self.ledger().refund_calls
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One call: counted, then (after the delay) acted on and answered, unless a fault says
    /// otherwise.
    async fn call(
        &self,
        counter: impl FnOnce(&mut Ledger) -> &mut usize,
        act: impl FnOnce(&mut Ledger) -> GatewayOutcome,
    ) -> GatewayOutcome {
        let fault = {
            let mut ledger = self.ledger();
            *counter(&mut ledger) += 1;
            ledger.take_fault()
        };
        self.wait().await;
        let mut ledger = self.ledger();
        match fault {
            Fault::Unreachable => unknown("simulated provider unreachable"),
            Fault::LoseAnswer => {
                act(&mut ledger);
                unknown("simulated timeout after the provider acted")
            }
            Fault::None => act(&mut ledger),
        }
    }

    async fn wait(&self) {
        let delay = self.ledger().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

impl Ledger {
    fn take_unreachable(&mut self) -> Option<()> {
        self.unreachable_left = self.unreachable_left.checked_sub(1)?;
        Some(())
    }

    fn take_fault(&mut self) -> Fault {
        if let Some(left) = self.unreachable_left.checked_sub(1) {
            self.unreachable_left = left;
            Fault::Unreachable
        } else if let Some(left) = self.lost_answers_left.checked_sub(1) {
            self.lost_answers_left = left;
            Fault::LoseAnswer
        } else {
            Fault::None
        }
    }

    fn charge(&mut self, payment_id: PaymentId, amount: Money, token: &str) -> GatewayOutcome {
        if let Some(existing) = self.charges.get(&payment_id) {
            return existing.outcome.clone();
        }
        let take_decline = self.declines_left.checked_sub(1);
        let outcome = if self.always_fail || token == DECLINED_TOKEN || take_decline.is_some() {
            if let Some(left) = take_decline {
                self.declines_left = left;
            }
            GatewayOutcome::Declined { reason: "simulated decline".into() }
        } else {
            GatewayOutcome::Approved
        };
        let refunded = Money::zero(amount.currency());
        self.charges.insert(payment_id, Charged { amount, outcome: outcome.clone(), refunded });
        outcome
    }

    fn refund(&mut self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome {
        if let Some((_, _, outcome)) = self.refunds.get(&refund_id) {
            return outcome.clone();
        }
        let outcome = match self.charges.get_mut(&payment_id) {
            Some(charge) if charge.outcome == GatewayOutcome::Approved => {
                let left = charge.amount.checked_sub(charge.refunded).ok();
                let after = left.and_then(|left| left.checked_sub(amount).ok());
                match after {
                    Some(after) if amount.is_positive() && after.minor_units() >= 0 => {
                        charge.refunded = charge.refunded.checked_add(amount).unwrap_or(charge.amount);
                        GatewayOutcome::Approved
                    }
                    _ => GatewayOutcome::Declined { reason: "refund exceeds what is left of the charge".into() },
                }
            }
            _ => GatewayOutcome::Declined { reason: "no successful charge to refund".into() },
        };
        self.refunds.insert(refund_id, (payment_id, amount, outcome.clone()));
        outcome
    }
}

fn unknown(why: &str) -> GatewayOutcome {
    GatewayOutcome::Unknown { reason: why.to_owned() }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &SecretString) -> GatewayOutcome {
        self.call(|ledger| &mut ledger.charge_calls, |ledger| ledger.charge(payment_id, amount, token.expose_secret()))
            .await
    }

    async fn refund(&self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome {
        self.call(|ledger| &mut ledger.refund_calls, |ledger| ledger.refund(payment_id, refund_id, amount)).await
    }

    async fn status(&self, payment_id: PaymentId) -> ChargeStatus {
        let unreachable = matches!(self.ledger().take_unreachable(), Some(()));
        self.wait().await;
        if unreachable {
            return ChargeStatus::Unknown { reason: "simulated provider unreachable".into() };
        }
        match self.ledger().charges.get(&payment_id).map(|c| c.outcome.clone()) {
            None => ChargeStatus::NotCharged,
            Some(GatewayOutcome::Approved) => ChargeStatus::Approved,
            Some(GatewayOutcome::Declined { reason }) => ChargeStatus::Declined { reason },
            Some(GatewayOutcome::Unknown { reason }) => ChargeStatus::Unknown { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, PaymentId};

    fn pid(n: u128) -> PaymentId {
        PaymentId::from_uuid(uuid::Uuid::from_u128(n))
    }
    fn eur(m: i64) -> Money {
        Money::new(m, Currency::EUR)
    }
    fn tok() -> SecretString {
        SecretString::from("tok")
    }

    #[tokio::test]
    async fn fail_next_n_declines_n_new_charges_then_approves() {
        let gateway = SimulatedGateway::fail_next(2);
        let declined = GatewayOutcome::Declined { reason: "simulated decline".into() };
        assert_eq!(gateway.charge(pid(1), eur(1), &tok()).await, declined);
        assert_eq!(gateway.charge(pid(1), eur(1), &tok()).await, declined, "a repeat answers as the first call");
        assert_eq!(gateway.charge(pid(2), eur(1), &tok()).await, declined);
        assert_eq!(gateway.charge(pid(3), eur(1), &tok()).await, GatewayOutcome::Approved);
        gateway.add_failures(1);
        assert_eq!(gateway.charge(pid(4), eur(1), &tok()).await, declined);
        assert_eq!(gateway.charged(pid(3)), Some(eur(1)));
        assert_eq!(gateway.charged(pid(4)), None);
    }

    #[tokio::test]
    async fn a_lost_answer_moved_the_money_and_an_unreachable_call_did_not() {
        let gateway = SimulatedGateway::always_succeed();
        gateway.lose_next_answers(1);
        assert!(matches!(gateway.charge(pid(1), eur(5), &tok()).await, GatewayOutcome::Unknown { .. }));
        assert_eq!(gateway.status(pid(1)).await, ChargeStatus::Approved);
        gateway.unreachable_next(1);
        assert!(matches!(gateway.charge(pid(2), eur(5), &tok()).await, GatewayOutcome::Unknown { .. }));
        assert_eq!(gateway.status(pid(2)).await, ChargeStatus::NotCharged);
        assert_eq!(gateway.charge_calls(), 2);
    }
}
