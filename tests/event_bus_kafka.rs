//! The event bus conformance suite against a Kafka-protocol broker at `KAFKA_BROKERS`.
//! These tests fail, never skip, when the broker is missing.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod event_bus_conformance;

use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_bus::{EventBus, KafkaConfig, KafkaEventBus};
use event_bus_conformance as conformance;

fn config() -> KafkaConfig {
    let mut config = KafkaConfig::from_env().unwrap_or_else(|e| {
        panic!("Kafka tests need a broker: set KAFKA_BROKERS (scripts/test-services.sh does): {e}")
    });
    config.partitions = 4;
    config.session_timeout = Some(Duration::from_secs(6));
    config.fetch_wait_max = Some(Duration::from_millis(10));
    config.connect_timeout = Duration::from_secs(5);
    config
}

async fn bus() -> Arc<dyn EventBus> {
    let config = config();
    let brokers = config.brokers.clone();
    Arc::new(
        KafkaEventBus::connect(config).await.unwrap_or_else(|e| panic!("KAFKA_BROKERS={brokers} is unreachable: {e}")),
    )
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            conformance::$name(bus().await).await;
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

/// The same checks with asynchronous offset commits.
mod async_commits {
    use super::*;
    use boxoffice::event_bus::KafkaCommitMode;

    async fn bus() -> Arc<dyn EventBus> {
        let mut config = config();
        config.commit_mode = KafkaCommitMode::Async;
        Arc::new(KafkaEventBus::connect(config).await.unwrap())
    }

    conformance_tests!(
        unacknowledged_messages_are_redelivered_after_restart,
        commit_after_ack_resumes_exactly_where_acknowledged,
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_a_loud_error() {
    let mut config = config();
    config.brokers = "127.0.0.1:1".to_owned();
    config.connect_timeout = Duration::from_secs(2);
    let error = KafkaEventBus::connect(config).await.unwrap_err().to_string();
    assert!(error.contains("KAFKA_BROKERS"), "{error}");
}
