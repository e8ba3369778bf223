//! The event bus conformance suite against `MemoryEventBus`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod event_bus_conformance;

use std::sync::Arc;

use boxoffice::event_bus::{EventBus, MemoryEventBus};
use event_bus_conformance as conformance;

fn bus() -> Arc<dyn EventBus> {
    Arc::new(MemoryEventBus::new())
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(bus()).await;
        }
    )*};
}

conformance_tests!(
    round_trip_with_headers,
    previous_position_travels_with_the_message,
    per_key_order,
    two_groups_each_receive_everything,
    one_group_members_split_partitions,
    unacknowledged_messages_are_redelivered_after_restart,
    commit_after_ack_resumes_exactly_where_acknowledged,
);

#[tokio::test]
async fn ack_after_the_subscription_is_gone_is_an_error() {
    let bus = MemoryEventBus::new();
    let topic = conformance::unique("closed");
    bus.publish(&topic, "k", &conformance::envelope("cart-1", 1, 1)).await.unwrap();
    let mut deliveries = bus.subscribe(std::slice::from_ref(&topic), "g").await.unwrap();
    let delivery = conformance::take(&mut deliveries, 1).await.pop().unwrap();
    drop(deliveries);
    assert!(delivery.ack().await.is_err());
}
