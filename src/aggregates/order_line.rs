//! The lines of an order: one per section, each with its quantity and price, and the seats each
//! line holds once its inventory has answered.
//!
//! A reservation of one section is an order of one line. Its events keep the flat `section`,
//! `quantity` and `unit_price` fields they always had and write no `lines`; an order of several
//! sections also writes `lines`, and [`ReservationAction::order_lines`] and
//! [`ReservationAction::seats_by_section`] read either shape.
//!
//! [`ReservationAction::order_lines`]: super::ReservationAction::order_lines
//! [`ReservationAction::seats_by_section`]: super::ReservationAction::seats_by_section

use serde::{Deserialize, Serialize};

use crate::domain::{Money, SeatId, SectionName, TierKind};

/// One line of an order: `quantity` seats of `section` at `unit_price` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The section.
    pub section: SectionName,
    /// Seats wanted in it.
    pub quantity: u32,
    /// Price of one seat, from the tier the buyer chose (or the cheapest on sale).
    pub unit_price: Money,
    /// The tier the buyer chose; `None` for the cheapest tier of the section on sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierKind>,
}

/// The seats one line of an order holds (or held, bought or refunded: the event says which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSeats {
    /// The section.
    pub section: SectionName,
    /// Price of one seat of the line.
    pub unit_price: Money,
    /// The seats.
    pub seats: Vec<SeatId>,
}

impl LineSeats {
    /// The number of seats, saturating at `u32::MAX`.
    #[must_use]
    pub fn count(&self) -> u32 {
        u32::try_from(self.seats.len()).unwrap_or(u32::MAX)
    }
}

/// The seats of `all` that lie in each of `lines`, in the lines' order, leaving out lines with
/// none: how a set of seats of an order (refunded ones, say) splits by section.
#[must_use]
pub fn split_by_line(lines: &[LineSeats], all: &[SeatId]) -> Vec<LineSeats> {
    lines
        .iter()
        .filter_map(|line| {
            let seats: Vec<SeatId> = all.iter().copied().filter(|s| line.seats.contains(s)).collect();
            (!seats.is_empty()).then(|| LineSeats { section: line.section.clone(), unit_price: line.unit_price, seats })
        })
        .collect()
}
