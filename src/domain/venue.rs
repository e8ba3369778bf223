//! Where an event takes place.

use serde::{Deserialize, Serialize};

use super::{DomainError, VenueId, ensure_storable_text};

/// A venue: an id and a display name (non-empty, at most 200 bytes, no NUL character).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "VenueRecord")]
pub struct Venue {
    id: VenueId,
    name: String,
}

#[derive(Deserialize)]
struct VenueRecord {
    id: VenueId,
    name: String,
}

impl Venue {
    /// Validates a venue.
    ///
    /// # Errors
    /// [`DomainError::InvalidVenueName`] for an empty, blank or over-long name,
    /// [`DomainError::InvalidText`] for one with a NUL character.
    pub fn new(id: VenueId, name: impl Into<String>) -> Result<Self, DomainError> {
        let name = name.into();
        ensure_storable_text("venue name", &name)?;
        if name.trim().is_empty() || name.len() > 200 {
            return Err(DomainError::InvalidVenueName { value: name });
        }
        Ok(Self { id, name })
    }

    /// The venue id.
    #[must_use]
    pub const fn id(&self) -> VenueId {
        self.id
    }

    /// The display name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl TryFrom<VenueRecord> for Venue {
    type Error = DomainError;
    fn try_from(value: VenueRecord) -> Result<Self, Self::Error> {
        Self::new(value.id, value.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validates_name_also_when_deserialising() {
        let venue = Venue::new(VenueId::new_v4(), "Royal Hall").unwrap();
        let json = serde_json::to_string(&venue).unwrap();
        assert_eq!(serde_json::from_str::<Venue>(&json).unwrap(), venue);
        assert!(Venue::new(VenueId::new_v4(), "  ").is_err());
        assert!(matches!(Venue::new(VenueId::new_v4(), "Royal\0Hall"), Err(DomainError::InvalidText { .. })));
        let blank = json.replace("Royal Hall", "");
        assert!(serde_json::from_str::<Venue>(&blank).is_err());
    }
}
