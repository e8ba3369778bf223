//! Payment tokens in flight. `pay()` puts the customer's token here, keyed by its reservation,
//! before it records the payment request; the saga takes it out for the one gateway call. It
//! never leaves the process's memory: not the log, not a snapshot, not the bus, not a trace. A
//! process that dies takes its tokens with it, and reconciliation settles the charges they were
//! for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use secrecy::SecretString;

use crate::domain::ReservationId;

/// The tokens of this process's payments whose charge has not been sent yet.
#[derive(Clone, Default)]
pub(crate) struct TokenVault {
    tokens: Arc<Mutex<HashMap<ReservationId, SecretString>>>,
}

impl TokenVault {
    fn tokens(&self) -> MutexGuard<'_, HashMap<ReservationId, SecretString>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `token` for the charge of `reservation`, unless one is already kept (a repeated
    /// call: the first call's charge goes ahead with the first token). Returns whether it kept it.
    pub(crate) fn put_if_absent(&self, reservation: ReservationId, token: SecretString) -> bool {
        let mut tokens = self.tokens();
        if tokens.contains_key(&reservation) {
            return false;
        }
        tokens.insert(reservation, token);
        true
    }

    /// Takes the token for the charge of `reservation`, if this process holds it.
    pub(crate) fn take(&self, reservation: ReservationId) -> Option<SecretString> {
        self.tokens().remove(&reservation)
    }

    /// Whether this process holds a token for `reservation` (its charge is still to be sent here).
    pub(crate) fn holds(&self, reservation: ReservationId) -> bool {
        self.tokens().contains_key(&reservation)
    }
}
