//! Invariant I13, "no payment token at rest", in memory: after the token-scan scenario (see
//! `tests/token_scan_support`) no payment token is in the event log, any snapshot, the read
//! models' answers, the (memory) event bus, the tracing output or any error message. One test in
//! this binary: it installs the process-wide capturing subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod token_scan_support;

use std::sync::Arc;

use boxoffice::event_bus::{EventBus, MemoryEventBus, TopicRouter};
use boxoffice::event_store::{EventStore, MemoryCheckpointStore, MemoryEventStore};
use boxoffice::system::ReadModelStorage;
use token_scan_support::{
    BUS, ERRORS, LOG, READ_MODELS, REPLIES, SNAPSHOTS, Scanner, Setup, TRACES, capture_traces, expect_canaries,
    run_scenario, scan_bus, scan_log, scan_memory_texts, scan_read_models, scan_snapshots, topics_of, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_payment_token_at_rest_in_memory() {
    let traces = capture_traces();
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let bus: Arc<dyn EventBus> = Arc::new(MemoryEventBus::new());
    let router = TopicRouter::new("scan");
    let setup = Setup {
        store: Arc::clone(&store),
        checkpoints: Arc::new(MemoryCheckpointStore::new()),
        read_models: ReadModelStorage::Memory,
        bus: Some((Arc::clone(&bus), router.clone())),
    };
    let run = run_scenario(&setup).await;

    let mut scanner = Scanner::new(&run.tokens);
    expect_canaries(&mut scanner, &run);
    scanner.expect(BUS, run.canary.clone());
    let log = scan_log(&mut scanner, &store).await;
    let snapshots = scan_snapshots(&mut scanner, &store, &log).await;
    scan_read_models(&mut scanner, &run).await;
    scan_bus(&mut scanner, &bus, &topics_of(&log, &router)).await;
    within("shutdown", run.system.shutdown()).await;
    // Everything the system traced, the shutdown included.
    scan_memory_texts(&mut scanner, &run, &traces);
    eprintln!("{} payments with unique tokens, {} events, {snapshots} snapshots", run.tokens.len(), log.len());
    // Checkpoints in memory are positions (u64) only: nothing to scan.
    scanner.assert_clean(&[LOG, SNAPSHOTS, READ_MODELS, REPLIES, ERRORS, TRACES, BUS]);
}
