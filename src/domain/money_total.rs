//! [`MoneyTotal`]: a sum of many amounts, kept in a type wide enough that it cannot overflow.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Currency, DomainError, Money};

/// A sum of [`Money`] amounts in one currency (revenue over many sales, what a customer spent over
/// many purchases), in `i128` minor units.
///
/// Each amount fits in an `i64`; a log holds fewer than 2^64 events, so a sum of one amount per
/// event stays below 2^127 and never overflows. Adding is still checked (and an amount in another
/// currency refused), so a read model counts every amount or says why it cannot.
///
/// ```
/// use boxoffice::domain::{Currency, Money, MoneyTotal};
///
/// let big = Money::new(i64::MAX, Currency::EUR);
/// let total = MoneyTotal::zero(Currency::EUR).checked_add(big)?.checked_add(big)?;
/// assert_eq!(total.minor_units(), 2 * i128::from(i64::MAX));
/// assert!(total.to_money().is_err(), "too large for one amount");
/// # Ok::<(), boxoffice::domain::DomainError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MoneyTotal {
    minor_units: i128,
    currency: Currency,
}

impl MoneyTotal {
    /// `minor_units` of `currency`.
    #[must_use]
    pub const fn new(minor_units: i128, currency: Currency) -> Self {
        Self { minor_units, currency }
    }

    /// Zero in `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The sum in minor units.
    #[must_use]
    pub const fn minor_units(&self) -> i128 {
        self.minor_units
    }

    /// The currency.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// `self + amount`.
    ///
    /// # Errors
    /// [`DomainError::CurrencyMismatch`], or [`DomainError::MoneyOverflow`] (not reachable by
    /// summing the amounts of one log).
    pub fn checked_add(self, amount: Money) -> Result<Self, DomainError> {
        if amount.currency() != self.currency {
            return Err(DomainError::CurrencyMismatch { left: self.currency, right: amount.currency() });
        }
        self.minor_units
            .checked_add(i128::from(amount.minor_units()))
            .map(|minor_units| Self::new(minor_units, self.currency))
            .ok_or(DomainError::MoneyOverflow { operation: "add".into() })
    }

    /// The sum as one [`Money`] amount.
    ///
    /// # Errors
    /// [`DomainError::MoneyOverflow`] when it does not fit in an `i64`.
    pub fn to_money(self) -> Result<Money, DomainError> {
        i64::try_from(self.minor_units)
            .map(|minor_units| Money::new(minor_units, self.currency))
            .map_err(|_| DomainError::MoneyOverflow { operation: "narrow".into() })
    }
}

impl From<Money> for MoneyTotal {
    fn from(amount: Money) -> Self {
        Self::new(i128::from(amount.minor_units()), amount.currency())
    }
}

/// A total equals an amount of the same currency and value.
impl PartialEq<Money> for MoneyTotal {
    fn eq(&self, other: &Money) -> bool {
        self.currency == other.currency() && self.minor_units == i128::from(other.minor_units())
    }
}

/// An amount equals a total of the same currency and value.
impl PartialEq<MoneyTotal> for Money {
    fn eq(&self, other: &MoneyTotal) -> bool {
        other == self
    }
}

impl fmt::Display for MoneyTotal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::money::write_amount(f, self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sums_past_the_range_of_one_amount_and_displays_them() {
        let max = Money::new(i64::MAX, Currency::EUR);
        let mut total = MoneyTotal::zero(Currency::EUR);
        for _ in 0..4 {
            total = total.checked_add(max).unwrap();
        }
        assert_eq!(total.minor_units(), 4 * i128::from(i64::MAX));
        assert_eq!(total.to_string(), "368934881474191032.28 EUR");
        assert!(total.to_money().is_err());
        let refund = Money::new(-i64::MAX, Currency::EUR);
        let back = (0..3).fold(total, |t, _| t.checked_add(refund).unwrap());
        assert_eq!(back.to_money().unwrap(), max);
    }

    #[test]
    fn another_currency_is_refused() {
        let total = MoneyTotal::zero(Currency::EUR);
        assert!(matches!(total.checked_add(Money::new(1, Currency::USD)), Err(DomainError::CurrencyMismatch { .. })));
    }
}
