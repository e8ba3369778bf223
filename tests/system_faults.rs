//! One transient append failure at each step of a purchase, on the in-memory backend: the
//! purchase still ends completed with its seats confirmed (or refunded with its seats
//! released), every charge the gateway approved is in the log, and the inventory never
//! oversells. Scenarios in `fault_support::purchase`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod fault_support;
mod system_support;

use system_support::Backend;

purchase_fault_tests!(Backend::Memory);
