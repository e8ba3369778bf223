//! The payment gateway port: the one place the system talks to a payment provider. Reducers
//! never call it. The saga calls [`PaymentGateway::charge`] once `PaymentProcessed` (the durable
//! intent) is in the log and [`PaymentGateway::refund`] once `RefundRequested` is, and records
//! each answer through the command engine; the reconciler asks [`PaymentGateway::status`] about
//! every charge whose answer never arrived (a timeout, a provider error, a process that died
//! mid-call) and records what the provider says.
//!
//! What an adapter must guarantee is documented on [`PaymentGateway`].

mod simulated;
#[cfg(feature = "stripe")]
mod stripe;

use std::fmt::Debug;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use crate::aggregates::GatewayOutcome;
use crate::domain::{Money, PaymentId, RefundId};
pub use simulated::SimulatedGateway;
#[cfg(feature = "stripe")]
pub use stripe::{StripeConfig, StripeGateway, StripeSetupError};

/// What a provider knows of a charge, asked by payment id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeStatus {
    /// The money was taken.
    Approved,
    /// The charge was refused; no money moved.
    Declined {
        /// The provider's reason.
        reason: String,
    },
    /// The provider has no charge under this payment id: the call never reached it.
    NotCharged,
    /// The provider could not be asked, or the charge is still being decided.
    Unknown {
        /// Why the answer is not known.
        reason: String,
    },
}

/// A payment provider. Object-safe: the system holds an `Arc<dyn PaymentGateway>`.
///
/// # What an adapter must guarantee
///
/// The engine's promise "no money taken without a record" rests on these; the gateway
/// conformance kit (`tests/gateway_conformance`) checks them against any adapter.
///
/// 1. **The payment id is the idempotency key of a charge.** Charging the same payment id twice
///    (a retry, a second process, a restart) takes the money at most once and answers as the
///    first call did.
/// 2. **The refund id is the idempotency key of a refund.** The same refund sent twice gives the
///    money back once.
/// 3. **[`GatewayOutcome::Approved`] means the money moved; [`GatewayOutcome::Declined`] means it
///    did not and will not** under that key. When the adapter cannot tell (a timeout, a
///    connection reset, a 5xx), it answers [`GatewayOutcome::Unknown`], never a guess.
/// 4. **[`PaymentGateway::status`] tells what became of a charge** by its payment id, including
///    one whose call answered `Unknown` or never returned: [`ChargeStatus::NotCharged`] only when
///    the provider has no charge under that id.
/// 5. **A refund above what is left of the charge is declined**, never clipped.
/// 6. **Every call returns within a bounded time** (the adapter's own timeout, well under the
///    reconciler's grace period, see
///    [`TicketingSystemBuilder::payment_reconciliation`](crate::system::TicketingSystemBuilder::payment_reconciliation)).
/// 7. **The token is used for the call and nothing else**: not logged, not in an error message.
#[async_trait]
pub trait PaymentGateway: Send + Sync + Debug {
    /// Charges `amount` to the customer's `token`, with `payment_id` as the idempotency key.
    async fn charge(&self, payment_id: PaymentId, amount: Money, token: &SecretString) -> GatewayOutcome;

    /// Gives `amount` of the charge `payment_id` back, with `refund_id` as the idempotency key.
    /// [`GatewayOutcome::Declined`] when more is asked than is left of the charge.
    async fn refund(&self, payment_id: PaymentId, refund_id: RefundId, amount: Money) -> GatewayOutcome;

    /// What became of the charge `payment_id`.
    async fn status(&self, payment_id: PaymentId) -> ChargeStatus;
}
