//! How many seats a section holds.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A section capacity: at least one seat and at most [`Capacity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Capacity(u32);

impl Capacity {
    /// The largest section we accept: bigger than any real stadium section, small enough that
    /// seat counts and prices times seats stay far from overflow.
    pub const MAX: u32 = 100_000;

    /// Validates a capacity.
    ///
    /// # Errors
    /// [`DomainError::InvalidCapacity`] when `seats` is 0 or above [`Capacity::MAX`].
    pub fn new(seats: u32) -> Result<Self, DomainError> {
        if (1..=Self::MAX).contains(&seats) {
            Ok(Self(seats))
        } else {
            Err(DomainError::InvalidCapacity { value: seats, max: Self::MAX })
        }
    }

    /// The number of seats.
    #[must_use]
    pub const fn get(&self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Capacity {
    type Error = DomainError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Capacity> for u32 {
    fn from(value: Capacity) -> Self {
        value.0
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bounds_are_enforced_by_constructor_and_serde() {
        assert_eq!(Capacity::new(1).unwrap().get(), 1);
        assert_eq!(Capacity::new(Capacity::MAX).unwrap().get(), Capacity::MAX);
        assert!(Capacity::new(0).is_err());
        assert!(Capacity::new(Capacity::MAX + 1).is_err());
        assert!(serde_json::from_str::<Capacity>("0").is_err());
        assert_eq!(serde_json::from_str::<Capacity>("50").unwrap().get(), 50);
    }
}
