//! The Kafka-protocol [`EventBus`] (Apache Kafka, Redpanda, Tansu) built on `rdkafka`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use futures::stream::{self, BoxStream};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::error::BoxError;
use super::headers::{envelope_from_parts, message_headers, previous_position};
use super::{
    Acknowledger, Delivery, DeliveryPosition, EventBus, EventBusError, KafkaCommitMode, KafkaConfig, Outgoing,
};

/// An [`EventBus`] on a Kafka-protocol broker.
///
/// Producing is idempotent (`enable.idempotence=true`, `acks=all`), so retries inside the client do
/// not duplicate or reorder messages of a partition. Consumers never auto-commit: a group's
/// offset moves when a [`Delivery`] is acknowledged. New groups start at the earliest offset.
pub struct KafkaEventBus {
    config: KafkaConfig,
    producer: RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    known_topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KafkaEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEventBus").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

impl KafkaEventBus {
    /// Connects to the brokers, checks they answer, and creates the configured topics.
    ///
    /// # Errors
    /// [`EventBusError::Unreachable`] when no broker answers within the connect timeout,
    /// [`EventBusError::Config`] for invalid client settings and [`EventBusError::Admin`] when a
    /// topic cannot be created.
    pub async fn connect(config: KafkaConfig) -> Result<Self, EventBusError> {
        if config.brokers.trim().is_empty() {
            return Err(EventBusError::Config("KAFKA_BROKERS is empty".to_owned()));
        }
        let producer = Self::producer(&config)?;
        let admin: AdminClient<DefaultClientContext> =
            Self::client_config(&config).create().map_err(|e| EventBusError::Config(format!("admin client: {e}")))?;
        let probe = producer.clone();
        let timeout = config.connect_timeout;
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, timeout).map(|_| ()))
            .await
            .map_err(|e| EventBusError::Unreachable { brokers: config.brokers.clone(), source: e.into() })?
            .map_err(|e| EventBusError::Unreachable { brokers: config.brokers.clone(), source: e.into() })?;
        let bus = Self { producer: RwLock::new(producer), admin, known_topics: Mutex::new(HashSet::new()), config };
        let topics = bus.config.topics.clone();
        bus.ensure_topics(&topics).await?;
        Ok(bus)
    }

    /// The configuration this bus was connected with.
    #[must_use]
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Creates the topics that do not exist yet (an existing topic is not an error).
    ///
    /// # Errors
    /// [`EventBusError::Admin`] naming the first topic the broker refused.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), EventBusError> {
        let missing: Vec<&String> = {
            let known = self.known_topics.lock().map_err(|_| admin_error("*", "topic cache lock poisoned"))?;
            topics.iter().filter(|t| !known.contains(*t)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t, self.config.partitions, TopicReplication::Fixed(self.config.replication)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(self.config.connect_timeout));
        let results = self.admin.create_topics(&new_topics, &options).await.map_err(|e| EventBusError::Admin {
            topic: missing.iter().map(|t| t.as_str()).collect(),
            source: e.into(),
        })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(EventBusError::Admin { topic, source: code.into() }),
            }
        }
        let mut known = self.known_topics.lock().map_err(|_| admin_error("*", "topic cache lock poisoned"))?;
        known.extend(missing.into_iter().cloned());
        Ok(())
    }

    fn client_config(config: &KafkaConfig) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &config.brokers);
        for (name, value) in &config.extra {
            client.set(name, value);
        }
        client
    }

    fn producer(config: &KafkaConfig) -> Result<FutureProducer, EventBusError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", millis(config.message_timeout));
        for (name, value) in &config.extra {
            client.set(name, value);
        }
        client.create().map_err(|e| EventBusError::Config(format!("producer: {e}")))
    }

    fn consumer(&self, group: &str) -> Result<StreamConsumer, EventBusError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        if let Some(timeout) = self.config.session_timeout {
            client.set("session.timeout.ms", millis(timeout));
        }
        if let Some(wait) = self.config.fetch_wait_max {
            client.set("fetch.wait.max.ms", millis(wait));
        }
        for (name, value) in &self.config.extra {
            client.set(name, value);
        }
        client.create().map_err(|e| EventBusError::Consume { group: group.to_owned(), source: e.into() })
    }

    fn current_producer(&self, topic: &str) -> Result<FutureProducer, EventBusError> {
        self.producer.read().map(|p| p.clone()).map_err(|_| publish_error(topic, "producer lock poisoned"))
    }

    /// After a failed batch: forget its topics (a restarted broker may have lost them) and replace
    /// the producer when its idempotence state is stuck: a fatal error, or a broker that no longer
    /// knows or accepts its producer id and epoch (after timeouts or a broker restart). The next
    /// attempt republishes the whole batch, so dropping the old producer's queue loses nothing.
    fn recover(&self, topics: &[String], codes: &[Option<RDKafkaErrorCode>]) {
        if let Ok(mut known) = self.known_topics.lock() {
            for topic in topics {
                known.remove(topic);
            }
        }
        let Ok(mut producer) = self.producer.write() else { return };
        let stuck = codes.iter().flatten().any(|code| {
            matches!(
                code,
                RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidProducerIdMapping
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
            )
        });
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::warn!(%code, %reason, "Kafka producer hit a fatal error");
        } else if !stuck {
            return;
        }
        tracing::warn!(?codes, "replacing the Kafka producer");
        match Self::producer(&self.config) {
            Ok(fresh) => *producer = fresh,
            Err(error) => tracing::warn!(%error, "cannot create a new Kafka producer"),
        }
    }

    /// Hands a message to the client's queue, waiting while the queue is full.
    async fn enqueue(
        &self,
        message: &Outgoing<'_>,
    ) -> Result<DeliveryFuture, (EventBusError, Option<RDKafkaErrorCode>)> {
        let payload =
            serde_json::to_vec(&message.envelope.payload).map_err(|e| (publish_error(message.topic, e), None))?;
        let mut headers = OwnedHeaders::new();
        for (key, value) in message_headers(message) {
            headers = headers.insert(Header { key: &key, value: Some(value.as_bytes()) });
        }
        let mut record = FutureRecord::to(message.topic).key(message.key).payload(&payload).headers(headers);
        loop {
            let producer = self.current_producer(message.topic).map_err(|e| (e, None))?;
            match producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => {
                    let code = error.rdkafka_error_code();
                    return Err((publish_error(message.topic, error), code));
                }
            }
        }
    }
}

fn publish_error(topic: &str, error: impl Into<BoxError>) -> EventBusError {
    EventBusError::Publish { topic: topic.to_owned(), source: error.into() }
}

fn admin_error(topic: &str, error: impl Into<BoxError>) -> EventBusError {
    EventBusError::Admin { topic: topic.to_owned(), source: error.into() }
}

#[async_trait]
impl EventBus for KafkaEventBus {
    async fn publish_batch(&self, messages: &[Outgoing<'_>]) -> Result<(), EventBusError> {
        let mut topics: Vec<String> = messages.iter().map(|m| m.topic.to_owned()).collect();
        topics.sort();
        topics.dedup();
        self.ensure_topics(&topics).await?;
        // Enqueue in order first: the client keeps per-partition order for what it was given in
        // order, then wait for every acknowledgement.
        let mut pending = Vec::with_capacity(messages.len());
        let mut first_error = None;
        let mut codes = Vec::new();
        for message in messages {
            match self.enqueue(message).await {
                Ok(delivery) => pending.push((message.topic, delivery)),
                Err((error, code)) => {
                    codes.push(code);
                    first_error = Some(error);
                    break;
                }
            }
        }
        let outcomes =
            join_all(pending.into_iter().map(|(topic, delivery)| async move { (topic, delivery.await) })).await;
        for (topic, outcome) in outcomes {
            let error = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _))) => {
                    codes.push(error.rdkafka_error_code());
                    publish_error(topic, error)
                }
                Err(canceled) => publish_error(topic, canceled),
            };
            first_error.get_or_insert(error);
        }
        match first_error {
            None => Ok(()),
            Some(error) => {
                self.recover(&topics, &codes);
                Err(error)
            }
        }
    }

    async fn subscribe(
        &self,
        topics: &[String],
        group: &str,
    ) -> Result<BoxStream<'static, Result<Delivery, EventBusError>>, EventBusError> {
        self.ensure_topics(topics).await?;
        let consumer = Arc::new(self.consumer(group)?);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(|e| EventBusError::Consume { group: group.to_owned(), source: e.into() })?;
        let acknowledger: Arc<dyn Acknowledger> = Arc::new(KafkaAcknowledger {
            consumer: Arc::downgrade(&consumer),
            group: group.to_owned(),
            mode: self.config.commit_mode,
        });
        let state = (consumer, acknowledger, group.to_owned());
        Ok(Box::pin(stream::unfold(state, |(consumer, acknowledger, group)| async move {
            let next = match consumer.recv().await {
                Ok(message) => to_delivery(&message, &acknowledger),
                Err(error) => Err(EventBusError::Consume { group: group.clone(), source: error.into() }),
            };
            Some((next, (consumer, acknowledger, group)))
        })))
    }
}

fn to_delivery(message: &BorrowedMessage<'_>, acknowledger: &Arc<dyn Acknowledger>) -> Result<Delivery, EventBusError> {
    let position = DeliveryPosition {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let headers: Vec<(String, String)> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
    let malformed = |reason| EventBusError::Malformed {
        topic: position.topic.clone(),
        partition: position.partition,
        offset: position.offset,
        reason,
    };
    let envelope = envelope_from_parts(&headers, message.payload().unwrap_or(b"null")).map_err(malformed)?;
    let previous = previous_position(&headers).map_err(malformed)?;
    Ok(Delivery::new(envelope, key, previous, position, Arc::clone(acknowledger)))
}

/// Commits offsets for a consumer that may already be gone.
struct KafkaAcknowledger {
    consumer: Weak<StreamConsumer>,
    group: String,
    mode: KafkaCommitMode,
}

#[async_trait]
impl Acknowledger for KafkaAcknowledger {
    async fn acknowledge(&self, position: &DeliveryPosition) -> Result<(), EventBusError> {
        let Some(consumer) = self.consumer.upgrade() else {
            return Err(EventBusError::SubscriptionClosed { group: self.group.clone() });
        };
        let commit_error = |source: BoxError| EventBusError::Commit {
            topic: position.topic.clone(),
            partition: position.partition,
            offset: position.offset,
            source,
        };
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&position.topic, position.partition, Offset::Offset(position.offset + 1))
            .map_err(|e| commit_error(e.into()))?;
        if self.mode == KafkaCommitMode::Async {
            let result = consumer.commit(&offsets, CommitMode::Async);
            drop(offsets);
            return result.map_err(|e| commit_error(e.into()));
        }
        tokio::task::spawn_blocking(move || {
            let result = consumer.commit(&offsets, CommitMode::Sync);
            // The list must go before the consumer (see DESIGN.md on rdkafka pitfalls).
            drop(offsets);
            drop(consumer);
            result
        })
        .await
        .map_err(|e| commit_error(e.into()))?
        .map_err(|e| commit_error(e.into()))
    }
}
