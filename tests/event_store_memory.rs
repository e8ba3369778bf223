//! The conformance suite against `MemoryEventStore`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod event_store_conformance;

use std::sync::Arc;

use boxoffice::event_store::{EventStore, MemoryEventStore};
use event_store_conformance as conformance;

fn store() -> Arc<dyn EventStore> {
    Arc::new(MemoryEventStore::new())
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            conformance::$name(store()).await;
        }
    )*};
}

conformance_tests!(
    append_and_load_round_trip,
    expected_version_conflicts,
    concurrent_appenders_one_winner_per_version,
    idempotent_append,
    global_order,
    subscription_catch_up_then_live,
    snapshot_round_trip,
    large_payloads,
    bad_input_is_rejected,
    append_batch_is_atomic,
    subscriber_sees_concurrent_writes_exactly_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_from_checkpoint() {
    let store = MemoryEventStore::new();
    conformance::resume_from_checkpoint(Arc::new(store.clone()), Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upcasting_on_every_read_path() {
    conformance::upcasting_on_every_read_path(Arc::new(
        MemoryEventStore::new().with_upcasters(conformance::upcasters()),
    ))
    .await;
}
