//! [`EmailAddress`]: where a customer's notifications go.

use std::fmt;

/// An email address as the application's [`CustomerDirectory`](super::CustomerDirectory) hands
/// it over: `local@domain`, with no whitespace, control characters or angle brackets (so it
/// cannot smuggle a header into a mail). A sink may check more (the SMTP sink parses it again
/// and refuses what its mail library rejects).
///
/// ```
/// use boxoffice::notify::EmailAddress;
///
/// let ada = EmailAddress::new("ada@example.com")?;
/// assert_eq!(ada.as_str(), "ada@example.com");
/// assert!(EmailAddress::new("ada@example.com\r\nBcc: eve@example.com").is_err());
/// assert!(EmailAddress::new("no-at-sign").is_err());
/// # Ok::<(), boxoffice::notify::NotifyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Longest address accepted (RFC 5321's limit on a path).
const MAX_LEN: usize = 254;

impl EmailAddress {
    /// Checks `address` and wraps it.
    ///
    /// # Errors
    /// [`NotifyError::InvalidAddress`](super::NotifyError::InvalidAddress) when it is not
    /// `local@domain` with both parts non-empty, is longer than 254 bytes, or holds whitespace,
    /// control characters, `<`, `>` or a second `@`.
    pub fn new(address: impl Into<String>) -> Result<Self, super::NotifyError> {
        let address = address.into();
        let well_formed = address.len() <= MAX_LEN
            && !address.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
            && address
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if well_formed { Ok(Self(address)) } else { Err(super::NotifyError::InvalidAddress { address }) }
    }

    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
