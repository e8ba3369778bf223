//! `--processes LIST` (`PostgreSQL` only): how throughput and cost change when N processes share
//! one database. For each count N, run and scenario, this process opens a fresh event, starts N
//! copies of itself as buyer processes ([`child`]), lets them loose at once, and times the sale
//! from `GO` until the last one has reported. Each buyer process counts the appends it lost to
//! another writer; the CPU of the buyer processes and of every `PostgreSQL` server process over
//! the same window is divided by the purchases. The log is then replayed for oversell as in the
//! single-process mode.

mod child;

pub(crate) use child::run_child;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice::event_store::{EventStore, PostgresConfig, PostgresEventStore};
use boxoffice::prelude::*;
use boxoffice::system::{GatewayChoice, SystemConfig, TicketingSystem};
use child::ChildReport;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{
    Args, Backend, BoxError, BuyerStats, Outcome, Replay, engine_config, event_spec, ms, passed, percentile,
    print_detail, proc, replay_check, scenario,
};

/// The system every process of this mode builds, the parent to open the event and each buyer
/// process to sell it: the database named by `url`, the simulated gateway.
async fn build_system(args: &Args, url: &str) -> Result<TicketingSystem, BoxError> {
    let config = SystemConfig {
        database_url: Some(url.to_owned()),
        database_max_connections: args.pool,
        database_schema: None,
        kafka_brokers: None,
        consumer_group: None,
        hold_duration: Duration::from_secs(600),
        payment_gateway: Some(GatewayChoice::Simulated),
        ticket_keys: None,
    };
    Ok(TicketingSystem::builder_from_config(&config).await?.engine_config(engine_config(args)).build().await?)
}

/// The event of one run, open for sale, and the log's head before any buyer started.
struct Sale {
    event_id: EventId,
    head_before: u64,
    name: &'static str,
    seats: u64,
}

async fn open_sale(args: &Args, url: &str, sections: usize) -> Result<Sale, BoxError> {
    let s = scenario(sections, args.seats)?;
    let system = build_system(args, url).await?;
    let eur = Currency::new("EUR")?;
    let event_id = system.create_event(event_spec(&s, eur)?).await?;
    system.publish_event(event_id).await?;
    system.open_sales(event_id).await?;
    system.settled().await?;
    let head_before = system.event_store().head_position().await?;
    system.shutdown().await;
    Ok(Sale { event_id, head_before, name: s.name, seats: u64::from(s.capacity_per_section) * sections as u64 })
}

/// A running buyer process and its two pipes.
struct BuyerProcess {
    process: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl BuyerProcess {
    async fn next_line(&mut self) -> Result<String, BoxError> {
        loop {
            let line =
                self.stdout.next_line().await?.ok_or("a buyer process closed its stdout early (see its stderr)")?;
            if !line.trim().is_empty() {
                return Ok(line);
            }
        }
    }
}

/// Starts `n` buyer processes for `sale`, `args.buyers` split evenly between them (the first
/// ones take the remainder), process `i` seeded with `args.seed + i`.
fn spawn_buyers(args: &Args, url: &str, sale: &Sale, sections: usize, n: usize) -> Result<Vec<BuyerProcess>, BoxError> {
    let exe = std::env::current_exe()?;
    (0..n)
        .map(|i| {
            let buyers = args.buyers / n + usize::from(i < args.buyers % n);
            let mut process = Command::new(&exe)
                .args(["--child", &sale.event_id.to_string()])
                .args(["--buyers", &buyers.to_string()])
                .args(["--seed", &args.seed.wrapping_add(i as u64).to_string()])
                .args(["--sections", &sections.to_string()])
                .args(["--seats", &args.seats.to_string()])
                .args(["--pool", &args.pool.to_string()])
                .args(["--snapshot-every", &args.snapshot_every.to_string()])
                .env("DATABASE_URL", url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = process.stdin.take().ok_or("a buyer process without stdin")?;
            let stdout = process.stdout.take().ok_or("a buyer process without stdout")?;
            Ok(BuyerProcess { process, stdin, stdout: BufReader::new(stdout).lines() })
        })
        .collect()
}

/// What the window from `GO` to the last report measured.
struct Race {
    reports: Vec<ChildReport>,
    wall: Duration,
    postgres_cpu: f64,
}

/// Waits until every buyer process is ready, starts them together and collects their reports,
/// then waits for them to exit.
async fn race(mut buyers: Vec<BuyerProcess>) -> Result<Race, BoxError> {
    for buyer in &mut buyers {
        let line = buyer.next_line().await?;
        if line.trim() != "READY" {
            return Err(format!("expected READY from a buyer process, got {line:?}").into());
        }
    }
    let postgres_before = proc::postgres_cpu_seconds()?;
    let started = Instant::now();
    for buyer in &mut buyers {
        buyer.stdin.write_all(b"GO\n").await?;
        buyer.stdin.flush().await?;
    }
    let mut reports = Vec::with_capacity(buyers.len());
    for buyer in &mut buyers {
        let line = buyer.next_line().await?;
        reports.push(serde_json::from_str(&line).map_err(|e| format!("a buyer process's report {line:?}: {e}"))?);
    }
    let wall = started.elapsed();
    let postgres_cpu = proc::postgres_cpu_seconds()? - postgres_before;
    for buyer in buyers {
        drop(buyer.stdin);
        let mut process = buyer.process;
        let status = process.wait().await?;
        if !status.success() {
            return Err(format!("a buyer process failed: {status}").into());
        }
    }
    Ok(Race { reports, wall, postgres_cpu })
}

/// One run of one scenario with `processes` buyer processes.
struct ProcessesRun {
    sections: usize,
    processes: usize,
    /// The sale; its CPU seconds are those of all buyer processes together.
    outcome: Outcome,
    /// CPU seconds of all `PostgreSQL` server processes over the same window.
    postgres_cpu: f64,
    /// Appends lost to another writer, over all buyer processes.
    conflicts: u64,
    /// Appends the buyer processes' engines counted.
    appends_counted: u64,
    /// Seconds from `GO` until the last buyer process's buyers had finished (the rest of the
    /// wall time is its system settling: the saga's last steps and the read models catching up).
    buying: f64,
}

impl ProcessesRun {
    fn purchases_per_s(&self) -> f64 {
        self.outcome.stats.purchases as f64 / self.outcome.wall.as_secs_f64()
    }

    /// Milliseconds of CPU per purchase: (buyer processes, `PostgreSQL`).
    fn cpu_per_purchase(&self) -> (f64, f64) {
        let purchases = self.outcome.stats.purchases.max(1) as f64;
        (1000.0 * self.outcome.sale_cpu_seconds / purchases, 1000.0 * self.postgres_cpu / purchases)
    }

    fn lost_races_per_purchase(&self) -> f64 {
        self.conflicts as f64 / self.outcome.stats.purchases.max(1) as f64
    }
}

fn merge(reports: &[ChildReport]) -> BuyerStats {
    let mut stats = BuyerStats::default();
    for r in reports {
        stats.absorb(BuyerStats {
            reserve: r.reserve_us.iter().map(|&us| Duration::from_micros(us)).collect(),
            pay: r.pay_us.iter().map(|&us| Duration::from_micros(us)).collect(),
            purchases: r.purchases,
            seats_bought: r.seats_bought,
            rejected: r.rejected,
            errors: r.errors,
        });
    }
    stats
}

/// Replays the log through a store of its own, once every buyer process has exited.
async fn replay(url: &str, sale: &Sale) -> Result<(u64, Replay), BoxError> {
    let pg = Arc::new(
        PostgresEventStore::connect(url, PostgresConfig { max_connections: 2, ..PostgresConfig::default() }).await?,
    );
    let store: Arc<dyn EventStore> = pg.clone();
    let events_written = store.head_position().await? - sale.head_before;
    let replay = replay_check(&store, sale.event_id, sale.head_before).await?;
    pg.close().await;
    Ok((events_written, replay))
}

async fn run_once(args: &Args, url: &str, sections: usize, processes: usize) -> Result<ProcessesRun, BoxError> {
    let sale = open_sale(args, url, sections).await?;
    let race = race(spawn_buyers(args, url, &sale, sections, processes)?).await?;
    let (events_written, replay) = replay(url, &sale).await?;
    Ok(ProcessesRun {
        sections,
        processes,
        postgres_cpu: race.postgres_cpu,
        conflicts: race.reports.iter().map(|r| r.append_conflicts).sum(),
        appends_counted: race.reports.iter().map(|r| r.appends).sum(),
        buying: race.reports.iter().map(|r| r.buying_seconds).fold(0.0, f64::max),
        outcome: Outcome {
            scenario: sale.name,
            backend: Backend::Postgres,
            seats: sale.seats,
            wall: race.wall,
            stats: merge(&race.reports),
            events_written,
            sale_cpu_seconds: race.reports.iter().map(|r| r.cpu_seconds).sum(),
            replay,
        },
    })
}

fn processes(n: usize) -> String {
    if n == 1 { "1 process".to_owned() } else { format!("{n} processes") }
}

fn print_run(r: &ProcessesRun) {
    print_detail(&r.outcome);
    println!(
        "buyers done after {:.2} s ({:.0} purchases/s), every process settled after {:.2} s",
        r.buying,
        r.outcome.stats.purchases as f64 / r.buying.max(f64::EPSILON),
        r.outcome.wall.as_secs_f64()
    );
    let (process_ms, postgres_ms) = r.cpu_per_purchase();
    println!(
        "{}: lost append races {} of {} appends counted by the engines ({:.2} per purchase); CPU {:.2} s in the processes + {:.2} s in PostgreSQL = {:.1} + {:.1} ms per purchase\n",
        processes(r.processes),
        r.conflicts,
        r.appends_counted,
        r.lost_races_per_purchase(),
        r.outcome.sale_cpu_seconds,
        r.postgres_cpu,
        process_ms,
        postgres_ms
    );
}

/// The table's line for one scenario and process count: its run with the median purchases/s.
struct Row {
    scenario: &'static str,
    sections: usize,
    processes: usize,
    purchases_per_s: f64,
    reserve: (Duration, Duration, Duration),
    lost_races: f64,
    cpu: (f64, f64),
    appends_per_purchase: f64,
    all_passed: bool,
}

fn row(mut runs: Vec<ProcessesRun>) -> Option<Row> {
    let all_passed = runs.iter().all(|r| passed(&r.outcome));
    runs.sort_by(|a, b| a.purchases_per_s().total_cmp(&b.purchases_per_s()));
    let middle = runs.len() / 2;
    let r = runs.get(middle)?;
    let mut reserve = r.outcome.stats.reserve.clone();
    reserve.sort_unstable();
    Some(Row {
        scenario: r.outcome.scenario,
        sections: r.sections,
        processes: r.processes,
        purchases_per_s: r.purchases_per_s(),
        reserve: (percentile(&reserve, 50.0), percentile(&reserve, 99.0), percentile(&reserve, 99.9)),
        lost_races: r.lost_races_per_purchase(),
        cpu: r.cpu_per_purchase(),
        appends_per_purchase: r.outcome.replay.appends as f64 / r.outcome.stats.purchases.max(1) as f64,
        all_passed,
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "| scenario | processes | purchases/s | p50 / p99 / p99.9 reserve (ms) | lost races per purchase | CPU per purchase, processes + PostgreSQL (ms) | appends per purchase | oversell |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {} / {} / {} | {:.2} | {:.1} + {:.1} | {:.1} | {} |",
            r.scenario,
            r.processes,
            r.purchases_per_s,
            ms(r.reserve.0),
            ms(r.reserve.1),
            ms(r.reserve.2),
            r.lost_races,
            r.cpu.0,
            r.cpu.1,
            r.appends_per_purchase,
            if r.all_passed { "none (all runs)" } else { "FOUND" }
        );
    }
}

/// Each count's median purchases/s and CPU per purchase as a ratio to one process's.
fn print_ratios(rows: &[Row]) {
    for one in rows.iter().filter(|r| r.processes == 1) {
        println!("\n{}, relative to 1 process:", one.scenario);
        let one_cpu = one.cpu.0 + one.cpu.1;
        for r in rows.iter().filter(|r| r.sections == one.sections) {
            println!(
                "  {}: purchases/s {:.2}x, CPU per purchase {:.2}x",
                processes(r.processes),
                r.purchases_per_s / one.purchases_per_s,
                (r.cpu.0 + r.cpu.1) / one_cpu
            );
        }
    }
}

/// The multi-process mode: every count, run and scenario, then the table.
pub(crate) async fn run_processes(args: &Args, scenarios: &[usize], counts: &[usize]) -> Result<(), BoxError> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "--processes needs DATABASE_URL")?;
    let mut seen = HashSet::new();
    let counts: Vec<usize> = counts.iter().copied().filter(|n| seen.insert(*n)).collect();
    println!("processes {counts:?} on one database, --buyers {} split between them\n", args.buyers);
    let mut runs = Vec::new();
    for &processes in &counts {
        for run in 1..=args.runs {
            for &sections in scenarios {
                println!("## {}, run {run} of {}", self::processes(processes), args.runs);
                let r = run_once(args, &url, sections, processes).await?;
                print_run(&r);
                runs.push(r);
            }
        }
    }
    let mut rows = Vec::new();
    for &sections in scenarios {
        for &processes in &counts {
            let (these, rest) = runs.into_iter().partition(|r| r.sections == sections && r.processes == processes);
            runs = rest;
            rows.extend(row(these));
        }
    }
    print_table(&rows);
    print_ratios(&rows);
    Ok(())
}
