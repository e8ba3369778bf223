//! A [`DedupStore`] in `PostgreSQL` (table `event_bus_dedup`, created by the crate's migrations).

use async_trait::async_trait;
use sqlx::PgPool;

use super::{DedupStore, EventBusError};
use crate::event_store::StreamId;

/// Durable deduplication progress in `PostgreSQL`.
#[derive(Debug, Clone)]
pub struct PostgresDedupStore {
    pool: PgPool,
}

impl PostgresDedupStore {
    /// A store on `pool`; the database must have the crate's migrations applied.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn dedup_error(consumer: &str, error: impl Into<super::error::BoxError>) -> EventBusError {
    EventBusError::Dedup { consumer: consumer.to_owned(), source: error.into() }
}

#[async_trait]
impl DedupStore for PostgresDedupStore {
    async fn high_water_mark(&self, consumer: &str, stream: &StreamId) -> Result<u64, EventBusError> {
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT stream_version FROM event_bus_dedup WHERE consumer = $1 AND stream_id = $2")
                .bind(consumer)
                .bind(stream.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| dedup_error(consumer, e))?;
        mark.map_or(Ok(0), |v| u64::try_from(v).map_err(|e| dedup_error(consumer, e)))
    }

    async fn record(&self, consumer: &str, stream: &StreamId, version: u64) -> Result<(), EventBusError> {
        let version = i64::try_from(version).map_err(|e| dedup_error(consumer, e))?;
        sqlx::query(
            "INSERT INTO event_bus_dedup (consumer, stream_id, stream_version) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, stream_id) DO UPDATE \
             SET stream_version = GREATEST(event_bus_dedup.stream_version, EXCLUDED.stream_version), updated_at = now()",
        )
        .bind(consumer)
        .bind(stream.as_str())
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(|e| dedup_error(consumer, e))?;
        Ok(())
    }
}
