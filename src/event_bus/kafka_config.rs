//! Settings of the Kafka backend, from code or from the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{EventBusError, TopicRouter};

/// When acknowledging a delivery returns, relative to the broker storing the group's offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KafkaCommitMode {
    /// `ack` returns once the broker has stored the offset: nothing acknowledged is redelivered,
    /// at the cost of one broker round trip per acknowledgement.
    #[default]
    Sync,
    /// `ack` queues the offset commit and returns; commits still happen only after
    /// acknowledgement and are flushed when the consumer closes, but a crash may lose the last
    /// few, which are then redelivered (still at-least-once). Much higher consumer throughput.
    Async,
}

/// How to reach a Kafka-protocol broker (Apache Kafka, Redpanda, Tansu) and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// Prefix of the topic names (see [`TopicRouter`]).
    pub topic_prefix: String,
    /// Consumer group the application's consumers use by default.
    pub consumer_group: String,
    /// Partitions of topics this bus creates.
    pub partitions: i32,
    /// Replication factor of topics this bus creates.
    pub replication: i32,
    /// Topics created at connect time; others are created on first use.
    pub topics: Vec<String>,
    /// Consumer group session timeout (`session.timeout.ms`); `None` keeps the client default.
    pub session_timeout: Option<Duration>,
    /// Longest a fetch waits for data (`fetch.wait.max.ms`); `None` keeps the client default.
    pub fetch_wait_max: Option<Duration>,
    /// How long the producer keeps retrying a message before reporting failure
    /// (`message.timeout.ms`).
    pub message_timeout: Duration,
    /// How long connecting waits for the brokers to answer.
    pub connect_timeout: Duration,
    /// Whether acknowledging waits for the offset commit.
    pub commit_mode: KafkaCommitMode,
    /// Further client properties, applied last (e.g. security settings).
    pub extra: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Consumer group used when `CONSUMER_GROUP` is unset.
    pub const DEFAULT_GROUP: &'static str = "boxoffice";

    /// Defaults for the brokers at `brokers`: 4 partitions, replication 1, 30 s message timeout.
    #[must_use]
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: TopicRouter::DEFAULT_PREFIX.to_owned(),
            consumer_group: Self::DEFAULT_GROUP.to_owned(),
            partitions: 4,
            replication: 1,
            topics: Vec::new(),
            session_timeout: None,
            fetch_wait_max: None,
            message_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            commit_mode: KafkaCommitMode::Sync,
            extra: BTreeMap::new(),
        }
    }

    /// Reads `KAFKA_BROKERS` (or `REDPANDA_BROKERS`), `CONSUMER_GROUP`, `KAFKA_TOPIC_PREFIX`,
    /// and optionally `KAFKA_PARTITIONS`, `KAFKA_SESSION_TIMEOUT_MS`, `KAFKA_FETCH_WAIT_MAX_MS` and
    /// `KAFKA_COMMIT_MODE` (`sync` or `async`).
    ///
    /// # Errors
    /// [`EventBusError::Config`] naming `KAFKA_BROKERS` when no broker address is set, or the
    /// variable that does not parse.
    pub fn from_env() -> Result<Self, EventBusError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with variables from `lookup`.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EventBusError> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let brokers = value("KAFKA_BROKERS").or_else(|| value("REDPANDA_BROKERS")).ok_or_else(|| {
            EventBusError::Config("KAFKA_BROKERS is not set (nor REDPANDA_BROKERS): no Kafka broker to use".to_owned())
        })?;
        let millis = |name: &str| -> Result<Option<Duration>, EventBusError> {
            value(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|e| EventBusError::Config(format!("{name}: {e}")))
                })
                .transpose()
        };
        let mut config = Self::new(brokers);
        if let Some(group) = value("CONSUMER_GROUP") {
            config.consumer_group = group;
        }
        if let Some(prefix) = value("KAFKA_TOPIC_PREFIX") {
            config.topic_prefix = prefix;
        }
        if let Some(partitions) = value("KAFKA_PARTITIONS") {
            config.partitions =
                partitions.parse().map_err(|e| EventBusError::Config(format!("KAFKA_PARTITIONS: {e}")))?;
        }
        config.commit_mode = match value("KAFKA_COMMIT_MODE").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("sync") => KafkaCommitMode::Sync,
            Some("async") => KafkaCommitMode::Async,
            Some(other) => {
                return Err(EventBusError::Config(format!("KAFKA_COMMIT_MODE: {other} is not sync or async")));
            }
        };
        config.session_timeout = millis("KAFKA_SESSION_TIMEOUT_MS")?;
        config.fetch_wait_max = millis("KAFKA_FETCH_WAIT_MAX_MS")?;
        Ok(config)
    }

    /// The router for this configuration's topic prefix.
    #[must_use]
    pub fn router(&self) -> TopicRouter {
        TopicRouter::new(self.topic_prefix.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::KafkaConfig;

    #[test]
    fn reads_the_environment_and_names_the_missing_variable() {
        let missing = KafkaConfig::from_lookup(|_| None).map(|_| ()).unwrap_err().to_string();
        assert!(missing.contains("KAFKA_BROKERS"), "{missing}");

        let config = KafkaConfig::from_lookup(|name| match name {
            "REDPANDA_BROKERS" => Some("127.0.0.1:19092".to_owned()),
            "CONSUMER_GROUP" => Some("projections".to_owned()),
            "KAFKA_TOPIC_PREFIX" => Some("shop".to_owned()),
            "KAFKA_SESSION_TIMEOUT_MS" => Some("6000".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.brokers, "127.0.0.1:19092");
        assert_eq!(config.consumer_group, "projections");
        assert_eq!(config.router().topic_for_stream("cart-1"), "shop-cart-events");
        assert_eq!(config.session_timeout, Some(std::time::Duration::from_secs(6)));
    }
}
