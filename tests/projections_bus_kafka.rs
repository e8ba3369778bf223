//! Read models fed from a Kafka-protocol broker at `KAFKA_BROKERS` answer exactly as models
//! rebuilt from the store. Fails, never skips, when the broker is missing.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_feed_support;
mod projections_support;

use std::sync::Arc;
use std::time::Duration;

use boxoffice::event_bus::{KafkaConfig, KafkaEventBus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_fed_models_answer_as_the_store_rebuild() {
    let mut config = KafkaConfig::from_env().unwrap_or_else(|e| {
        panic!("Kafka tests need a broker: set KAFKA_BROKERS (scripts/test-services.sh does): {e}")
    });
    config.partitions = 4;
    config.session_timeout = Some(Duration::from_secs(6));
    config.fetch_wait_max = Some(Duration::from_millis(10));
    config.connect_timeout = Duration::from_secs(5);
    let brokers = config.brokers.clone();
    let bus =
        KafkaEventBus::connect(config).await.unwrap_or_else(|e| panic!("KAFKA_BROKERS={brokers} is unreachable: {e}"));
    bus_feed_support::bus_fed_models_answer_as_the_store_rebuild(Arc::new(bus)).await;
}
