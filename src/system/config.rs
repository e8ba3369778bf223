//! [`SystemConfig`]: which backends a [`TicketingSystem`](super::TicketingSystem) uses, read from
//! the environment (see `.env.example` at the repository root).

use std::time::Duration;

use super::SystemError;

/// Default hold when `HOLD_DURATION_SECS` is unset: five minutes.
const DEFAULT_HOLD_SECS: u64 = 5 * 60;
/// Default pool size when `DATABASE_MAX_CONNECTIONS` is unset.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Settings read from the environment. Unset variables select the in-memory defaults.
///
/// ```
/// use boxoffice::system::SystemConfig;
///
/// let config = SystemConfig::from_lookup(|name| match name {
///     "HOLD_DURATION_SECS" => Some("2".to_owned()),
///     "REDPANDA_BROKERS" => Some("127.0.0.1:9092".to_owned()),
///     _ => None,
/// })?;
/// assert_eq!(config.database_url, None);
/// assert_eq!(config.hold_duration, std::time::Duration::from_secs(2));
/// assert_eq!(config.kafka_brokers.as_deref(), Some("127.0.0.1:9092"));
/// # Ok::<(), boxoffice::system::SystemError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    /// `DATABASE_URL`: the `PostgreSQL` event and checkpoint store; `None` keeps everything in memory.
    pub database_url: Option<String>,
    /// `DATABASE_MAX_CONNECTIONS`: pool size (default 10).
    pub database_max_connections: u32,
    /// `KAFKA_BROKERS` (or `REDPANDA_BROKERS`): bootstrap servers of the bus the system's outbox
    /// relay publishes to.
    pub kafka_brokers: Option<String>,
    /// `CONSUMER_GROUP`: the Kafka consumer group, and the saga checkpoint name when set.
    pub consumer_group: Option<String>,
    /// `HOLD_DURATION_SECS`: how long seats stay held awaiting payment (default 300).
    pub hold_duration: Duration,
}

impl SystemConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`SystemError::Config`] when a numeric variable does not parse.
    pub fn from_env() -> Result<Self, SystemError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`SystemConfig::from_env`], with variables from `lookup` (for tests and embedding).
    ///
    /// # Errors
    /// As [`SystemConfig::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SystemError> {
        let set = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, SystemError> {
            set(name).map_or(Ok(default), |value| {
                value
                    .parse()
                    .map_err(|_| SystemError::Config { reason: format!("{name}={value:?} is not a whole number") })
            })
        };
        let max_connections = number("DATABASE_MAX_CONNECTIONS", u64::from(DEFAULT_MAX_CONNECTIONS))?;
        let database_max_connections = u32::try_from(max_connections).ok().filter(|n| *n > 0).ok_or_else(|| {
            SystemError::Config { reason: format!("DATABASE_MAX_CONNECTIONS={max_connections} is out of range") }
        })?;
        Ok(Self {
            database_url: set("DATABASE_URL"),
            database_max_connections,
            kafka_brokers: set("KAFKA_BROKERS").or_else(|| set("REDPANDA_BROKERS")),
            consumer_group: set("CONSUMER_GROUP"),
            hold_duration: Duration::from_secs(number("HOLD_DURATION_SECS", DEFAULT_HOLD_SECS)?),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kafka_brokers_wins_over_redpanda_brokers_and_bad_numbers_are_typed_errors() {
        let config = SystemConfig::from_lookup(|name| match name {
            "KAFKA_BROKERS" => Some("k:9092".into()),
            "REDPANDA_BROKERS" => Some("r:9092".into()),
            "DATABASE_URL" => Some("  ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.kafka_brokers.as_deref(), Some("k:9092"));
        assert_eq!(config.database_url, None);
        assert_eq!(config.database_max_connections, DEFAULT_MAX_CONNECTIONS);
        let bad = SystemConfig::from_lookup(|name| (name == "HOLD_DURATION_SECS").then(|| "soon".into()));
        assert!(matches!(bad, Err(SystemError::Config { reason: message }) if message.contains("HOLD_DURATION_SECS")));
        let zero = SystemConfig::from_lookup(|name| (name == "DATABASE_MAX_CONNECTIONS").then(|| "0".into()));
        assert!(matches!(zero, Err(SystemError::Config { .. })));
    }
}

#[cfg(all(test, not(feature = "postgres")))]
mod without_postgres {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::system::TicketingSystem;

    #[tokio::test]
    async fn a_database_url_without_the_postgres_feature_is_a_config_error() {
        let config =
            SystemConfig::from_lookup(|name| (name == "DATABASE_URL").then(|| "postgres://x/y".into())).unwrap();
        let result = TicketingSystem::builder_from_config(&config).await;
        assert!(matches!(result, Err(SystemError::Config { reason: message }) if message.contains("postgres")));
        let memory = SystemConfig::from_lookup(|_| None).unwrap();
        let system = TicketingSystem::builder_from_config(&memory).await.unwrap().build().await.unwrap();
        system.shutdown().await;
    }
}
