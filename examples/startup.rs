//! Start-up time of a restarted system over a long `PostgreSQL` log: how long
//! `TicketingSystem::builder()...build()` takes until `settled()` returns.
//!
//! ```text
//! createdb -h 127.0.0.1 -U postgres boxoffice_bench
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/boxoffice_bench cargo run --release \
//!     --features postgres --example startup -- --events 10000,100000,1000000
//! ```
//!
//! Options: `--events N[,N...]` (log sizes, 1000000), `--runs N` (restarts measured per size with
//! `PostgreSQL` read models, 5), `--memory-runs N` (restarts with in-memory read models, 3; 0 skips
//! them), `--reuse` (keep a log already filled by an earlier run of this example instead of
//! filling a fresh schema).
//!
//! Each log size gets its own schema, `startup_<N>`, filled like a system that has been selling
//! for a while:
//! 1. warm-up: concurrent buyers reserve and pay through a `TicketingSystem` (saga, engine,
//!    `PostgreSQL` read models), leaving some holds unpaid;
//! 2. bulk: the rest of the log is complete purchases (85% paid, 10% declined, 5% cancelled, over
//!    events of 4 x 2,000 seats, 20,000 customers) run through the crate's `SagaDriver` and stored
//!    with `EventStore::append_batch`, 5,000 events per transaction. The saga's work for them is
//!    done (the driver ran it), so the saga checkpoint is set to the head, and the read models are
//!    caught up in batches of 5,000;
//! 3. tail: one more `TicketingSystem` reads the log once from its saved holds, sells a few more
//!    purchases, leaves more holds open and shuts down, saving its checkpoint, its open holds and
//!    the read models' checkpoints.
//!
//! Then each restart connects a new pool (and migrates, as `TicketingSystem::from_env` does),
//! builds a system over the log and waits for `settled()`: the saga follower resumed from its
//! checkpoint with its open holds re-armed, and the read models caught up with the head.
//!
//! Measured on the 2-core development machine (shared, load average noted; release build,
//! `PostgreSQL` 15 with fsync on), `--events 10000,100000,1000000 --runs 5 --memory-runs 3`:
//!
//! | events in log | read models | restarts | build -> settled (ms) min / median / max | load avg (1 min) |
//! |---:|---|---:|---:|---:|
//! | 9,985 | `PostgreSQL` | 5 | 7 / 12 / 13 | 4.4 |
//! | 99,985 | `PostgreSQL` | 5 | 8 / 14 / 19 | 4.4 |
//! | 999,982 | `PostgreSQL` | 5 | 9 / 18 / 40 | 3.0 |
//! | 9,985 | memory (rebuilt) | 3 | 122 / 124 / 124 | 4.4 |
//! | 99,985 | memory (rebuilt) | 3 | 1,126 / 1,345 / 1,390 | 4.4 |
//! | 999,982 | memory (rebuilt) | 3 | 9,345 / 11,277 / 13,916 | 3.0-3.9 |
//!
//! With `PostgreSQL` read models start-up is flat in the log's length (target: under 2 s at 1 M
//! events): the follower resumes from its checkpoint and re-arms the 50 open holds from their
//! saved row, and each read model resumes from its own checkpoint; connecting and migrating adds
//! 6-17 ms (median). In-memory read models must fold the whole log at every start, about 90,000
//! events/s here: each of the three models pages through the log on its own (`read_all` from
//! position 0, the shared tail only holds recent events) and the time goes to decoding the JSON
//! rows (allocation and `serde_json` parsing are the top of a `perf` profile). Filling the 1 M log
//! took 87 s (bulk appends about 34,000 events/s, read-model catch-up 18 s).
// Durations and counts far below 2^52.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boxoffice::aggregates::{GatewayOutcome, InventoryState, SagaDriver, TicketingEnv};
use boxoffice::event_store::{
    CheckpointStore, EventStore, ExpectedVersion, Metadata, NewEvent, PostgresConfig, PostgresEventStore, StreamAppend,
    StreamId,
};
use boxoffice::framework::Message;
use boxoffice::prelude::*;
use boxoffice::projections::{PostgresReadModels, ReadModel};
use boxoffice::system::{ReadModelStorage, TicketingSystemBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor};

type BoxError = Box<dyn Error + Send + Sync>;

/// The saga checkpoint's name (the builder's default).
const SAGA: &str = "boxoffice-saga";
const SECTIONS: usize = 4;
const SEATS_PER_SECTION: u32 = 2_000;
const CUSTOMERS: u128 = 20_000;
/// Events per `append_batch` transaction (and per read-model catch-up transaction) in the bulk.
const BULK_BATCH: usize = 5_000;
/// Holds left unpaid by the warm-up and by the tail.
const OPEN_HOLDS: usize = 25;
const BUYERS: usize = 16;

struct Args {
    events: Vec<u64>,
    runs: usize,
    memory_runs: usize,
    reuse: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { events: vec![1_000_000], runs: 5, memory_runs: 3, reuse: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => {
                args.events =
                    value()?.split(',').map(|n| n.trim().replace('_', "").parse()).collect::<Result<_, _>>()?;
            }
            "--runs" => args.runs = value()?.parse()?,
            "--memory-runs" => args.memory_runs = value()?.parse()?,
            "--reuse" => args.reuse = true,
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    if args.runs == 0 || args.events.is_empty() || args.events.iter().any(|&n| n < 2_000) {
        return Err("--runs must be positive and every --events size at least 2000".into());
    }
    Ok(args)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn store_config(schema: &str) -> PostgresConfig {
    PostgresConfig { schema: Some(schema.to_owned()), test_before_acquire: false, ..PostgresConfig::default() }
}

fn spec(n: usize) -> Result<EventSpec, BoxError> {
    let mut sections = Vec::new();
    let mut tiers = Vec::new();
    for (s, step) in (0..SECTIONS).zip((0_i64..).step_by(1_000)) {
        let name = SectionName::new(format!("S{s}"))?;
        sections.push(Section { name: name.clone(), capacity: Capacity::new(SEATS_PER_SECTION)? });
        let price = Money::new(2_500 + step, Currency::EUR);
        tiers.push(PricingTier::new(TierKind::Regular, name, price, None)?);
    }
    Ok(EventSpec {
        name: format!("Concert {n}"),
        venue: Venue::new(VenueId::new_v4(), "Arena")?,
        date: chrono::Utc::now() + chrono::Duration::days(60),
        sections,
        pricing_tiers: tiers,
        policy: boxoffice::aggregates::SalesPolicy::default(),
    })
}

fn customer(rng: &mut StdRng) -> CustomerId {
    CustomerId::from_uuid(uuid::Uuid::from_u128(0x5eed_0000 + rng.random_range(0..CUSTOMERS)))
}

fn builder(store: &Arc<PostgresEventStore>, read_models: ReadModelStorage) -> TicketingSystemBuilder {
    TicketingSystem::builder()
        .event_store(Arc::clone(store) as Arc<dyn EventStore>)
        .checkpoints(Arc::clone(store) as Arc<dyn CheckpointStore>)
        .read_models(read_models)
        // Holds left open must not run out while the restarts are measured.
        .hold_duration(Duration::from_secs(6 * 3600))
        .reply_timeout(Duration::from_secs(900))
}

/// `purchases` reserve-and-pay purchases by concurrent buyers on a new event, then `OPEN_HOLDS`
/// reservations left unpaid.
async fn sell(system: &TicketingSystem, purchases: u64, seed: u64) -> Result<(), BoxError> {
    let event_id = system.create_event(spec(0)?).await?;
    system.publish_event(event_id).await?;
    system.open_sales(event_id).await?;
    let left = Arc::new(AtomicU64::new(purchases));
    let tasks: Vec<_> = (0..BUYERS)
        .map(|b| {
            let (system, left) = (system.clone(), Arc::clone(&left));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ b as u64);
                while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                    let request = ReserveRequest {
                        event_id,
                        section: SectionName::new(format!("S{}", rng.random_range(0..SECTIONS)))?,
                        quantity: rng.random_range(1..=4),
                        customer_id: customer(&mut rng),
                        idempotency_key: None,
                    };
                    let hold = system.reserve(request).await?;
                    system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await?;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..OPEN_HOLDS {
        let request = ReserveRequest {
            event_id,
            section: SectionName::new("S0")?,
            quantity: 1,
            customer_id: customer(&mut rng),
            idempotency_key: None,
        };
        system.reserve(request).await?;
    }
    system.settled().await?;
    Ok(())
}

/// Turns persisted events into appends, one per run of consecutive events of one stream (as the
/// engine appends one command's events), all under the purchase's correlation id.
fn appends(events: &[TicketingAction], correlation: uuid::Uuid, out: &mut Vec<StreamAppend>) -> Result<(), BoxError> {
    let mut previous: Option<StreamId> = None;
    for event in events {
        let stream = event.stream()?.ok_or("an event without a stream")?;
        let new = NewEvent::new(event.name(), 1, event.payload()?);
        match out.last_mut() {
            Some(last) if previous.as_ref() == Some(&stream) => last.events.push(new),
            _ => {
                let metadata = Metadata {
                    correlation_id: Some(correlation),
                    causation_id: Some(uuid::Uuid::new_v4()),
                    ..Metadata::default()
                };
                out.push(StreamAppend {
                    metadata,
                    ..StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![new])
                });
            }
        }
        previous = Some(stream);
    }
    Ok(())
}

/// Generates at least `events` events of complete purchases on its own thread, handing them over
/// in batches of about `BULK_BATCH` events.
fn generate(events: u64, seed: u64, batches: &tokio::sync::mpsc::Sender<Vec<StreamAppend>>) -> Result<(), BoxError> {
    let mut driver = SagaDriver::new(TicketingEnv::new(Arc::new(SystemClock)));
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut written, mut cursor, mut shows) = (0_u64, 0_usize, 0_usize);
    let mut event: Option<(EventId, Vec<SectionName>)> = None;
    let mut batch = Vec::new();
    let mut in_batch = 0;
    let mut purchase = 0_u64;
    while written < events {
        let correlation = uuid::Uuid::new_v4();
        let (event_id, sections) = if let Some(open) = &event {
            open.clone()
        } else {
            let event_id = EventId::new_v4();
            let spec = spec(shows)?;
            let names: Vec<SectionName> = spec.sections.iter().map(|s| s.name.clone()).collect();
            shows += 1;
            for command in [
                TicketingAction::from(spec.into_command(event_id)),
                EventAction::PublishEvent { event_id }.into(),
                EventAction::OpenSales { event_id }.into(),
            ] {
                driver.send(command).map_err(|r| format!("bulk set-up refused: {r:?}"))?;
            }
            event = Some((event_id, names.clone()));
            (event_id, names)
        };
        let section = sections[rng.random_range(0..sections.len())].clone();
        let available = driver.state().inventory(event_id, &section).map_or(0, InventoryState::available);
        if available < 4 {
            // Sold out (near enough): the next purchases go to the next show.
            event = None;
            continue;
        }
        let reservation_id = ReservationId::new_v4();
        let unit_price = Money::new(2_500, Currency::EUR);
        let quantity = rng.random_range(1..=4);
        let initiate = ReservationAction::InitiateReservation {
            reservation_id,
            event_id,
            lines: vec![boxoffice::aggregates::OrderLine { section, quantity, unit_price, tier: None }],
            customer_id: customer(&mut rng),
            policy: boxoffice::aggregates::SalesPolicy::default(),
        };
        driver.send(initiate.into()).map_err(|r| format!("bulk reservation refused: {r:?}"))?;
        if purchase % 20 == 19 {
            let _ = driver.send(ReservationAction::CancelReservation { reservation_id }.into());
        } else {
            let pay = ReservationAction::RequestPayment { reservation_id };
            let _ = driver.send(pay.into());
            let outcome = if purchase % 10 == 3 {
                GatewayOutcome::Declined { reason: "insufficient funds".into() }
            } else {
                GatewayOutcome::Approved
            };
            driver.answer(PaymentId::for_reservation(reservation_id), outcome);
        }
        purchase += 1;
        let log = driver.log();
        appends(&log[cursor..], correlation, &mut batch)?;
        let new = (log.len() - cursor) as u64;
        cursor = log.len();
        written += new;
        in_batch += new as usize;
        if in_batch >= BULK_BATCH {
            batches.blocking_send(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        batches.blocking_send(batch)?;
    }
    Ok(())
}

/// Fills schema `schema` with a log of about `events` events; returns its head.
async fn fill(url: &str, schema: &str, events: u64) -> Result<u64, BoxError> {
    let mut admin = sqlx::PgConnection::connect(url).await?;
    admin.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str()).await?;
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await?;
    admin.close().await?;
    let store = Arc::new(PostgresEventStore::connect(url, store_config(schema)).await?);
    store.migrate().await?;
    let models = || ReadModelStorage::Postgres(PostgresReadModels::new(store.pool().clone()));

    let started = Instant::now();
    let warm_up = (events / 500).clamp(20, 2_000);
    let system = builder(&store, models()).build().await?;
    let built = started.elapsed();
    sell(&system, warm_up, 1).await?;
    let sold = started.elapsed();
    system.shutdown().await;
    let after_warm_up = store.head_position().await?;
    println!(
        "  warm-up: {warm_up} purchases through the system, head {after_warm_up}, {:.1?} (built {built:.1?}, sold at {sold:.1?})",
        started.elapsed()
    );

    let bulk_started = Instant::now();
    // What the tail adds: about nine events per purchase and four per open hold.
    let tail = (events / 1_000).clamp(20, 200);
    let target = events.saturating_sub(after_warm_up + 9 * tail + 4 * OPEN_HOLDS as u64);
    let (send, mut receive) = tokio::sync::mpsc::channel(4);
    let generator = tokio::task::spawn_blocking(move || generate(target, 2, &send));
    while let Some(batch) = receive.recv().await {
        store.append_batch(batch).await?;
    }
    generator.await??;
    let head = store.head_position().await?;
    // The driver already ran the saga for every bulk purchase.
    store.save_checkpoint(SAGA, head).await?;
    println!(
        "  bulk: {} events appended in {:.1?} ({:.0} events/s)",
        head - after_warm_up,
        bulk_started.elapsed(),
        (head - after_warm_up) as f64 / bulk_started.elapsed().as_secs_f64()
    );
    let catch_up = Instant::now();
    let read_models = PostgresReadModels::new(store.pool().clone());
    let store_dyn: Arc<dyn EventStore> = Arc::clone(&store) as Arc<dyn EventStore>;
    let caught_up = futures::future::join_all(ReadModel::ALL.into_iter().map(|model| {
        let (read_models, store) = (read_models.clone(), Arc::clone(&store_dyn));
        async move { read_models.catch_up(&*store, model, BULK_BATCH).await }
    }))
    .await;
    for reached in caught_up {
        reached?;
    }
    println!("  read models caught up in {:.1?}", catch_up.elapsed());

    let tail_started = Instant::now();
    let system = builder(&store, models()).build().await?;
    system.settled().await?;
    let read_once = tail_started.elapsed();
    sell(&system, tail, 3).await?;
    system.shutdown().await;
    let head = store.head_position().await?;
    println!(
        "  tail: first start over the bulk {read_once:.1?}, {tail} purchases, head {head}; filled in {:.1?}",
        started.elapsed()
    );
    store.close().await;
    Ok(head)
}

/// Head of an already filled schema, if there is one.
async fn filled(url: &str, schema: &str) -> Result<Option<u64>, BoxError> {
    let mut admin = sqlx::PgConnection::connect(url).await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'checkpoints')",
    )
    .bind(schema)
    .fetch_one(&mut admin)
    .await?;
    admin.close().await?;
    if !exists {
        return Ok(None);
    }
    let store = PostgresEventStore::connect(url, store_config(schema)).await?;
    let (head, saga) = (store.head_position().await?, store.load_checkpoint(SAGA).await?);
    store.close().await;
    Ok((head > 0 && saga > 0).then_some(head))
}

#[derive(Clone, Copy)]
struct Restart {
    connect: Duration,
    build: Duration,
    ready: Duration,
}

/// Starts a system over the log `runs` times; each start is a new pool and a new system.
async fn restarts(url: &str, schema: &str, memory: bool, runs: usize) -> Result<Vec<Restart>, BoxError> {
    let mut measured = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let store = Arc::new(PostgresEventStore::connect(url, store_config(schema)).await?);
        store.migrate().await?;
        let connect = started.elapsed();
        let read_models = if memory {
            ReadModelStorage::Memory
        } else {
            ReadModelStorage::Postgres(PostgresReadModels::new(store.pool().clone()))
        };
        let head = store.head_position().await?;
        let building = Instant::now();
        let system = builder(&store, read_models).build().await?;
        let build = building.elapsed();
        system.settled().await?;
        let ready = building.elapsed();
        system.shutdown().await;
        let after = store.head_position().await?;
        store.close().await;
        if after != head {
            return Err(format!("a restart wrote to the log ({head} -> {after}): holds ran out?").into());
        }
        measured.push(Restart { connect, build, ready });
    }
    Ok(measured)
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

struct Row {
    events: u64,
    read_models: &'static str,
    runs: usize,
    connect: Duration,
    build: Duration,
    ready: [Duration; 3],
    load: String,
}

fn row(events: u64, read_models: &'static str, restarts: &[Restart], load: String) -> Row {
    let median = |mut v: Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut ready: Vec<Duration> = restarts.iter().map(|r| r.ready).collect();
    ready.sort_unstable();
    Row {
        events,
        read_models,
        runs: restarts.len(),
        connect: median(restarts.iter().map(|r| r.connect).collect()),
        build: median(restarts.iter().map(|r| r.build).collect()),
        ready: [ready[0], ready[ready.len() / 2], ready[ready.len() - 1]],
        load,
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL must name a scratch database")?;
    println!(
        "startup: log sizes {:?}, {} restarts each ({} with in-memory read models)\n",
        args.events, args.runs, args.memory_runs
    );
    let mut rows = Vec::new();
    for &events in &args.events {
        let schema = format!("startup_{events}");
        let reused = if args.reuse { filled(&url, &schema).await? } else { None };
        let head = if let Some(head) = reused {
            println!("{schema}: reusing its log of {head} events");
            head
        } else {
            println!("{schema}: filling about {events} events (load {})", load());
            fill(&url, &schema, events).await?
        };
        let before = load();
        let measured = restarts(&url, &schema, false, args.runs).await?;
        let r = row(head, "PostgreSQL", &measured, format!("{before} / {}", load()));
        println!("  PostgreSQL read models: ready in {} ms (median of {})", ms(r.ready[1]), r.runs);
        rows.push(r);
        if args.memory_runs > 0 {
            let before = load();
            let measured = restarts(&url, &schema, true, args.memory_runs).await?;
            let r = row(head, "memory (rebuilt)", &measured, format!("{before} / {}", load()));
            println!("  in-memory read models: ready in {} ms (median of {})", ms(r.ready[1]), r.runs);
            rows.push(r);
        }
    }
    println!();
    println!(
        "| events in log | read models | restarts | connect + migrate (ms, median) | build (ms, median) | build -> settled (ms) min / median / max | load avg before / after |"
    );
    println!("|---:|---|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} / {} / {} | {} |",
            r.events,
            r.read_models,
            r.runs,
            ms(r.connect),
            ms(r.build),
            ms(r.ready[0]),
            ms(r.ready[1]),
            ms(r.ready[2]),
            r.load
        );
    }
    Ok(())
}
