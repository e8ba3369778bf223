//! Counters, histograms and gauges through the [`metrics`] facade. The library records; it
//! installs no recorder and no exporter: without one every call is a no-op, with one (for
//! example `metrics-exporter-prometheus`, see `examples/metrics.rs`) these series appear:
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `boxoffice_commands_total` | counter | `aggregate`, `outcome` (`committed`, `rejected`, `failed`) | commands handled by the engine |
//! | `boxoffice_command_duration_seconds` | histogram | `aggregate` | from queueing a command to its answer |
//! | `boxoffice_appends_total` | counter | `aggregate` | successful appends (one per batch of commands) |
//! | `boxoffice_append_batch_commands` | histogram | `aggregate` | commands per append |
//! | `boxoffice_append_conflicts_total` | counter | `aggregate` | appends that lost an optimistic-concurrency race |
//! | `boxoffice_append_retries_total` | counter | `aggregate` | appends retried after a conflict or a transient failure |
//!
//! `aggregate` is the stream category (`event`, `inventory`, `reservation`, `payment`). The log
//! head and the consumers' positions and lag are recorded by the event store layer
//! (`event_store/telemetry.rs`).

use std::time::Duration;

use crate::aggregates::{TICKETING_CATEGORIES, category};
use crate::event_store::StreamId;
use crate::event_store::telemetry::log_head_reached;

/// The `aggregate` label of `stream`: its category, as one of the four static names (no
/// allocation per command).
fn aggregate(stream: &StreamId) -> &'static str {
    let category = category(stream);
    TICKETING_CATEGORIES.into_iter().find(|known| *known == category).unwrap_or("other")
}

/// How a command ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CommandOutcome {
    Committed,
    Rejected,
    Failed,
}

/// A command on `stream` was answered after `took`.
pub(crate) fn command(stream: &StreamId, outcome: CommandOutcome, took: Duration) {
    let aggregate = aggregate(stream);
    let outcome = match outcome {
        CommandOutcome::Committed => "committed",
        CommandOutcome::Rejected => "rejected",
        CommandOutcome::Failed => "failed",
    };
    metrics::counter!("boxoffice_commands_total", "aggregate" => aggregate, "outcome" => outcome).increment(1);
    metrics::histogram!("boxoffice_command_duration_seconds", "aggregate" => aggregate).record(took.as_secs_f64());
}

/// `commands` commands on `stream` were appended together, the last event at `last_position`.
pub(crate) fn appended(stream: &StreamId, commands: usize, last_position: Option<u64>) {
    let aggregate = aggregate(stream);
    metrics::counter!("boxoffice_appends_total", "aggregate" => aggregate).increment(1);
    #[allow(clippy::cast_precision_loss)] // a batch is far below 2^52 commands
    metrics::histogram!("boxoffice_append_batch_commands", "aggregate" => aggregate).record(commands as f64);
    if let Some(position) = last_position {
        log_head_reached(position);
    }
}

/// An append on `stream` lost a race (`conflict`) or failed transiently, and `retried` says
/// whether it is tried again.
pub(crate) fn append_failed(stream: &StreamId, conflict: bool, retried: bool) {
    let aggregate = aggregate(stream);
    if conflict {
        metrics::counter!("boxoffice_append_conflicts_total", "aggregate" => aggregate).increment(1);
    }
    if retried {
        metrics::counter!("boxoffice_append_retries_total", "aggregate" => aggregate).increment(1);
    }
}
