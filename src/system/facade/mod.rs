//! The front door: [`TicketingSystem`], its builder, and the requests and answers of its API.

mod api;
mod builder;
mod requests;
mod tickets;

pub use api::TicketingSystem;
pub use builder::TicketingSystemBuilder;
pub use requests::{
    EventSpec, HeldSeats, OrderLineRequest, OrderRequest, PaymentDetails, Receipt, RefundRequest, ReserveRequest,
};
pub use tickets::{CheckIn, Gate, IssuedTicket, OfflineScan, TicketRefund, TicketRefundRequest};
