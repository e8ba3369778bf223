//! `--prefill N` (memory only): what a long log costs. Each scenario is sold `--runs` times, each
//! time by a system of its own on an empty log; then one more system's log is filled to `N`
//! events with sales (events of 25,000 seats over 100 sections, the same buyers), and the
//! resident memory this added is divided by the events it added; then each scenario is sold
//! `--runs` times on top of the long log, and the median runs' purchases/s and CPU per purchase
//! are printed side by side. Last, the whole log is copied into a second, empty
//! `MemoryEventStore`, event by event: the resident memory that adds is the store's own cost per
//! event, apart from the system's read models and workers.

use std::sync::Arc;
use std::time::Instant;

use boxoffice::event_store::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent, StreamAppend};
use boxoffice::prelude::*;
use boxoffice::system::TicketingSystem;

use crate::{
    Args, BoxError, Outcome, engine_config, event_spec, passed, print_detail, proc, run_buyers, run_scenario, scenario,
};

/// The shape of the sales that fill the log.
const FILL_SECTIONS: usize = 100;
const FILL_SEATS: u32 = 25_000;

/// Sells events until the log holds at least `events` events; returns how many sales it took.
async fn fill(
    args: &Args,
    store: &Arc<dyn EventStore>,
    system: &TicketingSystem,
    events: u64,
) -> Result<u64, BoxError> {
    let s = scenario(FILL_SECTIONS, FILL_SEATS)?;
    let eur = Currency::new("EUR")?;
    let mut sales = 0;
    while store.head_position().await? < events {
        let event_id = system.create_event(event_spec(&s, eur)?).await?;
        system.publish_event(event_id).await?;
        system.open_sales(event_id).await?;
        let stats = run_buyers(system, event_id, &s.sections, args.buyers, args.seed.wrapping_add(sales + 1)).await?;
        if stats.errors > 0 {
            return Err(format!("filling the log: {} buyer errors", stats.errors).into());
        }
        sales += 1;
    }
    system.settled().await?;
    Ok(sales)
}

/// Copies `store`'s log into a fresh `MemoryEventStore` (each event its own append, as recorded:
/// type, payload, metadata) and returns the copy, the resident bytes it added and the payloads'
/// JSON text bytes.
async fn copy_log(store: &Arc<dyn EventStore>) -> Result<(MemoryEventStore, u64, u64), BoxError> {
    let copy = MemoryEventStore::new();
    let before = proc::own_resident_bytes()?;
    let mut text_bytes = 0;
    let mut after = 0;
    loop {
        let page = store.read_all(after, 4_096).await?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for e in &page {
            text_bytes += serde_json::to_string(&*e.payload)?.len() as u64;
        }
        let appends = page
            .into_iter()
            .map(|e| StreamAppend {
                stream: e.stream_id.clone(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: e.event_id,
                    event_type: e.event_type.to_string(),
                    schema_version: e.schema_version,
                    payload: Arc::unwrap_or_clone(e.payload),
                }],
                metadata: (*e.metadata).clone(),
                idempotency_key: None,
            })
            .collect();
        copy.append_batch(appends).await?;
    }
    Ok((copy, proc::own_resident_bytes()?.saturating_sub(before), text_bytes))
}

/// A system on an empty in-memory store.
async fn empty_system(args: &Args) -> Result<(Arc<dyn EventStore>, TicketingSystem), BoxError> {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let system =
        TicketingSystem::builder().event_store(Arc::clone(&store)).engine_config(engine_config(args)).build().await?;
    Ok((store, system))
}

/// Sells each scenario `--runs` times, on `on` (the long log) or else each time on an empty log;
/// per scenario, the run with the median CPU per purchase and every run's CPU per purchase (µs).
async fn sell(
    args: &Args,
    scenarios: &[usize],
    on: Option<(&Arc<dyn EventStore>, &TicketingSystem)>,
) -> Result<Vec<(Outcome, Vec<u64>)>, BoxError> {
    let mut sold = Vec::new();
    for &sections in scenarios {
        let mut outcomes = Vec::new();
        for _ in 0..args.runs {
            let outcome = if let Some((store, system)) = on {
                run_scenario(args, sections, Arc::clone(store), system.clone()).await?
            } else {
                let (store, system) = empty_system(args).await?;
                let outcome = run_scenario(args, sections, store, system.clone()).await?;
                system.shutdown().await;
                outcome
            };
            print_detail(&outcome);
            outcomes.push(outcome);
        }
        outcomes.sort_by(|a, b| per_purchase(a).1.total_cmp(&per_purchase(b).1));
        let cpu = outcomes.iter().map(|o| per_purchase(o).1 as u64).collect();
        let middle = outcomes.len() / 2;
        sold.push((outcomes.swap_remove(middle), cpu));
    }
    Ok(sold)
}

fn per_purchase(o: &Outcome) -> (f64, f64) {
    let secs = o.wall.as_secs_f64();
    (o.stats.purchases as f64 / secs, 1e6 * o.sale_cpu_seconds / o.stats.purchases.max(1) as f64)
}

/// Runs the `--prefill` mode and prints its table.
pub(crate) async fn run_footprint(args: &Args, scenarios: &[usize], events: u64) -> Result<(), BoxError> {
    let short = sell(args, scenarios, None).await?;
    let (store, system) = empty_system(args).await?;

    let (head_before, rss_before) = (store.head_position().await?, proc::own_resident_bytes()?);
    let started = Instant::now();
    let sales = fill(args, &store, &system, events).await?;
    let (head_after, rss_after) = (store.head_position().await?, proc::own_resident_bytes()?);
    let added = head_after - head_before;
    println!(
        "filled the log from {head_before} to {head_after} events with {sales} sales in {:.1} s; resident memory {:.0} -> {:.0} MiB: {:.0} bytes per added event ({:.0} per event of the whole log)\n",
        started.elapsed().as_secs_f64(),
        rss_before as f64 / 1_048_576.0,
        rss_after as f64 / 1_048_576.0,
        rss_after.saturating_sub(rss_before) as f64 / added.max(1) as f64,
        rss_after as f64 / head_after.max(1) as f64,
    );

    let long = sell(args, scenarios, Some((&store, &system))).await?;
    system.shutdown().await;

    let (copy, copied_bytes, text_bytes) = copy_log(&store).await?;
    let copied = copy.head_position().await?.max(1) as f64;
    println!(
        "the store alone: a copy of the {copied}-event log into an empty MemoryEventStore added {:.0} MiB resident: {:.0} bytes per event (payload text {:.0} bytes per event)\n",
        copied_bytes as f64 / 1_048_576.0,
        copied_bytes as f64 / copied,
        text_bytes as f64 / copied
    );

    println!("| scenario | log before the sale (events) | purchases/s | CPU per purchase (µs) | oversell |");
    println!("|---|---:|---:|---:|---|");
    for ((s, s_runs), (l, l_runs)) in short.iter().zip(&long) {
        let ((s_rate, s_cpu), (l_rate, l_cpu)) = (per_purchase(s), per_purchase(l));
        println!(
            "<!-- {}: CPU per purchase (µs) of each run, empty log {s_runs:?}, long log {l_runs:?} -->",
            s.scenario
        );
        println!(
            "| {} | empty | {s_rate:.0} | {s_cpu:.0} | {} |",
            s.scenario,
            if passed(s) { "none" } else { "FOUND" }
        );
        println!(
            "| {} | {head_after} | {l_rate:.0} ({:.2}x) | {l_cpu:.0} ({:.2}x) | {} |",
            l.scenario,
            l_rate / s_rate,
            l_cpu / s_cpu,
            if passed(l) { "none" } else { "FOUND" }
        );
    }
    Ok(())
}
