//! Shared by the multi-process tests and `examples/buyer.rs`.

pub mod buyer;
