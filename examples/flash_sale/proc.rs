//! What `/proc` says: this process's CPU time and resident memory, and every `PostgreSQL` server
//! process's CPU time together.

use std::path::Path;

use crate::BoxError;

/// `USER_HZ`: the unit of `utime` and `stime` in `/proc/<pid>/stat` (100 on every Linux
/// architecture the benchmark runs on).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The command name and the user + system CPU seconds of one `/proc/<pid>/stat` line, or `None`
/// when the line is malformed. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the numeric fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // The first field after the command name is field 3 (state); utime and stime are 14 and 15.
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, (utime + stime) as f64 / CLOCK_TICKS_PER_SECOND))
}

fn read_stat(path: &Path) -> Result<(String, f64), BoxError> {
    let stat = std::fs::read_to_string(path)?;
    let (comm, seconds) = parse_stat(&stat).ok_or_else(|| format!("{}: unexpected format", path.display()))?;
    Ok((comm.to_owned(), seconds))
}

/// The CPU seconds this process has used so far.
pub(crate) fn own_cpu_seconds() -> Result<f64, BoxError> {
    Ok(read_stat(Path::new("/proc/self/stat"))?.1)
}

#[cfg(feature = "postgres")]
/// The CPU seconds used so far by every living process named `postgres` (the postmaster, its
/// background workers and one backend per connection). A process that exits between two readings
/// takes its time with it, so read before and after a window in which the connections stay open.
pub(crate) fn postgres_cpu_seconds() -> Result<f64, BoxError> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit between the listing and the read: skip it.
        if let Ok((comm, seconds)) = read_stat(&entry.path().join("stat")) {
            if comm == "postgres" {
                total += seconds;
            }
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
