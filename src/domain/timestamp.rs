//! How the events' and states' timestamps are read back: RFC 3339 first.
//!
//! `chrono`'s own `Deserialize` for `DateTime<Utc>` goes through its lenient `FromStr` (an offset
//! without its colon, a space before it, `UTC` for `Z`), about six times slower than its strict
//! RFC 3339 parser, and every stored timestamp is RFC 3339 (that is how `chrono` writes them).
//! Every log consumer reads each event's timestamps again, so the strict parser comes first; a
//! text it refuses is read by the lenient one, so nothing that was readable before stops being
//! readable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Reads a timestamp as RFC 3339, or as anything `chrono`'s own `FromStr` takes.
///
/// # Errors
/// The deserializer's, for a value that is not a string or is not a timestamp either way.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).or_else(|_| text.parse::<DateTime<Utc>>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Deserialize)]
    struct At {
        #[serde(deserialize_with = "deserialize")]
        at: DateTime<Utc>,
    }

    fn read(text: &str) -> Result<DateTime<Utc>, serde_json::Error> {
        serde_json::from_value::<At>(serde_json::json!({ "at": text })).map(|a| a.at)
    }

    #[test]
    fn what_chrono_writes_reads_back_to_the_same_instant() {
        for at in
            [Utc::now(), DateTime::from_timestamp(0, 0).unwrap(), DateTime::from_timestamp(4_102_444_800, 5).unwrap()]
        {
            let written = serde_json::to_value(at).unwrap();
            assert_eq!(read(written.as_str().unwrap()).unwrap(), at);
        }
    }

    #[test]
    fn offsets_and_the_lenient_forms_chrono_reads_are_still_read() {
        let utc = "2026-12-04T18:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(read("2026-12-04T20:00:00+02:00").unwrap(), utc);
        assert_eq!(read("2026-12-04 18:00:00Z").unwrap(), utc);
        // Not RFC 3339 (no colon in the offset, a space before it, a named zone), but chrono's
        // own parser takes them.
        assert_eq!(read("2026-12-04T20:00:00+0200").unwrap(), utc);
        assert_eq!(read("2026-12-04T20:00:00 +02:00").unwrap(), utc);
        assert_eq!(read("2026-12-04T18:00:00UTC").unwrap(), utc);
    }

    #[test]
    fn what_neither_parser_takes_is_an_error() {
        assert!(read("tomorrow").is_err());
        assert!(read("2026-13-04T18:00:00Z").is_err());
        assert!(serde_json::from_value::<At>(serde_json::json!({ "at": 17 })).is_err());
    }
}
