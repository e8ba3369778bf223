//! Ticket codes a scanner can check offline: the ticket's identity signed with Ed25519 by the
//! event's key, and the [`ScannerKit`] (the event's public key and its revocation list) that is
//! all a scanner needs to check them.
//!
//! A code is `BX1.` followed by the URL-safe base64 (no padding) of 53 bytes of payload (a format
//! byte, the event, reservation and ticket ids, and the ticket's serial) and their 64-byte
//! signature: 160 characters, which fit a QR code of version 10. The serial counts the ticket's
//! owners: a transfer issues the next serial and revokes the old code.
//!
//! ```
//! use std::collections::BTreeSet;
//! use boxoffice::domain::{EventId, ReservationId, RevokedCode, ScannerKit, TicketCode, TicketId, Verdict};
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let ticket = TicketCode {
//!     event_id: EventId::new_v4(),
//!     reservation_id: ReservationId::new_v4(),
//!     ticket_id: TicketId::new_v4(),
//!     serial: 0,
//! };
//! let code = ticket.sign(&key);
//! let mut kit = ScannerKit {
//!     event_id: ticket.event_id,
//!     public_key: key.verifying_key().to_bytes(),
//!     revoked: BTreeSet::new(),
//! };
//! assert_eq!(kit.verify(&code), Verdict::Valid(ticket));
//! kit.revoked.insert(RevokedCode { ticket_id: ticket.ticket_id, serial: 0 });
//! assert_eq!(kit.verify(&code), Verdict::Revoked(ticket));
//! assert_eq!(kit.verify("BX1.forged"), Verdict::Invalid);
//! ```

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EventId, ReservationId, TicketId};

/// What every code starts with.
const PREFIX: &str = "BX1.";
/// The payload's format byte.
const FORMAT: u8 = 1;
/// Payload bytes: format, three ids, serial.
const PAYLOAD_LEN: usize = 1 + 16 * 3 + 4;
/// What is signed before the payload, so a signature of this key over anything else never
/// passes for a ticket.
const CONTEXT: &[u8] = b"boxoffice ticket code v1\0";

/// What a ticket code says: which ticket it is, and which of its owners holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketCode {
    /// The event the ticket admits to.
    pub event_id: EventId,
    /// The purchase it belongs to.
    pub reservation_id: ReservationId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its owner's serial: 0 when issued, one more at each transfer.
    pub serial: u32,
}

/// A ticket code could not be read or does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketCodeError {
    /// Not a ticket code of this format.
    #[error("not a ticket code")]
    Malformed,
    /// The signature does not match the key of the event the code names.
    #[error("the ticket code's signature does not verify")]
    BadSignature,
}

impl TicketCode {
    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut payload = [0_u8; PAYLOAD_LEN];
        payload[0] = FORMAT;
        payload[1..17].copy_from_slice(self.event_id.as_uuid().as_bytes());
        payload[17..33].copy_from_slice(self.reservation_id.as_uuid().as_bytes());
        payload[33..49].copy_from_slice(self.ticket_id.as_uuid().as_bytes());
        payload[49..].copy_from_slice(&self.serial.to_be_bytes());
        payload
    }

    fn signed_message(payload: &[u8]) -> Vec<u8> {
        [CONTEXT, payload].concat()
    }

    /// The code of this ticket, signed with `key` (the event's signing key). Ed25519 signatures
    /// are deterministic: the same ticket and key always give the same code.
    #[must_use]
    pub fn sign(&self, key: &SigningKey) -> String {
        let payload = self.payload();
        let signature = key.sign(&Self::signed_message(&payload));
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + Signature::BYTE_SIZE);
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&signature.to_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What `code` claims, unverified, with its signature: enough to pick the key to verify it
    /// with.
    fn read(code: &str) -> Result<(Self, [u8; PAYLOAD_LEN], Signature), TicketCodeError> {
        let body = code.trim().strip_prefix(PREFIX).ok_or(TicketCodeError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| TicketCodeError::Malformed)?;
        if bytes.len() != PAYLOAD_LEN + Signature::BYTE_SIZE || bytes[0] != FORMAT {
            return Err(TicketCodeError::Malformed);
        }
        let (payload, signature) = bytes.split_at(PAYLOAD_LEN);
        let signature = Signature::from_slice(signature).map_err(|_| TicketCodeError::Malformed)?;
        let id = |range: std::ops::Range<usize>| {
            let mut raw = [0_u8; 16];
            raw.copy_from_slice(&payload[range]);
            Uuid::from_bytes(raw)
        };
        let mut serial = [0_u8; 4];
        serial.copy_from_slice(&payload[49..]);
        let claimed = Self {
            event_id: EventId::from_uuid(id(1..17)),
            reservation_id: ReservationId::from_uuid(id(17..33)),
            ticket_id: TicketId::from_uuid(id(33..49)),
            serial: u32::from_be_bytes(serial),
        };
        let mut raw = [0_u8; PAYLOAD_LEN];
        raw.copy_from_slice(payload);
        Ok((claimed, raw, signature))
    }

    /// What `code` claims, before it is verified: its event names the key to verify it with.
    ///
    /// # Errors
    /// [`TicketCodeError::Malformed`].
    pub fn claimed(code: &str) -> Result<Self, TicketCodeError> {
        Self::read(code).map(|(claimed, _, _)| claimed)
    }

    /// Reads `code` and checks its signature against `key`, the public key of the event it
    /// names.
    ///
    /// # Errors
    /// [`TicketCodeError::Malformed`], or [`TicketCodeError::BadSignature`] when it was not
    /// signed by `key`'s private half (a forged or altered code, or another event's).
    pub fn verify(code: &str, key: &VerifyingKey) -> Result<Self, TicketCodeError> {
        let (claimed, payload, signature) = Self::read(code)?;
        key.verify(&Self::signed_message(&payload), &signature).map_err(|_| TicketCodeError::BadSignature)?;
        Ok(claimed)
    }
}

/// One revoked code: the ticket, and the owner serial whose code no longer admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RevokedCode {
    /// The ticket.
    pub ticket_id: TicketId,
    /// The revoked serial.
    pub serial: u32,
}

/// All a scanner needs to check the tickets of one event without a connection: the event's
/// public key and the codes revoked so far (refunded, transferred away, cancelled). Serialise it
/// (it is `serde`) and load it onto the scanners before the doors open; scans made with it are
/// merged later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerKit {
    /// The event this kit admits to.
    pub event_id: EventId,
    /// The event's Ed25519 public key.
    pub public_key: [u8; 32],
    /// Codes that no longer admit.
    pub revoked: BTreeSet<RevokedCode>,
}

/// A scanner's offline verdict on a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by this event's key and not revoked.
    Valid(TicketCode),
    /// Genuine, but revoked.
    Revoked(TicketCode),
    /// A code of another event.
    WrongEvent {
        /// The event it claims.
        event_id: EventId,
    },
    /// Not a genuine ticket code.
    Invalid,
}

impl ScannerKit {
    /// Checks `code` against this kit.
    #[must_use]
    pub fn verify(&self, code: &str) -> Verdict {
        let Ok(key) = VerifyingKey::from_bytes(&self.public_key) else { return Verdict::Invalid };
        match TicketCode::claimed(code) {
            Ok(claimed) if claimed.event_id != self.event_id => {
                return Verdict::WrongEvent { event_id: claimed.event_id };
            }
            Ok(_) => {}
            Err(_) => return Verdict::Invalid,
        }
        match TicketCode::verify(code, &key) {
            Ok(ticket)
                if self.revoked.contains(&RevokedCode { ticket_id: ticket.ticket_id, serial: ticket.serial }) =>
            {
                Verdict::Revoked(ticket)
            }
            Ok(ticket) => Verdict::Valid(ticket),
            Err(_) => Verdict::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ticket() -> TicketCode {
        TicketCode {
            event_id: EventId::from_uuid(Uuid::from_u128(1)),
            reservation_id: ReservationId::from_uuid(Uuid::from_u128(2)),
            ticket_id: TicketId::from_uuid(Uuid::from_u128(3)),
            serial: 4,
        }
    }

    #[test]
    fn a_code_verifies_with_its_key_only_and_any_altered_byte_fails() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let code = ticket().sign(&key);
        assert_eq!(code.len(), 160, "{code}");
        assert_eq!(code, ticket().sign(&key), "deterministic");
        assert_eq!(TicketCode::verify(&code, &key.verifying_key()), Ok(ticket()));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(TicketCode::verify(&code, &other.verifying_key()), Err(TicketCodeError::BadSignature));
        for at in PREFIX.len()..code.len() {
            let mut altered = code.clone().into_bytes();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(TicketCode::verify(&altered, &key.verifying_key()).is_err(), "altered at {at} still verifies");
        }
        for garbage in ["", "BX1.", "BX2.abc", "hello", &code[..code.len() - 4]] {
            assert_eq!(TicketCode::verify(garbage, &key.verifying_key()), Err(TicketCodeError::Malformed));
        }
    }

    #[test]
    fn a_kit_tells_valid_revoked_wrong_event_and_forged_apart() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut kit = ScannerKit {
            event_id: ticket().event_id,
            public_key: key.verifying_key().to_bytes(),
            revoked: BTreeSet::new(),
        };
        assert_eq!(kit.verify(&ticket().sign(&key)), Verdict::Valid(ticket()));
        let elsewhere = TicketCode { event_id: EventId::from_uuid(Uuid::from_u128(5)), ..ticket() };
        assert_eq!(kit.verify(&elsewhere.sign(&key)), Verdict::WrongEvent { event_id: elsewhere.event_id });
        let forged = ticket().sign(&SigningKey::from_bytes(&[1; 32]));
        assert_eq!(kit.verify(&forged), Verdict::Invalid);
        kit.revoked.insert(RevokedCode { ticket_id: ticket().ticket_id, serial: 4 });
        assert_eq!(kit.verify(&ticket().sign(&key)), Verdict::Revoked(ticket()));
        let next_owner = TicketCode { serial: 5, ..ticket() };
        assert_eq!(kit.verify(&next_owner.sign(&key)), Verdict::Valid(next_owner));
    }
}
