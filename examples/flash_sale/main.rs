//! Flash sale: concurrent buyers reserve and pay through the whole saga until every seat is sold,
//! then the log is replayed to prove nothing was oversold.
//!
//! ```text
//! cargo run --release --example flash_sale -- --backend memory
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/flash cargo run --release --features postgres \
//!     --example flash_sale -- --backend postgres --seats 2000
//! DATABASE_URL=... KAFKA_BROKERS=127.0.0.1:9092 cargo run --release --features postgres,kafka \
//!     --example flash_sale -- --backend postgres+kafka --seats 2000
//! DATABASE_URL=... cargo run --release --features postgres \
//!     --example flash_sale -- --backend postgres --processes 1,2,3 --seats 2000 --sections 1
//! ```
//!
//! Options: `--backend memory|postgres|postgres+kafka` (the last also runs the outbox relay,
//! publishing every event to Kafka while the sale runs, and waits until it has caught up), `--buyers N` (64), `--seats N` (10000, split evenly
//! over the sections), `--sections 1|100` (both scenarios when omitted), `--seed N` (42),
//! `--pool N` (database connections, 32), `--commit-batch N` and `--commits-in-flight N` (the
//! `PostgreSQL` store's group commit: most appends per transaction, 256, 1 turns it off; most
//! append transactions at once, 2), `--snapshot-every N` (events between a stream's snapshots,
//! the library default 500; 0 never), `--runs N` (3: every scenario is run N times, each on a
//! fresh event, and the table shows the run with the median purchases/s beside the median
//! baseline, because 2-core machines shared with other work are noisy), `--processes LIST`
//! (`PostgreSQL` only, e.g. `1,2,3`: for each count N, N processes of this example share one
//! database and sell one event together, `--buyers` split between them; the table shows
//! purchases/s, lost append races and CPU per purchase, processes and `PostgreSQL` server apart,
//! and each N's ratio to one process; see `processes.rs`), `--prefill N` (memory only: each
//! scenario sold on a short log, then the log filled to N events, the resident memory per added
//! event printed, and each scenario sold again on the long log; see `footprint.rs`),
//! `--mark-sales SECONDS` (say on stderr when each sale's measured window starts and ends, and
//! wait that long there: `callgrind.sh` counts each sale's instructions this way).
//!
//! Scenarios: one hot section, or 100 sections whose demand follows a Zipf law (s = 1.1). Each
//! buyer task loops: pick a section, reserve 1-4 seats, pay, until everything is sold. Printed
//! beside each result is its baseline measured in the same run: a bare loop over the reducers
//! (in memory), or raw single-row insert commits at the same concurrency (`PostgreSQL`).

// Throughput and percentile arithmetic on counts far below 2^52.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use boxoffice::aggregates::{GatewayOutcome, InventoryAction, InventoryState, SagaDriver, Section, TicketingEnv};
use boxoffice::event_store::{EventStore, MemoryEventStore};
use boxoffice::prelude::*;
use boxoffice::system::{EngineConfig, EventSpec, PaymentDetails, ReserveRequest, SystemError, TicketingSystem};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod footprint;
mod proc;
#[cfg(feature = "postgres")]
mod processes;

type BoxError = Box<dyn Error + Send + Sync>;

/// The benchmark runs on mimalloc: the engine allocates per command (events, envelopes, JSON
/// trees), and glibc's allocator spends a fifth of the CPU on it under many threads. The library
/// itself never chooses the global allocator; an application embedding it picks its own, and
/// this is the choice README's figures were measured with (the same-run baseline too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ZIPF_S: f64 = 1.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Postgres,
    PostgresKafka,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Postgres => "postgres",
            Backend::PostgresKafka => "postgres+kafka",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    backend: Backend,
    buyers: usize,
    seats: u32,
    sections: Option<usize>,
    seed: u64,
    pool: u32,
    runs: usize,
    commit_batch: usize,
    commits_in_flight: usize,
    snapshot_every: u64,
    /// `--processes`: the process counts of the multi-process mode.
    processes: Option<Vec<usize>>,
    /// `--child EVENT_ID`: this process is one of the multi-process mode's buyers.
    child: Option<EventId>,
    /// `--prefill N`: the long-log mode, filling the log to N events between two sales.
    prefill: Option<u64>,
    /// `--mark-sales SECONDS`: say on stderr when each sale's measured window starts and ends,
    /// and wait that long at each mark, for a profiler outside to switch its collection.
    mark_sales: Option<u64>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        backend: Backend::Memory,
        buyers: 64,
        seats: 10_000,
        sections: None,
        seed: 42,
        pool: 32,
        runs: 3,
        commit_batch: 256,
        commits_in_flight: 2,
        snapshot_every: EngineConfig::default().snapshot_every,
        processes: None,
        child: None,
        prefill: None,
        mark_sales: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => {
                args.backend = match value()?.as_str() {
                    "memory" => Backend::Memory,
                    "postgres" => Backend::Postgres,
                    "postgres+kafka" => Backend::PostgresKafka,
                    other => return Err(format!("unknown backend {other:?} (memory|postgres|postgres+kafka)").into()),
                }
            }
            "--buyers" => args.buyers = value()?.parse()?,
            "--seats" => args.seats = value()?.parse()?,
            "--sections" => args.sections = Some(value()?.parse()?),
            "--seed" => args.seed = value()?.parse()?,
            "--pool" => args.pool = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--commit-batch" => args.commit_batch = value()?.parse()?,
            "--commits-in-flight" => args.commits_in_flight = value()?.parse()?,
            "--snapshot-every" => args.snapshot_every = value()?.parse()?,
            "--processes" => {
                args.processes = Some(value()?.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>()?);
            }
            "--child" => args.child = Some(value()?.parse()?),
            "--prefill" => args.prefill = Some(value()?.parse()?),
            "--mark-sales" => args.mark_sales = Some(value()?.parse()?),
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    if args.buyers == 0 || args.seats == 0 || args.runs == 0 || args.sections == Some(0) {
        return Err("--buyers, --seats, --runs and --sections must be positive".into());
    }
    if args.prefill.is_some() && (args.backend != Backend::Memory || args.processes.is_some()) {
        return Err("--prefill needs --backend memory and no --processes".into());
    }
    if let Some(counts) = &args.processes {
        if args.backend != Backend::Postgres {
            return Err("--processes needs --backend postgres".into());
        }
        if counts.is_empty() || counts.contains(&0) {
            return Err("--processes counts must be positive".into());
        }
        if counts.iter().any(|&n| n > args.buyers) {
            return Err(
                "--buyers must be at least every --processes count (each process runs one buyer or more)".into()
            );
        }
    }
    Ok(args)
}

/// Section sampling: the k-th most popular of the sections still on sale is chosen with
/// probability proportional to 1 / k^s (inverse CDF over the remaining weights).
struct Zipf {
    weights: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        Self { weights: (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect() }
    }

    fn sample(&self, rng: &mut StdRng, open: &[AtomicBool]) -> Option<usize> {
        let total: f64 = self.weights.iter().zip(open).filter(|(_, o)| o.load(Ordering::Relaxed)).map(|(w, _)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut target = rng.random_range(0.0..total);
        let mut last = None;
        for (i, (w, o)) in self.weights.iter().zip(open).enumerate() {
            if o.load(Ordering::Relaxed) {
                last = Some(i);
                if target < *w {
                    return Some(i);
                }
                target -= w;
            }
        }
        last
    }
}

#[derive(Default)]
struct BuyerStats {
    reserve: Vec<Duration>,
    pay: Vec<Duration>,
    purchases: u64,
    seats_bought: u64,
    rejected: u64,
    errors: u64,
}

impl BuyerStats {
    fn absorb(&mut self, other: BuyerStats) {
        self.reserve.extend(other.reserve);
        self.pay.extend(other.pay);
        self.purchases += other.purchases;
        self.seats_bought += other.seats_bought;
        self.rejected += other.rejected;
        self.errors += other.errors;
    }
}

struct Scenario {
    name: &'static str,
    sections: Vec<SectionName>,
    capacity_per_section: u32,
}

fn scenario(sections: usize, seats: u32) -> Result<Scenario, BoxError> {
    let per = (seats / sections as u32).max(1);
    let names = (0..sections).map(|i| SectionName::new(format!("S{i:03}"))).collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        name: if sections == 1 { "hot section" } else { "zipf sections" },
        sections: names,
        capacity_per_section: per,
    })
}

fn event_spec(s: &Scenario, eur: Currency) -> Result<EventSpec, BoxError> {
    let mut sections = Vec::new();
    let mut tiers = Vec::new();
    for name in &s.sections {
        sections.push(Section { name: name.clone(), capacity: Capacity::new(s.capacity_per_section)? });
        tiers.push(PricingTier::new(TierKind::Regular, name.clone(), Money::new(5_000, eur), None)?);
    }
    Ok(EventSpec {
        name: format!("Flash sale ({})", s.name),
        venue: Venue::new(VenueId::new_v4(), "Arena")?,
        date: chrono::Utc::now() + chrono::Duration::days(30),
        sections,
        pricing_tiers: tiers,
        policy: boxoffice::aggregates::SalesPolicy::default(),
    })
}

async fn buyer(
    system: TicketingSystem,
    event_id: EventId,
    sections: Arc<Vec<SectionName>>,
    open: Arc<Vec<AtomicBool>>,
    zipf: Arc<Zipf>,
    mut rng: StdRng,
) -> BuyerStats {
    let mut stats = BuyerStats::default();
    let customer_id = CustomerId::new_v4();
    let mut want: Option<u32> = None;
    while let Some(index) = zipf.sample(&mut rng, &open) {
        let quantity = want.take().unwrap_or_else(|| rng.random_range(1..=4));
        let request =
            ReserveRequest { event_id, section: sections[index].clone(), quantity, customer_id, idempotency_key: None };
        let started = Instant::now();
        let reserved = system.reserve(request).await;
        stats.reserve.push(started.elapsed());
        let hold = match reserved {
            Ok(hold) => hold,
            Err(SystemError::InsufficientInventory { available, .. }) => {
                stats.rejected += 1;
                if available == 0 {
                    open[index].store(false, Ordering::Relaxed);
                } else {
                    want = Some(available);
                }
                continue;
            }
            Err(error) => {
                stats.errors += 1;
                eprintln!("reserve failed: {error}");
                continue;
            }
        };
        let started = Instant::now();
        let paid = system.pay(hold.reservation_id, PaymentDetails { token: "tok_visa".into() }).await;
        stats.pay.push(started.elapsed());
        match paid {
            Ok(purchase) => {
                stats.purchases += 1;
                stats.seats_bought += purchase.seats.len() as u64;
            }
            Err(error) => {
                stats.errors += 1;
                eprintln!("pay failed: {error}");
            }
        }
    }
    stats
}

/// Runs `buyers` concurrent [`buyer`] tasks on `event_id` until every section is sold out; buyer
/// `i`'s random sequence is seeded from `seed` and `i`.
async fn run_buyers(
    system: &TicketingSystem,
    event_id: EventId,
    sections: &[SectionName],
    buyers: usize,
    seed: u64,
) -> Result<BuyerStats, BoxError> {
    let names = Arc::new(sections.to_vec());
    let open: Arc<Vec<AtomicBool>> = Arc::new(sections.iter().map(|_| AtomicBool::new(true)).collect());
    let zipf = Arc::new(Zipf::new(sections.len(), ZIPF_S));
    let tasks: Vec<_> = (0..buyers)
        .map(|i| {
            let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            tokio::spawn(buyer(system.clone(), event_id, Arc::clone(&names), Arc::clone(&open), Arc::clone(&zipf), rng))
        })
        .collect();
    let mut stats = BuyerStats::default();
    for task in tasks {
        stats.absorb(task.await?);
    }
    Ok(stats)
}

fn engine_config(args: &Args) -> EngineConfig {
    EngineConfig { snapshot_every: args.snapshot_every, ..EngineConfig::default() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn median_outcome(mut outcomes: Vec<Outcome>) -> Outcome {
    let rate = |o: &Outcome| o.stats.purchases as f64 / o.wall.as_secs_f64();
    outcomes.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let middle = outcomes.len() / 2;
    outcomes.swap_remove(middle)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// What the replayed log says about one event's inventories.
#[derive(Default)]
struct Replay {
    events: u64,
    /// Appends after `since`: events of one append share stream and timestamp.
    appends: u64,
    /// Transactions after `since`: appends grouped into one transaction share its timestamp.
    transactions: u64,
    sold_seats: u64,
    violations: Vec<String>,
    /// The longest the log went without a new transaction during the sale, and the position
    /// that ended it: how long every process waited on something at once (a stall is a gap of
    /// a second or more where the rest are milliseconds).
    quiet: (Duration, u64),
    /// The slowest step of the sale: from an event to the one it caused (`recorded_at` of
    /// each), with both types and the effect's position.
    slowest_link: Option<(Duration, Arc<str>, Arc<str>, u64)>,
}

/// Folds every inventory event of `event_id` from the global log: reserved + sold never exceeds
/// capacity at any point, a seat is never held or sold twice, and sold seats are unique.
async fn replay_check(store: &Arc<dyn EventStore>, event_id: EventId, since: u64) -> Result<Replay, BoxError> {
    #[derive(Default)]
    struct Section {
        capacity: u64,
        held: HashSet<SeatId>,
        sold: HashSet<SeatId>,
    }
    let mut sections: HashMap<SectionName, Section> = HashMap::new();
    let mut replay = Replay::default();
    let mut appends = HashSet::new();
    let mut transactions = HashSet::new();
    let mut after = 0;
    let mut latest: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut causes: HashMap<uuid::Uuid, (chrono::DateTime<chrono::Utc>, Arc<str>)> = HashMap::new();
    loop {
        let page = store.read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for envelope in &page {
            replay.events += 1;
            if envelope.global_position > since {
                appends.insert((envelope.stream_id.clone(), envelope.recorded_at));
                transactions.insert(envelope.recorded_at);
                // Transactions commit out of position order, so the gap is measured from the
                // latest time seen so far.
                if let Some(gap) = latest.and_then(|t| (envelope.recorded_at - t).to_std().ok())
                    && gap > replay.quiet.0
                {
                    replay.quiet = (gap, envelope.global_position);
                }
                latest = latest.max(Some(envelope.recorded_at));
                if let Some((at, cause)) = envelope.metadata.causation_id.and_then(|id| causes.get(&id))
                    && let Ok(link) = (envelope.recorded_at - *at).to_std()
                    && replay.slowest_link.as_ref().is_none_or(|slowest| link > slowest.0)
                {
                    replay.slowest_link =
                        Some((link, Arc::clone(cause), Arc::clone(&envelope.event_type), envelope.global_position));
                }
                causes.insert(envelope.event_id, (envelope.recorded_at, Arc::clone(&envelope.event_type)));
            }
            let TicketingAction::Inventory(action) = TicketingAction::decode(envelope)? else { continue };
            match action {
                InventoryAction::InventoryInitialized { event_id: e, section, capacity } if e == event_id => {
                    sections.entry(section).or_default().capacity = u64::from(capacity.get());
                }
                InventoryAction::SeatsReserved { event_id: e, section, seats, .. } if e == event_id => {
                    let s = sections.entry(section.clone()).or_default();
                    for seat in seats {
                        if s.sold.contains(&seat.seat_id) || !s.held.insert(seat.seat_id) {
                            replay.violations.push(format!("{section}: seat {} held twice", seat.index));
                        }
                    }
                    if (s.held.len() + s.sold.len()) as u64 > s.capacity {
                        replay.violations.push(format!("{section}: reserved + sold > capacity {}", s.capacity));
                    }
                }
                InventoryAction::SeatsConfirmed { event_id: e, section, seats, .. } if e == event_id => {
                    let s = sections.entry(section.clone()).or_default();
                    for seat in seats {
                        s.held.remove(&seat.seat_id);
                        if !s.sold.insert(seat.seat_id) {
                            replay.violations.push(format!("{section}: seat {} sold twice", seat.index));
                        }
                    }
                }
                InventoryAction::SeatsReleased { event_id: e, section, seats, .. } if e == event_id => {
                    let s = sections.entry(section).or_default();
                    for seat in seats {
                        s.held.remove(&seat.seat_id);
                    }
                }
                _ => {}
            }
        }
    }
    replay.appends = appends.len() as u64;
    replay.transactions = transactions.len() as u64;
    replay.sold_seats = sections.values().map(|s| s.sold.len() as u64).sum();
    Ok(replay)
}

struct Outcome {
    scenario: &'static str,
    backend: Backend,
    seats: u64,
    wall: Duration,
    stats: BuyerStats,
    events_written: u64,
    /// CPU seconds of the buyer processes from the first buyer's start until the sale settled.
    sale_cpu_seconds: f64,
    replay: Replay,
}

/// With `--mark-sales`: says that the sale `what` (starts, ended) and waits for the profiler
/// outside (`callgrind.sh`) to switch its collection on or off.
async fn mark(args: &Args, what: &str) {
    if let Some(seconds) = args.mark_sales {
        eprintln!("flash_sale: sale {what}");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

async fn run_scenario(
    args: &Args,
    sections: usize,
    store: Arc<dyn EventStore>,
    system: TicketingSystem,
) -> Result<Outcome, BoxError> {
    let s = scenario(sections, args.seats)?;
    let eur = Currency::new("EUR")?;
    let event_id = system.create_event(event_spec(&s, eur)?).await?;
    system.publish_event(event_id).await?;
    system.open_sales(event_id).await?;
    system.settled().await?;
    let head_before = store.head_position().await?;

    mark(args, "starts").await;
    let cpu_before = proc::own_cpu_seconds()?;
    let started = Instant::now();
    let stats = run_buyers(&system, event_id, &s.sections, args.buyers, args.seed).await?;
    let wall = started.elapsed();
    system.settled().await?;
    let sale_cpu_seconds = proc::own_cpu_seconds()? - cpu_before;
    mark(args, "ended").await;
    let events_written = store.head_position().await? - head_before;
    let replay = replay_check(&store, event_id, head_before).await?;
    Ok(Outcome {
        scenario: s.name,
        backend: args.backend,
        seats: u64::from(s.capacity_per_section) * sections as u64,
        wall,
        stats,
        events_written,
        sale_cpu_seconds,
        replay,
    })
}

/// Baseline for the in-memory backend: the same purchases straight through the reducers. When
/// its own random sequence sells an event out before it reaches `purchases`, it goes on with a
/// fresh event of the same shape (so any size the sale takes, up to a 100,000-seat stadium, works).
fn reducer_baseline(sections: usize, seats: u32, purchases: u64, seed: u64) -> Result<f64, BoxError> {
    let s = scenario(sections, seats)?;
    let clock = Arc::new(SystemClock);
    let mut driver = SagaDriver::new(TicketingEnv::new(clock.clone())).answering(GatewayOutcome::Approved);
    let eur = Currency::new("EUR")?;
    let zipf = Zipf::new(sections, ZIPF_S);
    let mut rng = StdRng::seed_from_u64(seed);
    let customer_id = CustomerId::new_v4();
    let price = Money::new(5_000, eur);
    let mut done = 0;
    let started = Instant::now();
    while done < purchases {
        let event_id = EventId::new_v4();
        for command in [
            event_spec(&s, eur)?.into_command(event_id),
            EventAction::PublishEvent { event_id },
            EventAction::OpenSales { event_id },
        ] {
            driver.send(command.into()).map_err(|refusal| format!("baseline set-up refused: {refusal:?}"))?;
        }
        let open: Vec<AtomicBool> = (0..sections).map(|_| AtomicBool::new(true)).collect();
        while done < purchases {
            let Some(index) = zipf.sample(&mut rng, &open) else { break };
            let section = s.sections[index].clone();
            let available = driver.state().inventory(event_id, &section).map_or(0, InventoryState::available);
            if available == 0 {
                open[index].store(false, Ordering::Relaxed);
                continue;
            }
            let quantity = rng.random_range(1..=4).min(available);
            let reservation_id = ReservationId::new_v4();
            let initiate = ReservationAction::InitiateReservation {
                reservation_id,
                event_id,
                lines: vec![boxoffice::aggregates::OrderLine { section, quantity, unit_price: price, tier: None }],
                customer_id,
                policy: boxoffice::aggregates::SalesPolicy::default(),
            };
            let _ = driver.send(initiate.into());
            let pay = ReservationAction::RequestPayment { reservation_id };
            let _ = driver.send(pay.into());
            if driver.state().reservation(reservation_id).map(|r| r.status) == Some(ReservationStatus::Completed) {
                done += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    if done < purchases {
        return Err(format!("reducer baseline completed only {done} of {purchases} purchases").into());
    }
    Ok(done as f64 / elapsed.as_secs_f64())
}

fn print_detail(o: &Outcome) {
    let mut reserve = o.stats.reserve.clone();
    let mut pay = o.stats.pay.clone();
    reserve.sort_unstable();
    pay.sort_unstable();
    let secs = o.wall.as_secs_f64();
    println!("### {} / {} ({} seats)", o.scenario, o.backend.name(), o.seats);
    println!(
        "wall {:.3} s; purchases {} ({:.0}/s); successful reservations {} ({:.0}/s); reserve attempts {} ({:.0}/s)",
        secs,
        o.stats.purchases,
        o.stats.purchases as f64 / secs,
        pay.len(),
        pay.len() as f64 / secs,
        reserve.len(),
        reserve.len() as f64 / secs,
    );
    println!(
        "CPU {:.2} s until settled: {:.0} µs per purchase",
        o.sale_cpu_seconds,
        1e6 * o.sale_cpu_seconds / o.stats.purchases.max(1) as f64
    );
    println!(
        "seats sold {} of {}; rejected reservations {}; errors {}; events written {} ({:.0}/s)",
        o.stats.seats_bought,
        o.seats,
        o.stats.rejected,
        o.stats.errors,
        o.events_written,
        o.events_written as f64 / secs
    );
    println!(
        "appends {} ({:.0}/s, {:.1} per purchase, {:.2} events each) in {} transactions ({:.0}/s, {:.1} appends each)",
        o.replay.appends,
        o.replay.appends as f64 / secs,
        o.replay.appends as f64 / o.stats.purchases.max(1) as f64,
        o.events_written as f64 / o.replay.appends.max(1) as f64,
        o.replay.transactions,
        o.replay.transactions as f64 / secs,
        o.replay.appends as f64 / o.replay.transactions.max(1) as f64
    );
    for (name, v) in [("reserve", &reserve), ("pay", &pay)] {
        println!(
            "{name:>7} latency ms: p50 {} p95 {} p99 {} p99.9 {} max {}",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 95.0)),
            ms(percentile(v, 99.0)),
            ms(percentile(v, 99.9)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
    println!(
        "longest quiet stretch of the log during the sale: {} ms, ended by position {}",
        ms(o.replay.quiet.0),
        o.replay.quiet.1
    );
    if let Some((link, cause, effect, position)) = &o.replay.slowest_link {
        println!("slowest step of the sale: {cause} -> {effect}, {} ms (position {position})", ms(*link));
    }
    let ok = passed(o);
    println!(
        "oversell check (replayed {} log events): {} - sold seats in log {}, bought by buyers {}, violations {}",
        o.replay.events,
        if ok { "PASS" } else { "FAIL" },
        o.replay.sold_seats,
        o.stats.seats_bought,
        o.replay.violations.len()
    );
    for v in o.replay.violations.iter().take(5) {
        println!("  violation: {v}");
    }
    println!();
}

struct Row {
    scenario: &'static str,
    backend: &'static str,
    purchases_per_s: f64,
    reservations_per_s: f64,
    reserve: (Duration, Duration),
    pay: (Duration, Duration),
    baseline: String,
    baseline_value: f64,
    oversell: &'static str,
}

fn passed(o: &Outcome) -> bool {
    o.replay.violations.is_empty() && o.replay.sold_seats == o.stats.seats_bought
}

fn row(o: &Outcome, all_passed: bool, baseline: String, baseline_value: f64) -> Row {
    let mut reserve = o.stats.reserve.clone();
    let mut pay = o.stats.pay.clone();
    reserve.sort_unstable();
    pay.sort_unstable();
    let secs = o.wall.as_secs_f64();
    Row {
        scenario: o.scenario,
        backend: o.backend.name(),
        purchases_per_s: o.stats.purchases as f64 / secs,
        reservations_per_s: pay.len() as f64 / secs,
        reserve: (percentile(&reserve, 50.0), percentile(&reserve, 99.0)),
        pay: (percentile(&pay, 50.0), percentile(&pay, 99.0)),
        baseline,
        baseline_value,
        oversell: if all_passed { "none (all runs)" } else { "FOUND" },
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| scenario | backend | purchases/s | reservations/s | p50 / p99 reserve (ms) | p50 / p99 pay (ms) | baseline | ratio | oversell |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {:.1}% | {} |",
            r.scenario,
            r.backend,
            r.purchases_per_s,
            r.reservations_per_s,
            ms(r.reserve.0),
            ms(r.reserve.1),
            ms(r.pay.0),
            ms(r.pay.1),
            r.baseline,
            100.0 * r.purchases_per_s / r.baseline_value,
            r.oversell
        );
    }
}

async fn run_memory(args: &Args, scenarios: &[usize]) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    for &sections in scenarios {
        let mut outcomes = Vec::new();
        let mut baselines = Vec::new();
        for _ in 0..args.runs {
            let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
            let system = TicketingSystem::builder()
                .event_store(Arc::clone(&store))
                .engine_config(engine_config(args))
                .build()
                .await?;
            let outcome = run_scenario(args, sections, Arc::clone(&store), system.clone()).await?;
            system.shutdown().await;
            print_detail(&outcome);
            let purchases = outcome.stats.purchases;
            let (seats, seed) = (args.seats, args.seed);
            let baseline =
                tokio::task::spawn_blocking(move || reducer_baseline(sections, seats, purchases, seed)).await??;
            println!("reducer-loop baseline: {purchases} purchases at {baseline:.0}/s\n");
            outcomes.push(outcome);
            baselines.push(baseline);
        }
        let all_passed = outcomes.iter().all(passed);
        let outcome = median_outcome(outcomes);
        let baseline = median(baselines);
        rows.push(row(&outcome, all_passed, format!("reducer loop {baseline:.0} purchases/s"), baseline));
    }
    Ok(rows)
}

#[cfg(feature = "postgres")]
async fn insert_baseline(url: &str, buyers: usize, pool: u32, run_for: Duration) -> Result<f64, BoxError> {
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(pool).test_before_acquire(false).connect(url).await?;
    sqlx::query("DROP TABLE IF EXISTS flash_sale_scratch").execute(&pool).await?;
    sqlx::query("CREATE TABLE flash_sale_scratch (id BIGSERIAL PRIMARY KEY, payload JSONB NOT NULL)")
        .execute(&pool)
        .await?;
    let deadline = Instant::now() + run_for;
    let started = Instant::now();
    let tasks: Vec<_> = (0..buyers)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut n = 0_u64;
                while Instant::now() < deadline {
                    sqlx::query("INSERT INTO flash_sale_scratch (payload) VALUES ($1)")
                        .bind(serde_json::json!({"seat": n}))
                        .execute(&pool)
                        .await?;
                    n += 1;
                }
                Ok::<u64, sqlx::Error>(n)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE flash_sale_scratch").execute(&pool).await?;
    pool.close().await;
    Ok(rate)
}

#[cfg(feature = "postgres")]
async fn run_postgres(args: &Args, scenarios: &[usize]) -> Result<Vec<Row>, BoxError> {
    use boxoffice::event_store::{PostgresConfig, PostgresEventStore};
    let url = std::env::var("DATABASE_URL").map_err(|_| "--backend postgres needs DATABASE_URL")?;
    // No ping before each pooled operation: the database is local and not restarted mid-run,
    // and the ping is one extra round trip (and backend wake-up) per statement.
    let config = PostgresConfig {
        max_connections: args.pool,
        test_before_acquire: false,
        group_commit_max_batch: args.commit_batch,
        group_commit_in_flight: args.commits_in_flight,
        ..PostgresConfig::default()
    };
    let pg = Arc::new(PostgresEventStore::connect(&url, config).await?);
    pg.migrate().await?;
    let baseline = insert_baseline(&url, args.buyers, args.pool, Duration::from_secs(5)).await?;
    println!(
        "raw insert baseline: {baseline:.0} single-row autocommit inserts/s ({} tasks, pool {})\n",
        args.buyers, args.pool
    );
    let mut rows = Vec::new();
    for &sections in scenarios {
        let store: Arc<dyn EventStore> = pg.clone();
        let mut outcomes = Vec::new();
        for _ in 0..args.runs {
            let mut builder = TicketingSystem::builder()
                .event_store(Arc::clone(&store))
                .engine_config(engine_config(args))
                .checkpoints(pg.clone())
                .checkpoint_name(format!("flash-sale-{}", uuid::Uuid::new_v4()));
            if args.backend == Backend::PostgresKafka {
                let (bus, topics) = kafka_bus().await?;
                builder = builder.event_bus(bus, topics);
            }
            let system = builder.build().await?;
            let outcome = run_scenario(args, sections, Arc::clone(&store), system.clone()).await?;
            if let Some(mut published) = system.published_position() {
                let head = store.head_position().await?;
                let waited = Instant::now();
                tokio::time::timeout(Duration::from_secs(60), published.wait_for(|p| *p >= head)).await??;
                println!(
                    "outbox relay: every event up to position {head} published to Kafka {} ms after the last purchase",
                    waited.elapsed().as_millis()
                );
            }
            system.shutdown().await;
            print_detail(&outcome);
            let commits = outcome.replay.transactions as f64 / outcome.wall.as_secs_f64();
            println!(
                "append transactions/s {commits:.0} = {:.1}% of raw insert commits/s\n",
                100.0 * commits / baseline
            );
            outcomes.push(outcome);
        }
        let all_passed = outcomes.iter().all(passed);
        let outcome = median_outcome(outcomes);
        rows.push(row(&outcome, all_passed, format!("raw inserts {baseline:.0}/s"), baseline));
    }
    pg.close().await;
    Ok(rows)
}

/// The Kafka bus named by `KAFKA_BROKERS` (settings from the environment).
#[cfg(feature = "kafka")]
async fn kafka_bus() -> Result<(Arc<dyn boxoffice::event_bus::EventBus>, boxoffice::event_bus::TopicRouter), BoxError> {
    use boxoffice::event_bus::{KafkaConfig, KafkaEventBus};
    let config = KafkaConfig::from_env().map_err(|e| format!("--backend postgres+kafka needs KAFKA_BROKERS: {e}"))?;
    let topics = config.router();
    Ok((Arc::new(KafkaEventBus::connect(config).await?), topics))
}

#[cfg(all(feature = "postgres", not(feature = "kafka")))]
#[allow(clippy::unused_async)] // same signature as the Kafka variant
async fn kafka_bus() -> Result<(Arc<dyn boxoffice::event_bus::EventBus>, boxoffice::event_bus::TopicRouter), BoxError> {
    Err("--backend postgres+kafka needs the `kafka` feature: cargo run --release --features postgres,kafka --example flash_sale -- --backend postgres+kafka".into())
}

#[cfg(not(feature = "postgres"))]
#[allow(clippy::unused_async)] // same signature as the PostgreSQL variant
async fn run_postgres(_args: &Args, _scenarios: &[usize]) -> Result<Vec<Row>, BoxError> {
    Err("--backend postgres needs the `postgres` feature: cargo run --release --features postgres --example flash_sale -- --backend postgres".into())
}

#[cfg(not(feature = "postgres"))]
mod processes {
    use super::{Args, BoxError, EventId};

    #[allow(clippy::unused_async)] // same signature as the PostgreSQL variant
    pub(crate) async fn run_child(_args: &Args, _event_id: EventId) -> Result<(), BoxError> {
        Err("--child needs the `postgres` feature".into())
    }

    #[allow(clippy::unused_async)] // same signature as the PostgreSQL variant
    pub(crate) async fn run_processes(_args: &Args, _scenarios: &[usize], _counts: &[usize]) -> Result<(), BoxError> {
        Err("--processes needs the `postgres` feature: cargo run --release --features postgres --example flash_sale -- --backend postgres --processes 1,2,3".into())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Warnings (a lost lease, a failing store) go to stderr; RUST_LOG=info shows takeovers.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = parse_args()?;
    if let Some(event_id) = args.child {
        // A buyer process of the multi-process mode: its stdout is the protocol, no banner.
        return processes::run_child(&args, event_id).await;
    }
    let scenarios = match args.sections {
        Some(n) => vec![n],
        None => vec![1, 100],
    };
    println!(
        "flash_sale: backend {}, {} buyers, {} seats, sections {:?}, seed {}, {} runs each, {} worker threads\n",
        args.backend.name(),
        args.buyers,
        args.seats,
        scenarios,
        args.seed,
        args.runs,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    if let Some(counts) = &args.processes {
        return processes::run_processes(&args, &scenarios, counts).await;
    }
    if let Some(events) = args.prefill {
        return footprint::run_footprint(&args, &scenarios, events).await;
    }
    let rows = match args.backend {
        Backend::Memory => run_memory(&args, &scenarios).await?,
        Backend::Postgres | Backend::PostgresKafka => run_postgres(&args, &scenarios).await?,
    };
    print_table(&rows);
    Ok(())
}
