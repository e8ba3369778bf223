//! What a seat costs: a tier kind, a section, a price and an optional sale window.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Money, SectionName};

/// The kind of a pricing tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TierKind {
    /// Discounted, usually limited to a sale window.
    EarlyBird,
    /// The standard price.
    Regular,
    /// Premium price.
    Vip,
}

/// The half-open interval `[starts, ends)` during which a tier is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SaleWindowRecord")]
pub struct SaleWindow {
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    starts: DateTime<Utc>,
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    ends: DateTime<Utc>,
}

#[derive(Deserialize)]
struct SaleWindowRecord {
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    starts: DateTime<Utc>,
    #[serde(deserialize_with = "crate::domain::timestamp::deserialize")]
    ends: DateTime<Utc>,
}

impl SaleWindow {
    /// Validates a window.
    ///
    /// # Errors
    /// [`DomainError::InvalidSaleWindow`] unless `starts < ends`.
    pub fn new(starts: DateTime<Utc>, ends: DateTime<Utc>) -> Result<Self, DomainError> {
        if starts < ends { Ok(Self { starts, ends }) } else { Err(DomainError::InvalidSaleWindow { starts, ends }) }
    }

    /// Whether `at` falls inside `[starts, ends)`.
    #[must_use]
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.starts <= at && at < self.ends
    }

    /// First instant of the window.
    #[must_use]
    pub const fn starts(&self) -> DateTime<Utc> {
        self.starts
    }

    /// First instant after the window.
    #[must_use]
    pub const fn ends(&self) -> DateTime<Utc> {
        self.ends
    }
}

impl TryFrom<SaleWindowRecord> for SaleWindow {
    type Error = DomainError;
    fn try_from(value: SaleWindowRecord) -> Result<Self, Self::Error> {
        Self::new(value.starts, value.ends)
    }
}

/// The price of one seat in one section under one tier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PricingTierRecord")]
pub struct PricingTier {
    kind: TierKind,
    section: SectionName,
    price: Money,
    sale_window: Option<SaleWindow>,
}

#[derive(Deserialize)]
struct PricingTierRecord {
    kind: TierKind,
    section: SectionName,
    price: Money,
    sale_window: Option<SaleWindow>,
}

impl PricingTier {
    /// Validates a tier.
    ///
    /// # Errors
    /// [`DomainError::NonPositivePrice`] unless the price is above zero.
    pub fn new(
        kind: TierKind,
        section: SectionName,
        price: Money,
        sale_window: Option<SaleWindow>,
    ) -> Result<Self, DomainError> {
        if !price.is_positive() {
            return Err(DomainError::NonPositivePrice { minor_units: price.minor_units() });
        }
        Ok(Self { kind, section, price, sale_window })
    }

    /// The tier kind.
    #[must_use]
    pub const fn kind(&self) -> TierKind {
        self.kind
    }

    /// The section it prices.
    #[must_use]
    pub fn section(&self) -> &SectionName {
        &self.section
    }

    /// The price of one seat.
    #[must_use]
    pub const fn price(&self) -> Money {
        self.price
    }

    /// When it is on sale; `None` means always.
    #[must_use]
    pub const fn sale_window(&self) -> Option<SaleWindow> {
        self.sale_window
    }

    /// Whether the tier can be bought at `at`.
    #[must_use]
    pub fn on_sale_at(&self, at: DateTime<Utc>) -> bool {
        self.sale_window.is_none_or(|w| w.contains(at))
    }
}

impl TryFrom<PricingTierRecord> for PricingTier {
    type Error = DomainError;
    fn try_from(value: PricingTierRecord) -> Result<Self, Self::Error> {
        Self::new(value.kind, value.section, value.price, value.sale_window)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::Currency;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, hour, 0, 0).unwrap()
    }

    #[test]
    fn sale_window_is_half_open() {
        let window = SaleWindow::new(at(1), at(2)).unwrap();
        assert!(window.contains(at(1)));
        assert!(!window.contains(at(2)));
        assert!(SaleWindow::new(at(2), at(2)).is_err());
    }

    #[test]
    fn tier_requires_positive_price_and_honours_window() {
        let section = SectionName::new("Stalls").unwrap();
        let free = PricingTier::new(TierKind::Regular, section.clone(), Money::zero(Currency::EUR), None);
        assert_eq!(free, Err(DomainError::NonPositivePrice { minor_units: 0 }));
        let window = SaleWindow::new(at(1), at(2)).unwrap();
        let early =
            PricingTier::new(TierKind::EarlyBird, section, Money::new(1_000, Currency::EUR), Some(window)).unwrap();
        assert!(early.on_sale_at(at(1)));
        assert!(!early.on_sale_at(at(3)));
    }

    #[test]
    fn deserialisation_validates_price_and_window() {
        let section = SectionName::new("Stalls").unwrap();
        let tier = PricingTier::new(TierKind::Vip, section, Money::new(9_000, Currency::EUR), None).unwrap();
        let json = serde_json::to_string(&tier).unwrap();
        assert_eq!(serde_json::from_str::<PricingTier>(&json).unwrap(), tier);
        assert!(serde_json::from_str::<PricingTier>(&json.replace("9000", "-1")).is_err());
        let bad_window = r#"{"starts":"2030-01-01T02:00:00Z","ends":"2030-01-01T01:00:00Z"}"#;
        assert!(serde_json::from_str::<SaleWindow>(bad_window).is_err());
    }
}
