//! Fault injection for the assembled system: [`store::FaultyStore`] (an event store whose chosen
//! appends fail once), [`gateway::CountingGateway`] (remembers every payment it took money
//! for), checks over the log ([`log`]) and the purchase-under-fault scenario ([`purchase`]) that
//! `tests/system_faults.rs` (memory) and `tests/system_faults_postgres.rs` run.
#![allow(dead_code)] // each test binary uses its own part

pub mod gateway;
pub mod log;
pub mod purchase;
pub mod store;

/// The steps of a purchase, as (stream category, event type): one test per step, each with one
/// failed append of that step. The Reservation and Payment aggregates both write an event named
/// `PaymentSucceeded`; `reservation/PaymentSucceeded` and `reservation/ReservationCompleted`
/// may share one append (the fault then hits that append either way).
#[allow(unused_macros)]
macro_rules! purchase_fault_tests {
    ($backend:expr) => {
        purchase_fault_tests!(@tests $backend;
            reservation_initiated_append_fails_once: "reservation", "ReservationInitiated";
            seats_reserved_append_fails_once: "inventory", "SeatsReserved";
            seats_allocated_append_fails_once: "reservation", "SeatsAllocated";
            payment_requested_append_fails_once: "reservation", "PaymentRequested";
            payment_processed_append_fails_once: "payment", "PaymentProcessed";
            payment_succeeded_append_fails_once: "payment", "PaymentSucceeded";
            reservation_payment_succeeded_append_fails_once: "reservation", "PaymentSucceeded";
            seats_confirmed_append_fails_once: "inventory", "SeatsConfirmed";
            reservation_completed_append_fails_once: "reservation", "ReservationCompleted";
        );
    };
    (@tests $backend:expr; $($name:ident: $category:literal, $event_type:literal;)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn a_charge_whose_record_failed_is_recorded_by_the_next_process() {
            fault_support::purchase::a_charge_whose_record_failed_is_recorded_by_the_next_process($backend).await;
        }
        $(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            fault_support::purchase::one_failed_append_still_ends_in_a_finished_purchase(
                $backend, $category, $event_type,
            )
            .await;
        }
    )*};
}
