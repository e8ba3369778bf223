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
mod short_name;
mod text;
mod ticket_code;
mod ticket_keys;
pub(crate) mod timestamp;
mod venue;

pub use capacity::Capacity;
pub use currency::Currency;
pub use error::DomainError;
pub use ids::{CustomerId, EventId, PaymentId, RefundId, ReservationId, ScanId, SeatId, TicketId, VenueId};
pub use money::Money;
pub use money_total::MoneyTotal;
pub use pricing_tier::{PricingTier, SaleWindow, TierKind};
pub use seat_number::SeatNumber;
pub use short_name::{GateName, SectionName};
pub use text::ensure_storable_text;
pub use ticket_code::{RevokedCode, ScannerKit, TicketCode, TicketCodeError, Verdict};
pub use ticket_keys::{TicketKeyError, TicketKeys};
pub use venue::Venue;
