//! Amounts of money as integer minor units: no floats, every operation checked.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Currency, DomainError};

/// An amount in minor units (cents) of one currency. Arithmetic is checked: overflow and mixed
/// currencies are errors, never panics or silent wrap-around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor_units: i64,
    currency: Currency,
}

impl Money {
    /// `minor_units` of `currency` (e.g. `Money::new(4_500, Currency::EUR)` is EUR 45.00).
    #[must_use]
    pub const fn new(minor_units: i64, currency: Currency) -> Self {
        Self { minor_units, currency }
    }

    /// Zero in `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The amount in minor units.
    #[must_use]
    pub const fn minor_units(&self) -> i64 {
        self.minor_units
    }

    /// The currency.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// True when the amount is above zero.
    #[must_use]
    pub const fn is_positive(&self) -> bool {
        self.minor_units > 0
    }

    fn same_currency(self, other: Money) -> Result<(), DomainError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(DomainError::CurrencyMismatch { left: self.currency, right: other.currency })
        }
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`DomainError::CurrencyMismatch`] or [`DomainError::MoneyOverflow`].
    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        self.same_currency(other)?;
        self.minor_units
            .checked_add(other.minor_units)
            .map(|m| Money::new(m, self.currency))
            .ok_or(DomainError::MoneyOverflow { operation: "add".into() })
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`DomainError::CurrencyMismatch`] or [`DomainError::MoneyOverflow`].
    pub fn checked_sub(self, other: Money) -> Result<Money, DomainError> {
        self.same_currency(other)?;
        self.minor_units
            .checked_sub(other.minor_units)
            .map(|m| Money::new(m, self.currency))
            .ok_or(DomainError::MoneyOverflow { operation: "sub".into() })
    }

    /// `self × quantity`, e.g. a unit price times a number of seats.
    ///
    /// # Errors
    /// [`DomainError::MoneyOverflow`].
    pub fn checked_mul(self, quantity: u32) -> Result<Money, DomainError> {
        self.minor_units
            .checked_mul(i64::from(quantity))
            .map(|m| Money::new(m, self.currency))
            .ok_or(DomainError::MoneyOverflow { operation: "mul".into() })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_amount(f, i128::from(self.minor_units), self.currency)
    }
}

/// Writes `minor_units` of `currency` as major units with two decimals and the code:
/// `-0.07 EUR`. Shared by [`Money`] and [`MoneyTotal`](super::MoneyTotal).
pub(super) fn write_amount(f: &mut fmt::Formatter<'_>, minor_units: i128, currency: Currency) -> fmt::Result {
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    write!(f, "{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn eur(m: i64) -> Money {
        Money::new(m, Currency::EUR)
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(eur(150).checked_add(eur(50)).unwrap(), eur(200));
        assert_eq!(eur(150).checked_sub(eur(200)).unwrap(), eur(-50));
        assert_eq!(eur(2_500).checked_mul(4).unwrap(), eur(10_000));
        assert_eq!(eur(i64::MAX).checked_add(eur(1)), Err(DomainError::MoneyOverflow { operation: "add".into() }));
        assert_eq!(eur(i64::MIN).checked_sub(eur(1)), Err(DomainError::MoneyOverflow { operation: "sub".into() }));
        assert_eq!(eur(i64::MAX).checked_mul(2), Err(DomainError::MoneyOverflow { operation: "mul".into() }));
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let usd = Money::new(1, Currency::USD);
        assert_eq!(
            eur(1).checked_add(usd),
            Err(DomainError::CurrencyMismatch { left: Currency::EUR, right: Currency::USD })
        );
        assert!(eur(1).checked_sub(usd).is_err());
    }

    #[test]
    fn displays_major_and_minor_units() {
        assert_eq!(eur(4_505).to_string(), "45.05 EUR");
        assert_eq!(eur(-7).to_string(), "-0.07 EUR");
    }

    #[test]
    fn serde_rejects_bad_currency() {
        let json = serde_json::to_string(&eur(100)).unwrap();
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), eur(100));
        assert!(serde_json::from_str::<Money>(r#"{"minor_units":1,"currency":"eu"}"#).is_err());
    }
}
