//! What `/proc` says: this process's CPU time and resident memory, and every `PostgreSQL` server
//! process's CPU time together.

use std::path::Path;

use crate::BoxError;

/// `USER_HZ`: the unit of `utime` and `stime` in `/proc/<pid>/stat` (100 on every Linux
/// architecture the benchmark runs on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// One `/proc/<pid>/stat` line: the command name, the process's own user + system CPU seconds,
/// and those of its children that exited and were waited for.
#[cfg_attr(not(feature = "postgres"), expect(dead_code, reason = "only the PostgreSQL reading needs them"))]
struct Stat<'a> {
    comm: &'a str,
    own: f64,
    reaped: f64,
}

/// Reads a `/proc/<pid>/stat` line, or `None` when it is malformed. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so the numeric fields are
/// counted after the last `)`.
fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // The first field after the command name is field 3 (state); utime, stime, cutime and
    // cstime are 14 to 17.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let mut next = || -> Option<u64> { fields.next()?.parse().ok() };
    let (user, system, children_user, children_system) = (next()?, next()?, next()?, next()?);
    let seconds = |ticks: u64| ticks as f64 / CLOCK_TICKS_PER_SECOND;
    Some(Stat { comm, own: seconds(user + system), reaped: seconds(children_user + children_system) })
}

fn read_stat<T>(path: &Path, read: impl FnOnce(Stat<'_>) -> T) -> Result<T, BoxError> {
    let stat = std::fs::read_to_string(path)?;
    let parsed = parse_stat(&stat).ok_or_else(|| format!("{}: unexpected format", path.display()))?;
    Ok(read(parsed))
}

/// The CPU seconds this process has used so far.
pub(crate) fn own_cpu_seconds() -> Result<f64, BoxError> {
    read_stat(Path::new("/proc/self/stat"), |stat| stat.own)
}

#[cfg(feature = "postgres")]
/// The CPU seconds used so far by every `PostgreSQL` server process: each living process named
/// `postgres` (the postmaster, its background workers and one backend per connection), and
/// the backends that exited, whose time the postmaster holds once it has waited for them
/// (`cutime` and `cstime`). Without the second part, a connection that closes inside a window
/// takes its time with it and the window can even read negative.
pub(crate) fn postgres_cpu_seconds() -> Result<f64, BoxError> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit between the listing and the read: skip it.
        let read =
            read_stat(&entry.path().join("stat"), |stat| (stat.comm == "postgres").then_some(stat.own + stat.reaped));
        if let Ok(Some(seconds)) = read {
            total += seconds;
        }
    }
    Ok(total)
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn own_resident_bytes() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("/proc/self/status: no VmRSS line")?;
    Ok(kib * 1024)
}
