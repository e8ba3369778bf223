//! [`SystemConfig`]: which backends a [`TicketingSystem`](super::TicketingSystem) uses, read from
//! the environment (see `.env.example` at the repository root).

use std::time::Duration;

use secrecy::SecretString;

use super::SystemError;
use crate::event_store::is_plain_identifier;

/// The payment provider `PAYMENT_GATEWAY` names. There is no default: a system that takes
/// money must say which provider takes it.
#[derive(Debug, Clone)]
pub enum GatewayChoice {
    /// `PAYMENT_GATEWAY=simulated`: the [`SimulatedGateway`](super::SimulatedGateway), a demo
    /// that approves every charge and moves no money.
    Simulated,
    /// `PAYMENT_GATEWAY=stripe`: Stripe (feature `stripe`), with its secret key from
    /// `STRIPE_SECRET_KEY` and its API address from `STRIPE_API_BASE` (default
    /// `https://api.stripe.com`).
    Stripe {
        /// `STRIPE_SECRET_KEY`.
        secret_key: SecretString,
        /// `STRIPE_API_BASE`, if set.
        api_base: Option<String>,
    },
}

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
/// assert!(config.payment_gateway.is_none(), "no gateway chosen: building from it is refused");
/// assert_eq!(config.hold_duration, std::time::Duration::from_secs(2));
/// assert_eq!(config.kafka_brokers.as_deref(), Some("127.0.0.1:9092"));
/// # Ok::<(), boxoffice::system::SystemError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// `DATABASE_URL`: the `PostgreSQL` event and checkpoint store; `None` keeps everything in memory.
    pub database_url: Option<String>,
    /// `DATABASE_MAX_CONNECTIONS`: pool size (default 10).
    pub database_max_connections: u32,
    /// `DATABASE_SCHEMA`: the schema holding every boxoffice table (events, snapshots,
    /// checkpoints, read models, bus deduplication) and the crate's own sqlx migration history,
    /// created if missing. A plain lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    /// `None` uses the server's default `search_path` (normally `public`); set it when the
    /// database also holds an application's tables or its own sqlx migrations (see
    /// `PostgresEventStore::migrate`, feature `postgres`).
    pub database_schema: Option<String>,
    /// `KAFKA_BROKERS` (or `REDPANDA_BROKERS`): bootstrap servers of the bus the system's outbox
    /// relay publishes to.
    pub kafka_brokers: Option<String>,
    /// `CONSUMER_GROUP`: the Kafka consumer group, and the saga checkpoint name when set.
    pub consumer_group: Option<String>,
    /// `HOLD_DURATION_SECS`: how long seats stay held awaiting payment (default 300).
    pub hold_duration: Duration,
    /// `PAYMENT_GATEWAY` (`simulated` or `stripe`): who takes the money. Unset, building a
    /// system from this configuration is refused.
    pub payment_gateway: Option<GatewayChoice>,
    /// `BOXOFFICE_TICKET_KEY`: the master secret ticket codes are signed from (32 bytes,
    /// base64). Unset, codes and check-in are refused; it is never generated.
    pub ticket_keys: Option<crate::domain::TicketKeys>,
}

impl SystemConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`SystemError::Config`] when a numeric variable does not parse, `DATABASE_SCHEMA` is not a
    /// plain lower-case identifier, `PAYMENT_GATEWAY` names no known gateway, or `stripe` comes
    /// without `STRIPE_SECRET_KEY`.
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
        let database_schema = set("DATABASE_SCHEMA");
        if let Some(schema) = &database_schema
            && !is_plain_identifier(schema)
        {
            return Err(SystemError::Config {
                reason: format!(
                    "DATABASE_SCHEMA={schema:?} is not a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
                ),
            });
        }
        let payment_gateway = match set("PAYMENT_GATEWAY").as_deref() {
            None => None,
            Some("simulated") => Some(GatewayChoice::Simulated),
            Some("stripe") => Some(GatewayChoice::Stripe {
                secret_key: set("STRIPE_SECRET_KEY").map(SecretString::from).ok_or_else(|| SystemError::Config {
                    reason: "PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY".to_owned(),
                })?,
                api_base: set("STRIPE_API_BASE"),
            }),
            Some(other) => {
                return Err(SystemError::Config {
                    reason: format!("PAYMENT_GATEWAY={other:?}: expected `simulated` or `stripe`"),
                });
            }
        };
        Ok(Self {
            ticket_keys: crate::domain::TicketKeys::from_lookup(&lookup)?,
            payment_gateway,
            database_url: set("DATABASE_URL"),
            database_max_connections,
            database_schema,
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

    #[test]
    fn database_schema_must_be_a_plain_lower_case_identifier() {
        let schema = |value: &'static str| {
            SystemConfig::from_lookup(move |name| (name == "DATABASE_SCHEMA").then(|| value.into()))
        };
        assert_eq!(SystemConfig::from_lookup(|_| None).unwrap().database_schema, None);
        assert_eq!(schema("  ").unwrap().database_schema, None, "blank is unset");
        assert_eq!(schema("boxoffice").unwrap().database_schema.as_deref(), Some("boxoffice"));
        assert_eq!(schema(" _tickets_2 ").unwrap().database_schema.as_deref(), Some("_tickets_2"));
        let long = "a".repeat(64);
        let long: &'static str = Box::leak(long.into_boxed_str());
        for bad in
            ["Boxoffice", "box-office", "2boxoffice", "box office", "public; drop table events", "\"bx\"", "bx.x", long]
        {
            assert!(
                matches!(schema(bad), Err(SystemError::Config { reason }) if reason.contains("DATABASE_SCHEMA")),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn the_gateway_is_chosen_explicitly_and_stripe_needs_its_key() {
        let pick = |gateway: &'static str, key: Option<&'static str>| {
            SystemConfig::from_lookup(move |name| match name {
                "PAYMENT_GATEWAY" => Some(gateway.into()),
                "STRIPE_SECRET_KEY" => key.map(Into::into),
                _ => None,
            })
        };
        assert!(matches!(pick("simulated", None).unwrap().payment_gateway, Some(GatewayChoice::Simulated)));
        assert!(matches!(
            pick("stripe", Some("sk_test_1")).unwrap().payment_gateway,
            Some(GatewayChoice::Stripe { .. })
        ));
        assert!(
            matches!(pick("stripe", None), Err(SystemError::Config { reason }) if reason.contains("STRIPE_SECRET_KEY"))
        );
        assert!(matches!(pick("paypal", None), Err(SystemError::Config { reason }) if reason.contains("paypal")));
        let debug = format!("{:?}", pick("stripe", Some("sk_test_secret_value")).unwrap());
        assert!(!debug.contains("sk_test_secret_value"), "the key never shows in debug output: {debug}");
    }
}

#[cfg(all(test, not(feature = "postgres")))]
mod without_postgres {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::system::TicketingSystem;

    #[tokio::test]
    async fn a_database_url_without_the_postgres_feature_is_a_config_error() {
        let lookup = |url: bool| {
            move |name: &str| match name {
                "DATABASE_URL" if url => Some("postgres://x/y".into()),
                "PAYMENT_GATEWAY" => Some("simulated".into()),
                _ => None,
            }
        };
        let config = SystemConfig::from_lookup(lookup(true)).unwrap();
        let result = TicketingSystem::builder_from_config(&config).await;
        assert!(matches!(result, Err(SystemError::Config { reason: message }) if message.contains("postgres")));
        let memory = SystemConfig::from_lookup(lookup(false)).unwrap();
        let system = TicketingSystem::builder_from_config(&memory).await.unwrap().build().await.unwrap();
        system.shutdown().await;
        let unchosen = SystemConfig::from_lookup(|_| None).unwrap();
        let refused = TicketingSystem::builder_from_config(&unchosen).await;
        assert!(matches!(refused, Err(SystemError::Config { reason }) if reason.contains("PAYMENT_GATEWAY")));
    }
}
