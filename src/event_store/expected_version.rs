//! The optimistic-concurrency precondition of an append.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the caller believes the stream's version is before appending (invariant I6).
///
/// Versions count events: an absent or empty stream has version 0 and its first event gets
/// version 1, so `Exact(0)` and `NoStream` mean the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there.
    Any,
    /// The stream must not have any event yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    ///
    /// ```
    /// use boxoffice::event_store::ExpectedVersion;
    ///
    /// assert!(ExpectedVersion::NoStream.matches(0));
    /// assert!(ExpectedVersion::Exact(0).matches(0));
    /// assert!(!ExpectedVersion::Exact(3).matches(4));
    /// ```
    #[must_use]
    pub fn matches(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(version) => version == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}
