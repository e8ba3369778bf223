//! Short names that become part of stream keys, derived ids or scan records: the sections of a
//! venue ("Orchestra", "Balcony") and the gates of an event ("North 1").

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// What is wrong with `name` as a short name of at most `max_len` bytes, if anything.
fn problem(name: &str, max_len: usize) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > max_len {
        Some("too long")
    } else if name.trim() != name {
        Some("surrounding whitespace")
    } else if name.chars().any(char::is_control) {
        Some("control character")
    } else {
        None
    }
}

macro_rules! short_name {
    ($(#[$meta:meta])* $name:ident, $error:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest name accepted, in bytes.
            pub const MAX_LEN: usize = 64;

            /// Validates a name.
            ///
            /// # Errors
            #[doc = concat!("[`DomainError::", stringify!($error), "`] with the reason.")]
            pub fn new(name: impl Into<String>) -> Result<Self, DomainError> {
                let name = name.into();
                match problem(&name, Self::MAX_LEN) {
                    Some(reason) => Err(DomainError::$error { value: name, reason: reason.into() }),
                    None => Ok(Self(name)),
                }
            }

            /// The name as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

short_name!(
    /// A section name: non-empty, at most [`SectionName::MAX_LEN`] bytes, no surrounding
    /// whitespace and no control characters (it is part of stream keys and derived seat ids).
    SectionName,
    InvalidSectionName
);

short_name!(
    /// The name of a gate (an entrance where tickets are scanned): non-empty, at most
    /// [`GateName::MAX_LEN`] bytes, no surrounding whitespace and no control characters.
    GateName,
    InvalidGateName
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(SectionName::new("Balcony").unwrap().as_str(), "Balcony");
        assert_eq!(GateName::new("North 1").unwrap().as_str(), "North 1");
        for bad in [String::new(), " VIP".into(), "a\u{0}b".into(), "x".repeat(65)] {
            assert!(SectionName::new(bad.clone()).is_err(), "{bad:?} accepted");
            assert!(matches!(GateName::new(bad.clone()), Err(DomainError::InvalidGateName { .. })), "{bad:?}");
        }
        assert!(serde_json::from_str::<SectionName>("\"\"").is_err());
        assert!(serde_json::from_str::<GateName>("\" x\"").is_err());
    }
}
