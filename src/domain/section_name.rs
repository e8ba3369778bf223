//! Names of the sections of a venue ("Orchestra", "Balcony", "VIP").

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A section name: non-empty, at most [`SectionName::MAX_LEN`] bytes, no surrounding whitespace
/// and no control characters (it is part of stream keys and derived seat ids).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SectionName(String);

impl SectionName {
    /// The longest name accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates a name.
    ///
    /// # Errors
    /// [`DomainError::InvalidSectionName`] with the reason.
    pub fn new(name: impl Into<String>) -> Result<Self, DomainError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > Self::MAX_LEN {
            Some("too long")
        } else if name.trim() != name {
            Some("surrounding whitespace")
        } else if name.chars().any(char::is_control) {
            Some("control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(DomainError::InvalidSectionName { value: name, reason: reason.into() }),
            None => Ok(Self(name)),
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SectionName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SectionName {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SectionName> for String {
    fn from(value: SectionName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(SectionName::new("Balcony").unwrap().as_str(), "Balcony");
        for bad in [String::new(), " VIP".into(), "a\u{0}b".into(), "x".repeat(65)] {
            assert!(SectionName::new(bad.clone()).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<SectionName>("\"\"").is_err());
    }
}
