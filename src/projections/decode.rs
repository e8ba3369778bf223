//! Reading a stored event back as a ticketing action inside a projection.

use crate::aggregates::TicketingAction;
use crate::event_store::Envelope;

use super::ProjectionError;

/// Decodes `envelope` with [`TicketingAction::decode`], naming `projection` in the error.
///
/// # Errors
/// [`ProjectionError::Decode`] when the stream is not a ticketing stream or the payload does not
/// parse.
pub fn decode_ticketing(projection: &str, envelope: &Envelope) -> Result<TicketingAction, ProjectionError> {
    TicketingAction::decode(envelope)
        .map_err(|source| ProjectionError::Decode { projection: projection.to_owned(), source })
}
