//! The assembled system end to end on the in-memory backend (scenarios in `system_support`): the
//! saga through the log, durable expiry on an injected clock, idempotent commands, restarts,
//! typed errors, read models, and no oversell when two systems share one store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod system_support;

use system_support::Backend;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            system_support::$name(Backend::Memory).await;
        }
    )*};
}

scenarios!(
    purchase_sells_seats_and_books_revenue,
    declined_payment_releases_the_seats,
    unpaid_hold_expires_on_the_clock_and_late_payment_is_refused,
    customer_cancellation_releases_the_seats,
    last_seat_goes_to_exactly_one_of_many_concurrent_buyers,
    retried_reserve_with_the_same_key_returns_the_original_hold,
    bad_input_gets_a_typed_error_and_appends_nothing,
    a_restarted_system_expires_holds_taken_before_the_restart,
    cancelling_the_event_refunds_purchases_and_releases_holds,
    two_systems_sharing_a_store_never_oversell,
    a_restarted_system_counts_nothing_twice,
);
