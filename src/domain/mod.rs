//! Validated value types of the ticketing domain. Every constructor (and every `Deserialize`)
//! checks its input, so a value of one of these types is always valid.

mod capacity;
mod currency;
mod error;
mod ids;
mod money;
mod money_total;
mod pricing_tier;
mod seat_number;
mod section_name;
mod text;
mod venue;

pub use capacity::Capacity;
pub use currency::Currency;
pub use error::DomainError;
pub use ids::{CustomerId, EventId, PaymentId, RefundId, ReservationId, SeatId, VenueId};
pub use money::Money;
pub use money_total::MoneyTotal;
pub use pricing_tier::{PricingTier, SaleWindow, TierKind};
pub use seat_number::SeatNumber;
pub use section_name::SectionName;
pub use text::ensure_storable_text;
pub use venue::Venue;
