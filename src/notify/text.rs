//! What a notification says in plain text: a subject line and a body, for sinks that send words
//! (mail, SMS, chat).

use std::fmt::Write as _;

use super::{Notification, Purchase};

impl Notification {
    /// A one-line subject naming the event.
    #[must_use]
    pub fn subject(&self) -> String {
        let event = &self.event().name;
        match self {
            Self::PurchaseConfirmed(_) => format!("Your tickets for {event}"),
            Self::RefundSucceeded(_) => format!("Your refund for {event}"),
            Self::EventCancelled(_) => format!("{event} is cancelled"),
        }
    }

    /// A plain-text body naming the event, its venue and date, the seats and the amounts.
    #[must_use]
    pub fn body(&self) -> String {
        let event = self.event();
        let mut text = String::new();
        let when = event.date.format("%Y-%m-%d %H:%M UTC");
        // Writing to a String cannot fail.
        let _ = match self {
            Self::PurchaseConfirmed(n) => {
                let _ = writeln!(text, "Thank you for your purchase.\n\n{} at {}, {when}.\n", event.name, event.venue);
                let _ = write_purchase(&mut text, &n.purchase);
                if !n.tickets.is_empty() {
                    let _ = writeln!(text, "\nYour tickets (show the code at the door):");
                }
                n.tickets.iter().try_for_each(|t| {
                    writeln!(text, "  ticket {} ({}, seat {}): {}", t.ticket_id, t.section, t.seat_id, t.code)
                })
            }
            Self::RefundSucceeded(n) => writeln!(
                text,
                "{} has been refunded to you for {} at {}, {when} (reservation {}).\nReason: {}",
                n.amount, event.name, event.venue, n.reservation_id, n.reason
            ),
            Self::EventCancelled(n) => {
                let _ = writeln!(text, "{} at {}, {when}, is cancelled: {}.\n", event.name, event.venue, n.reason);
                let _ = writeln!(text, "Your purchases for it:");
                for purchase in &n.purchases {
                    let _ = write_purchase(&mut text, purchase);
                }
                writeln!(text, "\nWhat you paid is refunded; a notice follows for each refund.")
            }
        };
        let _ = write!(text, "\n-- \nNotification {}", self.id());
        text
    }
}

fn write_purchase(text: &mut String, purchase: &Purchase) -> std::fmt::Result {
    let count = purchase.seats.len();
    let noun = if count == 1 { "seat" } else { "seats" };
    writeln!(
        text,
        "Reservation {}: {count} {noun} in {}, {} paid.",
        purchase.reservation_id, purchase.section, purchase.amount
    )?;
    for seat in &purchase.seats {
        writeln!(text, "  seat {seat}")?;
    }
    Ok(())
}
