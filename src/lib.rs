//! # boxoffice
//!
//! An embeddable, event-sourced ticketing engine: events with sections and pricing tiers, seat
//! holds that expire, payments and refunds, read models, on an in-memory or `PostgreSQL` log and
//! an optional Kafka bus.
//!
//! ```
//! use std::sync::Arc;
//!
//! use boxoffice::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A demo provider that moves no money; a shop passes its own adapter (`StripeGateway`, ...).
//! let gateway = Arc::new(SimulatedGateway::always_succeed());
//! let system = TicketingSystem::builder().payment_gateway(gateway).build().await?;
//! let stalls = SectionName::new("Stalls")?;
//! let event = system
//!     .create_event(EventSpec {
//!         name: "Rust Live".into(),
//!         venue: Venue::new(VenueId::new_v4(), "Hall 1")?,
//!         date: chrono::Utc::now() + chrono::Duration::days(30),
//!         sections: vec![Section { name: stalls.clone(), capacity: Capacity::new(100)? }],
//!         pricing_tiers: vec![PricingTier::new(TierKind::Regular, stalls.clone(), Money::new(5_000, Currency::EUR), None)?],
//!         policy: SalesPolicy::default(),
//!     })
//!     .await?;
//! system.publish_event(event).await?;
//! system.open_sales(event).await?;
//! let hold = system
//!     .reserve(ReserveRequest { event_id: event, section: stalls, quantity: 2, customer_id: CustomerId::new_v4(), idempotency_key: None })
//!     .await?;
//! let receipt = system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
//! assert_eq!(receipt.amount, Money::new(10_000, Currency::EUR));
//! system.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//! Each module is one layer and uses only the layers listed before it.
//!
//! - [`framework`]: the [`Reducer`](framework::Reducer) trait, [`Effect`](framework::Effect)
//!   values, clocks and the [`ReducerTest`](framework::ReducerTest) harness. No ticketing words.
//! - [`event_store`] and [`event_bus`]: the [`EventStore`](event_store::EventStore) and
//!   [`EventBus`](event_bus::EventBus) traits with their backends, the one
//!   [`follow`](event_store::follow) runner every log consumer uses (it quarantines an event that
//!   can never be read or applied, or halts there, by [`BadEventPolicy`](event_store::BadEventPolicy)),
//!   the outbox relay from the log to the bus. On `PostgreSQL` a batch of appends is one
//!   statement that commits as it returns (a server-side function takes the locks, checks
//!   versions and keys, and inserts), and readers wait only for this store's own appending
//!   transactions; in memory a long log costs its payloads' JSON text, and only
//!   the most recent events keep a parsed tree. No ticketing words either.
//! - [`domain`]: validated value types (ids, money and money sums, capacity, seat numbers, venues,
//!   tiers, gate names) and signed ticket codes.
//! - [`aggregates`]: Event, Inventory, Reservation (an order of one line per section, each
//!   line held in its section's inventory, all or none, under one deadline and one payment),
//!   Payment, Allowance (per-customer ticket limits) and Tickets (one stream per purchase: issue,
//!   scan, revoke, transfer) as pure reducers; the reservation saga as pure functions
//!   ([`reactions`](aggregates::reactions)); the synchronous
//!   [`SagaDriver`](aggregates::SagaDriver) for tests and baselines.
//! - [`projections`]: the six read models (seats, sales, customers, their orders and tickets,
//!   gates, sales per day) and their runner.
//! - [`notify`]: the [`Notifier`](notify::Notifier), fed from the log: purchase confirmations,
//!   refunds and cancelled events to customers through a
//!   [`NotificationSink`](notify::NotificationSink), at least once and deduplicated (an SMTP
//!   sink with the `smtp` feature).
//! - [`system`]: the one runtime. A command engine (a worker per stream owns its state, batches
//!   queued commands into one append with the expected version, retries conflicts) executes the
//!   reducers; the log follower is the only saga feed, reacts only to the events its own node
//!   appended (several processes on one log run each step once; a node that is gone or stopped
//!   beating is taken over by the others, `system/peers.rs`), hands every inventory step to
//!   the inventory's one writer, the node whose claim on it came last in the log
//!   (`system/writers.rs`), carries out a node's own follow-ups of what its steps and its API
//!   calls append as they commit rather than when it reads them back, inventory steps too
//!   where the node writes the inventory, and answers the waiting calls then
//!   (`system/follower.rs`), and calls the
//!   [`PaymentGateway`](system::PaymentGateway) between the durable intent and its recorded
//!   outcome (the customer's token stays in memory; charges and refunds whose answer was lost
//!   are reconciled by asking the provider); holds expire from the log; ticket codes are signed
//!   with per-event Ed25519 keys derived from [`TicketKeys`](domain::TicketKeys) and checked at
//!   the door ([`check_in`](system::TicketingSystem::check_in)) or offline
//!   ([`ScannerKit`](domain::ScannerKit));
//!   [`TicketingSystem`](system::TicketingSystem) is the front door.
//!
//! [`prelude`] re-exports what the quick start needs.

pub mod aggregates;
pub mod domain;
pub mod event_bus;
pub mod event_store;
pub mod framework;
pub mod notify;
pub mod prelude;
pub mod projections;
pub mod system;
