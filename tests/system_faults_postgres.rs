//! The purchase-under-fault scenarios of `tests/system_faults.rs` with the log, checkpoints and
//! read models in `PostgreSQL` (behind the fault-injecting wrapper; the injected error is a
//! `Database` I/O error). Needs `DATABASE_URL` and fails loudly without it; each test works in a
//! fresh schema.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod fault_support;
mod system_support;

use system_support::Backend;

purchase_fault_tests!(Backend::Postgres);
