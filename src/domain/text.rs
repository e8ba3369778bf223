//! Caller-supplied free text (names, reasons, idempotency keys) that every backend can store.

use super::DomainError;

/// Checks that caller-supplied `text` can be kept by every backend alike: it holds no NUL
/// character (`PostgreSQL` text and JSONB cannot store U+0000, memory could). `field` names the
/// text in the error (`"venue name"`, `"refund reason"`).
///
/// ```
/// use boxoffice::domain::{DomainError, ensure_storable_text};
///
/// assert!(ensure_storable_text("refund reason", "goodwill").is_ok());
/// assert!(matches!(
///     ensure_storable_text("refund reason", "good\0will"),
///     Err(DomainError::InvalidText { .. })
/// ));
/// ```
///
/// # Errors
/// [`DomainError::InvalidText`] when `text` contains a NUL character.
pub fn ensure_storable_text(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.contains('\0') {
        return Err(DomainError::InvalidText { field: field.into(), reason: "contains a NUL character".into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nul_anywhere_and_nothing_else() {
        for ok in ["", "Royal Hall", "tab\there", "line\nbreak", "ünïcödé ✓"] {
            assert_eq!(ensure_storable_text("name", ok), Ok(()), "{ok:?}");
        }
        for bad in ["\0", "a\0", "\0a", "a\0b"] {
            assert_eq!(
                ensure_storable_text("name", bad),
                Err(DomainError::InvalidText { field: "name".into(), reason: "contains a NUL character".into() }),
                "{bad:?}"
            );
        }
    }
}
