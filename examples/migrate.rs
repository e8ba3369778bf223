//! Applies the `PostgreSQL` schema (events, snapshots, checkpoints) to the database named by
//! `DATABASE_URL`. Idempotent: running it twice changes nothing the second time.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1/boxoffice cargo run --example migrate --features postgres`

use boxoffice::event_store::{PostgresConfig, PostgresEventStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let store = PostgresEventStore::connect(&url, PostgresConfig::default()).await?;
    store.migrate().await?;
    let head = boxoffice::event_store::EventStore::head_position(&store).await?;
    println!("schema applied; the log holds events up to position {head}");
    store.close().await;
    Ok(())
}
