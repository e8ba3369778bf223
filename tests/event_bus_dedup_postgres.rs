//! The `PostgreSQL` deduplication store at `DATABASE_URL`; fails, never skips, without a database.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use boxoffice::event_bus::{DedupStore, Deduplicator, MemoryDedupStore, PostgresDedupStore};
use boxoffice::event_store::StreamId;
use uuid::Uuid;

async fn postgres() -> PostgresDedupStore {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point to a PostgreSQL database");
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("DATABASE_URL={url} unreachable: {e}"));
    sqlx::migrate!("./migrations").run(&pool).await.unwrap();
    PostgresDedupStore::new(pool)
}

async fn marks_only_rise(store: Arc<dyn DedupStore>) {
    let consumer = format!("c-{}", Uuid::new_v4());
    let stream = StreamId::new(format!("cart-{}", Uuid::new_v4())).unwrap();
    assert_eq!(store.high_water_mark(&consumer, &stream).await.unwrap(), 0);
    store.record(&consumer, &stream, 3).await.unwrap();
    store.record(&consumer, &stream, 2).await.unwrap();
    assert_eq!(store.high_water_mark(&consumer, &stream).await.unwrap(), 3);
    assert_eq!(store.high_water_mark("someone-else", &stream).await.unwrap(), 0);
}

#[tokio::test]
async fn memory_marks_only_rise() {
    marks_only_rise(Arc::new(MemoryDedupStore::new())).await;
}

#[tokio::test]
async fn postgres_marks_only_rise_and_survive_a_new_pool() {
    marks_only_rise(Arc::new(postgres().await)).await;
    let consumer = format!("c-{}", Uuid::new_v4());
    let stream = StreamId::new("cart-durable").unwrap();
    postgres().await.record(&consumer, &stream, 9).await.unwrap();
    let dedup = Deduplicator::new(consumer, Arc::new(postgres().await));
    let mut envelope = boxoffice::event_store::Envelope {
        event_id: Uuid::new_v4(),
        stream_id: stream,
        stream_version: 9,
        global_position: 1,
        event_type: "Noted".into(),
        schema_version: 1,
        payload: serde_json::Value::Null.into(),
        metadata: boxoffice::event_store::Metadata::default().into(),
        recorded_at: chrono::Utc::now(),
    };
    assert!(!dedup.is_new(&envelope).await.unwrap());
    envelope.stream_version = 10;
    assert!(dedup.is_new(&envelope).await.unwrap());
}
