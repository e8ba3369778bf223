//! Printed seat labels such as `A12` or `BB7`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A seat label: one to three uppercase row letters followed by a seat number from 1 to 9999,
/// without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SeatNumber(String);

impl SeatNumber {
    /// Validates a label.
    ///
    /// # Errors
    /// [`DomainError::InvalidSeatNumber`] when `label` does not look like `A12`.
    pub fn new(label: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::InvalidSeatNumber { value: label.to_owned() };
        let digits_at = label.find(|c: char| !c.is_ascii_uppercase()).ok_or_else(invalid)?;
        let (row, number) = label.split_at(digits_at);
        let row_ok = (1..=3).contains(&row.len());
        let number_ok =
            (1..=4).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0');
        if row_ok && number_ok { Ok(Self(label.to_owned())) } else { Err(invalid()) }
    }

    /// The row letters.
    #[must_use]
    pub fn row(&self) -> &str {
        self.0.trim_end_matches(|c: char| c.is_ascii_digit())
    }

    /// The seat number within the row.
    #[must_use]
    pub fn number(&self) -> u16 {
        self.0[self.row().len()..].parse().unwrap_or(0)
    }

    /// The label as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeatNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SeatNumber {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for SeatNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<SeatNumber> for String {
    fn from(value: SeatNumber) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_row_and_number() {
        let seat = SeatNumber::new("BB17").unwrap();
        assert_eq!((seat.row(), seat.number()), ("BB", 17));
    }

    #[test]
    fn rejects_malformed_labels() {
        for bad in ["", "A", "12", "a12", "A012", "A0", "ABCD1", "A12B", "A12345"] {
            assert!(SeatNumber::new(bad).is_err(), "{bad} accepted");
        }
        assert!(serde_json::from_str::<SeatNumber>("\"A0\"").is_err());
    }
}
