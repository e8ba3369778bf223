//! One buyer process of the multi-process mode (`--child EVENT_ID`): it builds its own system on
//! the shared database, says `READY`, waits for `GO`, runs its share of the buyers until the event
//! is sold out, and reports what it saw as one JSON line on stdout.

use boxoffice::prelude::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::proc;
use crate::{Args, BoxError, BuyerStats, run_buyers, scenario};

/// What one buyer process reports once its buyers have finished and its system has settled.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ChildReport {
    pub(super) purchases: u64,
    pub(super) seats_bought: u64,
    pub(super) rejected: u64,
    pub(super) errors: u64,
    /// Every reservation attempt's latency, in microseconds.
    pub(super) reserve_us: Vec<u64>,
    /// Every payment's latency, in microseconds.
    pub(super) pay_us: Vec<u64>,
    /// Seconds from `GO` until this process's buyers had finished (before it settled).
    pub(super) buying_seconds: f64,
    /// User + system CPU seconds this process used from `GO` until it had settled.
    pub(super) cpu_seconds: f64,
    /// `boxoffice_append_conflicts_total` over all labels: appends that lost a race.
    pub(super) append_conflicts: u64,
    /// `boxoffice_appends_total` over all labels.
    pub(super) appends: u64,
}

fn micros(latencies: &[std::time::Duration]) -> Vec<u64> {
    latencies.iter().map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).collect()
}

async fn wait_for_go() -> Result<(), BoxError> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    match lines.next_line().await? {
        Some(line) if line.trim() == "GO" => Ok(()),
        other => Err(format!("expected GO on stdin, got {other:?}").into()),
    }
}

async fn say(stdout: &mut tokio::io::Stdout, line: &str) -> Result<(), BoxError> {
    stdout.write_all(line.as_bytes()).await?;
    stdout.write_all(b"\n").await?;
    stdout.flush().await?;
    Ok(())
}

/// The child's whole life; its stdout carries only `READY` and the report.
pub(crate) async fn run_child(args: &Args, event_id: EventId) -> Result<(), BoxError> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().map_err(|e| format!("installing the metrics recorder: {e}"))?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "--child needs DATABASE_URL")?;
    let sections = args.sections.ok_or("--child needs --sections")?;
    let s = scenario(sections, args.seats)?;
    let system = super::build_system(args, &url).await?;
    let mut stdout = tokio::io::stdout();
    say(&mut stdout, "READY").await?;
    wait_for_go().await?;

    let cpu_before = proc::own_cpu_seconds()?;
    let go = std::time::Instant::now();
    let stats: BuyerStats = run_buyers(&system, event_id, &s.sections, args.buyers, args.seed).await?;
    let buying_seconds = go.elapsed().as_secs_f64();
    system.settled().await?;
    let cpu_seconds = proc::own_cpu_seconds()? - cpu_before;

    let (mut append_conflicts, mut appends) = (0, 0);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let DebugValue::Counter(n) = value else { continue };
        match key.key().name() {
            "boxoffice_append_conflicts_total" => append_conflicts += n,
            "boxoffice_appends_total" => appends += n,
            _ => {}
        }
    }
    let report = ChildReport {
        purchases: stats.purchases,
        seats_bought: stats.seats_bought,
        rejected: stats.rejected,
        errors: stats.errors,
        reserve_us: micros(&stats.reserve),
        pay_us: micros(&stats.pay),
        buying_seconds,
        cpu_seconds,
        append_conflicts,
        appends,
    };
    say(&mut stdout, &serde_json::to_string(&report)?).await?;
    system.shutdown().await;
    Ok(())
}
