//! [`SmtpConfig`]: where the [`SmtpSink`](super::SmtpSink) sends mail, from the environment.

use std::time::Duration;

use super::{EmailAddress, NotifyError};

/// Default port of `smtp://` addresses without one.
const DEFAULT_PORT: u16 = 25;
/// Default time allowed for one mail (connect, dialogue, data).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an [`SmtpConfig`] could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpConfigError {
    /// A required variable is unset or blank.
    #[error("{variable} is not set")]
    Missing {
        /// The variable.
        variable: &'static str,
    },
    /// `BOXOFFICE_SMTP_URL` is not `smtp://host[:port]`.
    #[error("BOXOFFICE_SMTP_URL={url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `BOXOFFICE_SMTP_FROM` is not an address.
    #[error("BOXOFFICE_SMTP_FROM is not an email address")]
    InvalidFrom {
        /// Why.
        #[source]
        source: NotifyError,
    },
    /// A numeric variable does not parse.
    #[error("{variable}={value:?} is not a whole number")]
    InvalidNumber {
        /// The variable.
        variable: &'static str,
        /// What was given.
        value: String,
    },
}

/// Where and as whom the [`SmtpSink`](super::SmtpSink) sends. Plain SMTP only (no TLS, no
/// authentication): a relay on the same host or network (a local MTA, a sidecar) that forwards
/// the mail on.
///
/// ```
/// use boxoffice::notify::SmtpConfig;
///
/// let config = SmtpConfig::from_lookup(|name| match name {
///     "BOXOFFICE_SMTP_URL" => Some("smtp://127.0.0.1:2525".to_owned()),
///     "BOXOFFICE_SMTP_FROM" => Some("tickets@example.com".to_owned()),
///     _ => None,
/// })?;
/// assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 2525));
/// assert_eq!(config.from.as_str(), "tickets@example.com");
/// # Ok::<(), boxoffice::notify::SmtpConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The server's host name or IP address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The sender of every mail; its domain also ends every `Message-ID`.
    pub from: EmailAddress,
    /// Time allowed for one mail (default 10 s).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// A configuration for `host:port`, sending as `from`.
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16, from: EmailAddress) -> Self {
        Self { host: host.into(), port, from, timeout: DEFAULT_TIMEOUT }
    }

    /// Reads `BOXOFFICE_SMTP_URL` (`smtp://host[:port]`, port 25 by default),
    /// `BOXOFFICE_SMTP_FROM` (the sender's address) and `BOXOFFICE_SMTP_TIMEOUT_SECS` (optional,
    /// default 10) from the process environment.
    ///
    /// # Errors
    /// [`SmtpConfigError`] when a required variable is missing or a value does not parse.
    pub fn from_env() -> Result<Self, SmtpConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`SmtpConfig::from_env`], with variables from `lookup`.
    ///
    /// # Errors
    /// As [`SmtpConfig::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SmtpConfigError> {
        let set = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let url = set("BOXOFFICE_SMTP_URL").ok_or(SmtpConfigError::Missing { variable: "BOXOFFICE_SMTP_URL" })?;
        let (host, port) = parse_url(&url)?;
        let from = set("BOXOFFICE_SMTP_FROM").ok_or(SmtpConfigError::Missing { variable: "BOXOFFICE_SMTP_FROM" })?;
        let from = EmailAddress::new(from).map_err(|source| SmtpConfigError::InvalidFrom { source })?;
        let timeout = match set("BOXOFFICE_SMTP_TIMEOUT_SECS") {
            None => DEFAULT_TIMEOUT,
            Some(value) => Duration::from_secs(value.parse().map_err(|_| SmtpConfigError::InvalidNumber {
                variable: "BOXOFFICE_SMTP_TIMEOUT_SECS",
                value: value.clone(),
            })?),
        };
        Ok(Self { host, port, from, timeout })
    }
}

/// `smtp://host[:port]` (an IPv6 host in brackets) into host and port.
fn parse_url(url: &str) -> Result<(String, u16), SmtpConfigError> {
    let invalid = |reason| SmtpConfigError::InvalidUrl { url: url.to_owned(), reason };
    let Some(rest) = url.strip_prefix("smtp://") else {
        return Err(invalid("expected smtp://host[:port] (TLS and other schemes are not supported)"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['@', '/', '?', '#']) {
        return Err(invalid("expected smtp://host[:port] (credentials, paths and options are not supported)"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| invalid("unclosed [ in the host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port =
        port.map_or(Ok(DEFAULT_PORT), |p| p.parse().map_err(|_| invalid("the port is not a number from 0 to 65535")))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(url: &'static str) -> Result<SmtpConfig, SmtpConfigError> {
        SmtpConfig::from_lookup(move |name| match name {
            "BOXOFFICE_SMTP_URL" => Some(url.to_owned()),
            "BOXOFFICE_SMTP_FROM" => Some("tickets@example.com".to_owned()),
            _ => None,
        })
    }

    #[test]
    fn urls_name_host_and_port_and_anything_else_is_refused() {
        assert_eq!(config("smtp://mail.local").map(|c| (c.host, c.port)).unwrap(), ("mail.local".into(), 25));
        assert_eq!(config("smtp://[::1]:2525/").map(|c| (c.host, c.port)).unwrap(), ("::1".into(), 2525));
        for bad in ["smtps://mail.local", "smtp://user:pw@mail.local", "smtp://:25", "smtp://mail.local:99999", "mail"]
        {
            assert!(matches!(config(bad), Err(SmtpConfigError::InvalidUrl { .. })), "{bad}");
        }
        let missing = SmtpConfig::from_lookup(|_| None);
        assert!(matches!(missing, Err(SmtpConfigError::Missing { variable: "BOXOFFICE_SMTP_URL" })));
    }
}
