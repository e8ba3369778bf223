//! [`TicketKeys`]: where the Ed25519 keys that sign ticket codes come from.
//!
//! One 32-byte master secret, from configuration, gives every event its own signing key (HKDF
//! with SHA-256 over the event id), so a scanner loaded with one event's public key admits to
//! that event only, and no key is ever stored: not in the log, snapshots or read models. The
//! secret is never generated silently: without one, the system refuses ticket codes and
//! check-in with `SystemError::NoTicketKeys`, naming the variable to set.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use super::EventId;

/// Salt of the key derivation: changing it changes every event's key.
const SALT: &[u8] = b"boxoffice ticket keys v1";

/// The master secret was not usable.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    /// The variable is not base64.
    #[error("{variable} is not base64 (standard alphabet)")]
    NotBase64 {
        /// The variable.
        variable: &'static str,
        /// What the decoder said.
        #[source]
        source: base64::DecodeError,
    },
    /// The secret is not 32 bytes long.
    #[error("{variable} holds {length} bytes; a ticket master key is 32 bytes (44 base64 characters)")]
    WrongLength {
        /// The variable.
        variable: &'static str,
        /// Bytes found.
        length: usize,
    },
    /// The event's key could not be derived (HKDF refused the output length; not expected for
    /// 32 bytes).
    #[error("cannot derive the ticket key of event {event_id}")]
    Derive {
        /// The event.
        event_id: EventId,
        /// What HKDF said.
        #[source]
        source: hkdf::InvalidLength,
    },
}

/// The master secret ticket codes are signed from. Its `Debug` output is redacted.
///
/// ```
/// use boxoffice::domain::{EventId, TicketKeys};
///
/// // 32 bytes, base64: generate one with `openssl rand -base64 32` and keep it in a secret store.
/// let keys = TicketKeys::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// let (a, b) = (EventId::new_v4(), EventId::new_v4());
/// assert_ne!(keys.public_key(a)?, keys.public_key(b)?, "one key per event");
/// assert_eq!(keys.public_key(a)?, keys.public_key(a)?);
/// assert!(!format!("{keys:?}").contains("AAEC"));
/// # Ok::<(), boxoffice::domain::TicketKeyError>(())
/// ```
pub struct TicketKeys {
    master: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKeys([redacted])")
    }
}

impl Clone for TicketKeys {
    fn clone(&self) -> Self {
        Self::from_secret(*self.master.expose_secret())
    }
}

impl TicketKeys {
    /// The environment variable [`TicketKeys::from_env`] reads: the master secret, base64.
    pub const VARIABLE: &'static str = "BOXOFFICE_TICKET_KEY";

    /// Keys from a 32-byte master secret.
    #[must_use]
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { master: SecretBox::new(Box::new(secret)) }
    }

    /// Keys from the base64 of a 32-byte master secret.
    ///
    /// # Errors
    /// [`TicketKeyError`] when it is not base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, TicketKeyError> {
        Self::parse(Self::VARIABLE, text)
    }

    fn parse(variable: &'static str, text: &str) -> Result<Self, TicketKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|source| TicketKeyError::NotBase64 { variable, source })?;
        let secret: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| TicketKeyError::WrongLength { variable, length: bytes.len() })?;
        Ok(Self::from_secret(secret))
    }

    /// Keys from [`TicketKeys::VARIABLE`] as `lookup` reads it; `None` when it is not set.
    ///
    /// # Errors
    /// [`TicketKeyError`] when it is set but not base64 of 32 bytes.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TicketKeyError> {
        lookup(Self::VARIABLE)
            .filter(|value| !value.trim().is_empty())
            .map(|value| Self::parse(Self::VARIABLE, &value))
            .transpose()
    }

    /// Keys from the process environment's [`TicketKeys::VARIABLE`]; `None` when it is not set.
    ///
    /// # Errors
    /// As [`TicketKeys::from_lookup`].
    pub fn from_env() -> Result<Option<Self>, TicketKeyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// A random master secret, for demos and tests only: codes signed with it stop verifying when
    /// the process ends, since nothing keeps the secret. Say so where you use it.
    #[must_use]
    pub fn ephemeral() -> Self {
        Self::from_secret(rand::random())
    }

    /// The key that signs the tickets of `event`.
    ///
    /// # Errors
    /// [`TicketKeyError::Derive`] (HKDF-SHA256 gives up to 8,160 bytes; 32 are asked for).
    pub fn signing_key(&self, event: EventId) -> Result<SigningKey, TicketKeyError> {
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), self.master.expose_secret());
        let mut okm = [0_u8; 32];
        hkdf.expand(event.as_uuid().as_bytes(), &mut okm)
            .map_err(|source| TicketKeyError::Derive { event_id: event, source })?;
        Ok(SigningKey::from_bytes(&okm))
    }

    /// The public key scanners of `event` verify codes with.
    ///
    /// # Errors
    /// As [`TicketKeys::signing_key`].
    pub fn public_key(&self, event: EventId) -> Result<[u8; 32], TicketKeyError> {
        self.verifying_key(event).map(|key| key.to_bytes())
    }

    /// [`TicketKeys::public_key`] as a verifying key.
    ///
    /// # Errors
    /// As [`TicketKeys::signing_key`].
    pub fn verifying_key(&self, event: EventId) -> Result<VerifyingKey, TicketKeyError> {
        self.signing_key(event).map(|key| key.verifying_key())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_variable_is_read_or_refused_with_its_name() {
        let none = TicketKeys::from_lookup(|_| None).unwrap();
        assert!(none.is_none(), "unset: no keys, never a generated one");
        let short = TicketKeys::from_lookup(|_| Some("AAEC".into())).unwrap_err();
        assert!(short.to_string().contains("BOXOFFICE_TICKET_KEY"), "{short}");
        assert!(matches!(TicketKeys::from_lookup(|_| Some("!!".into())), Err(TicketKeyError::NotBase64 { .. })));
        let keys = TicketKeys::from_lookup(|_| Some(STANDARD.encode([5_u8; 32]))).unwrap().unwrap();
        let event = EventId::from_uuid(uuid::Uuid::from_u128(1));
        assert_eq!(keys.public_key(event).unwrap(), TicketKeys::from_secret([5; 32]).public_key(event).unwrap());
        assert_ne!(keys.public_key(event).unwrap(), TicketKeys::from_secret([6; 32]).public_key(event).unwrap());
    }
}
