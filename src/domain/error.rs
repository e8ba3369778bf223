//! The one error type of the domain layer: a value failed validation or arithmetic.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Currency;

/// A domain value could not be built or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    /// A currency code is not three uppercase ASCII letters.
    #[error("invalid currency code {code:?}: expected three uppercase letters (ISO 4217)")]
    InvalidCurrency {
        /// The rejected code.
        code: String,
    },
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// Currency of the left operand.
        left: Currency,
        /// Currency of the right operand.
        right: Currency,
    },
    /// Checked arithmetic on money overflowed.
    #[error("money overflow in {operation}")]
    MoneyOverflow {
        /// The operation that overflowed (`add`, `sub`, `mul`).
        operation: Cow<'static, str>,
    },
    /// A price must be strictly positive.
    #[error("price must be positive, got {minor_units} minor units")]
    NonPositivePrice {
        /// The rejected amount.
        minor_units: i64,
    },
    /// A capacity is zero or above [`Capacity::MAX`](super::Capacity::MAX).
    #[error("invalid capacity {value}: must be between 1 and {max}")]
    InvalidCapacity {
        /// The rejected value.
        value: u32,
        /// The largest capacity allowed.
        max: u32,
    },
    /// A seat number is not row letters followed by a seat number (e.g. `A12`).
    #[error("invalid seat number {value:?}")]
    InvalidSeatNumber {
        /// The rejected text.
        value: String,
    },
    /// A section name is empty, padded with whitespace or too long.
    #[error("invalid section name {value:?}: {reason}")]
    InvalidSectionName {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: Cow<'static, str>,
    },
    /// A gate name is empty, padded with whitespace or too long.
    #[error("invalid gate name {value:?}: {reason}")]
    InvalidGateName {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: Cow<'static, str>,
    },
    /// A venue name is empty or too long.
    #[error("invalid venue name {value:?}")]
    InvalidVenueName {
        /// The rejected text.
        value: String,
    },
    /// Caller-supplied text (a name, a reason, an idempotency key) that not every backend can
    /// store: it holds a NUL character. Refused before anything is appended.
    #[error("invalid {field}: {reason}")]
    InvalidText {
        /// Which text (`"venue name"`, `"event name"`, `"refund reason"`, `"idempotency key"`).
        field: Cow<'static, str>,
        /// Why it was rejected.
        reason: Cow<'static, str>,
    },
    /// A sale window does not start before it ends.
    #[error("invalid sale window: starts {starts} is not before ends {ends}")]
    InvalidSaleWindow {
        /// Start of the window.
        starts: chrono::DateTime<chrono::Utc>,
        /// End of the window.
        ends: chrono::DateTime<chrono::Utc>,
    },
    /// An id is not a UUID.
    #[error("invalid {kind} id {value:?}")]
    InvalidId {
        /// Which id type was being parsed.
        kind: Cow<'static, str>,
        /// The rejected text.
        value: String,
    },
}
