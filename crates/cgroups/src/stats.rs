//! Reading a cgroup's counters: CPU time, memory in use and its limit, tasks, OOM kills.

use std::path::Path;

use crate::Cgroup;

/// One reading. `None`: this host's hierarchies do not offer that counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used by the cgroup's tasks since it was made, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory in use, less the inactive file cache (what Docker shows).
    pub memory_usage: Option<u64>,
    /// The memory limit; `None`: none.
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (cpu.stat, memory.stat, memory.events, memory.oom_control).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// v1 reports "no limit" as the largest page-aligned value.
const V1_UNLIMITED: u64 = 1 << 62;

pub(crate) fn read(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    // cgroup2's cpu.stat is a core file: there even without the cpu controller.
    if let Some(dir) = cg.v2_dir() {
        s.cpu_usage_ns = keyed(&dir.join("cpu.stat"), "usage_usec").map(|u| u * 1000);
    }
    if s.cpu_usage_ns.is_none() {
        if let Some(dir) = cg.v1_dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"));
        }
    }
    if let Some((dir, v2)) = cg.dir_for("memory") {
        let (usage, stat, limit, inactive) = if v2 {
            (
                "memory.current",
                "memory.stat",
                "memory.max",
                "inactive_file",
            )
        } else {
            (
                "memory.usage_in_bytes",
                "memory.stat",
                "memory.limit_in_bytes",
                "total_inactive_file",
            )
        };
        s.memory_usage = read_u64(&dir.join(usage))
            .map(|u| u.saturating_sub(keyed(&dir.join(stat), inactive).unwrap_or(0)));
        s.memory_limit = read_u64(&dir.join(limit)).filter(|l| *l < V1_UNLIMITED);
    }
    if let Some((dir, _)) = cg.dir_for("pids") {
        s.pids = read_u64(&dir.join("pids.current"));
        s.pids_limit = read_u64(&dir.join("pids.max"));
    }
    if s.pids.is_none() {
        s.pids = Some(cg.pids().len() as u64).filter(|_| cg.exists());
    }
    s
}

pub(crate) fn oom_kills(cg: &Cgroup) -> u64 {
    match cg.dir_for("memory") {
        Some((dir, true)) => keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
        Some((dir, false)) => keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        None => 0,
    }
}
