//! Fresh `PostgreSQL` databases for tests that need a whole database of their own (the
//! multi-process and embedding tests), on the server `DATABASE_URL` names.
#![allow(dead_code)] // each test binary uses its own part

use sqlx::{Connection, Executor, PgConnection};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: these PostgreSQL tests need a database (run scripts/test-services.sh)")
    })
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

pub fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned()
}

/// A fresh, empty database on the `DATABASE_URL` server; returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    let url = database_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL ({url}): {e}"));
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    with_database(&url, &name)
}

/// Drops a database [`fresh_database`] made (only after a passing test: a failing one leaves it
/// for inspection).
pub async fn drop_database(url: &str) {
    let name = database_name(url);
    let mut admin = PgConnection::connect(&database_url()).await.unwrap();
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
    admin.close().await.unwrap();
}
