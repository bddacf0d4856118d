//! A container's cgroup, on cgroup v2, v1 and hybrid hosts, behind one type.
//!
//! The sandbox helper creates it with its limits before the workload starts and the
//! workload's child joins it by writing `0` into descriptors opened before fork
//! (`tasks` in v1, `cgroup.procs` in cgroup2; see `Cgroup::procs_files`), so joining
//! needs no allocation and no pid; `exec` joins the same ones.
//! The apiserver reads it for `stats`, and lists the runtime's parent for `system
//! check`. Stopping kills the whole cgroup: `cgroup.kill` where it has a cgroup2
//! directory (a core file: it needs no controller), else the v1 freezer: freeze,
//! SIGKILL every member, thaw, so nothing forks meanwhile. On a hybrid host whose
//! cgroup2 carries no controller it has none (`Layout::joins_unified`).
//!
//! A module of our own rather than youki's `libcgroups` or `cgroups-rs`: both add
//! tasks by pid from the parent, where the workload has already run by then, and
//! neither joins through descriptors a forked child may use; `libcgroups`' v2 device
//! filter brings libbpf (a C build) and its OCI types, `cgroups-rs` has no device
//! filter at all. What is needed here is small: a few files per controller.

pub mod bpf;
pub mod devices;
mod layout;
mod stats;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use devices::{DeviceKind, DeviceRule, DEFAULT_RULES};
pub use layout::{Layout, V1_CONTROLLERS, V2_CONTROLLERS};
pub use stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    #[error(
        "invalid cgroup name {0:?}: use letters, digits, '.', '_', '-', and '/' between parts"
    )]
    Name(String),
    #[error("cgroup {0} is still in use by processes")]
    Busy(String),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("{step}: {source}{}", if log.is_empty() { String::new() } else { format!(" ({log})") })]
    Bpf {
        step: &'static str,
        source: std::io::Error,
        log: String,
    },
}

impl Error {
    fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let step = step.into();
        move |source| Error::Io { step, source }
    }

    fn at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        Error::io(format!("{what} {}", path.display()))
    }
}

/// What the cgroup allows. `None`: the kernel's default (no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// Memory and swap together, in bytes; `Some(None)`: swap unlimited.
    pub memory_swap: Option<Option<u64>>,
    /// CPU time per period, in microseconds (`--cpus` × period).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: u64,
    /// Relative weight, as v1's `cpu.shares` (2 to 262144); converted for v2.
    pub cpu_shares: Option<u64>,
    /// At most this many tasks; `None`: no limit.
    pub pids_max: Option<u64>,
    /// Devices allowed; empty: no device control at all (every device).
    pub devices: Vec<DeviceRule>,
}

/// The v2 weight for a v1 share count (runc's and crun's conversion: 2..262144 onto
/// 1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn valid_part(p: &str) -> bool {
    !p.is_empty()
        && p != "."
        && p != ".."
        && p.len() <= 255
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Checks a relative cgroup path (`container`, `container/abc`).
pub fn check_path(rel: &str) -> Result<(), Error> {
    if rel.split('/').all(valid_part) {
        Ok(())
    } else {
        Err(Error::Name(rel.to_string()))
    }
}

/// A container's cgroup: the same relative path in every hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: Layout,
    rel: PathBuf,
}

fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::at("open", path))?;
    f.write_all(value.as_bytes()).map_err(|e| Error::Io {
        step: format!("write {value:?} to {}", path.display()),
        source: e,
    })
}

fn read_file(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

impl Cgroup {
    /// The cgroup at `rel` (relative to every hierarchy's root); nothing is created.
    pub fn new(layout: Layout, rel: &str) -> Result<Cgroup, Error> {
        check_path(rel)?;
        if layout.roots().is_empty() {
            return Err(Error::NoHierarchy);
        }
        Ok(Cgroup {
            layout,
            rel: PathBuf::from(rel),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `container/abc`.
    pub fn path(&self) -> &Path {
        &self.rel
    }

    /// Its directory in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.layout
            .roots()
            .iter()
            .map(|r| r.join(&self.rel))
            .collect()
    }

    /// Its directory in the v1 hierarchy of `controller`, if it has one there.
    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        let mount = self.layout.v1_mount(controller)?;
        self.layout
            .roots()
            .contains(&mount)
            .then(|| mount.join(&self.rel))
    }

    /// Its cgroup2 directory, when it has one (`Layout::joins_unified`).
    fn v2_dir(&self) -> Option<PathBuf> {
        self.layout
            .unified
            .as_ref()
            .filter(|_| self.layout.joins_unified())
            .map(|m| m.join(&self.rel))
    }

    /// Where `controller`'s files are: its v1 hierarchy, or cgroup2 when it carries it.
    fn dir_for(&self, controller: &str) -> Option<(PathBuf, bool)> {
        if let Some(d) = self.v1_dir(controller) {
            return Some((d, false));
        }
        if self.layout.v2_has(controller) {
            return self.v2_dir().map(|d| (d, true));
        }
        None
    }

    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Makes the cgroup with `limits`. A leftover empty cgroup of the same path (a
    /// crashed earlier run) is replaced; one with processes in it is refused. On
    /// failure nothing made here is left.
    pub fn create(&self, limits: &Limits) -> Result<(), Error> {
        if self.exists() {
            if !self.pids().is_empty() {
                return Err(Error::Busy(self.rel.display().to_string()));
            }
            self.remove()?;
        }
        let result = self.create_dirs().and_then(|()| self.apply(limits));
        if let Err(e) = result {
            if let Err(undo) = self.remove() {
                tracing::warn!(
                    "cgroup {}: undo a failed create: {undo}",
                    self.rel.display()
                );
            }
            return Err(e);
        }
        Ok(())
    }

    fn create_dirs(&self) -> Result<(), Error> {
        if self.layout.is_unified() {
            self.enable_v2_controllers()?;
        }
        for dir in self.dirs() {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(Error::at("create", parent))?;
            }
            fs::create_dir(&dir).map_err(Error::at("create", &dir))?;
        }
        Ok(())
    }

    /// On v2, a controller reaches a cgroup only when every ancestor enables it for
    /// its children (`cgroup.subtree_control`), from the root down to our parent.
    fn enable_v2_controllers(&self) -> Result<(), Error> {
        let Some(root) = &self.layout.unified else {
            return Ok(());
        };
        let wanted: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| self.layout.unified_controllers.iter().any(|o| o == c))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let line: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let mut dir = root.clone();
        let parts: Vec<_> = self.rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            let control = dir.join("cgroup.subtree_control");
            let enabled = read_file(&control).unwrap_or_default();
            if !wanted
                .iter()
                .all(|c| enabled.split_whitespace().any(|e| e == *c))
            {
                write_file(&control, &line.join(" "))?;
            }
            if i + 1 == parts.len() {
                break;
            }
            dir = dir.join(part);
            if !dir.is_dir() {
                fs::create_dir(&dir).map_err(Error::at("create", &dir))?;
            }
        }
        Ok(())
    }

    fn apply(&self, l: &Limits) -> Result<(), Error> {
        if let Some((dir, v2)) = self.dir_for("memory") {
            if let Some(mem) = l.memory {
                let file = if v2 {
                    "memory.max"
                } else {
                    "memory.limit_in_bytes"
                };
                write_file(&dir.join(file), &mem.to_string())?;
            }
            if let Some(swap) = l.memory_swap {
                let (file, value) = if v2 {
                    // v2 limits swap alone: memory+swap minus memory.
                    let v = match (swap, l.memory) {
                        (None, _) => "max".to_string(),
                        (Some(total), Some(mem)) => total.saturating_sub(mem).to_string(),
                        (Some(total), None) => total.to_string(),
                    };
                    ("memory.swap.max", v)
                } else {
                    let v = swap.map_or("-1".to_string(), |t| t.to_string());
                    ("memory.memsw.limit_in_bytes", v)
                };
                let path = dir.join(file);
                if path.exists() {
                    write_file(&path, &value)?;
                } else {
                    tracing::warn!(
                        "cgroup {}: the kernel accounts no swap ({file} is missing): the swap limit is not applied",
                        self.rel.display()
                    );
                }
            }
        }
        if let Some((dir, v2)) = self.dir_for("cpu") {
            if v2 {
                if let Some(q) = l.cpu_quota_us {
                    write_file(&dir.join("cpu.max"), &format!("{q} {}", l.cpu_period_us))?;
                }
                if let Some(s) = l.cpu_shares {
                    write_file(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
                }
            } else {
                if let Some(q) = l.cpu_quota_us {
                    write_file(&dir.join("cpu.cfs_period_us"), &l.cpu_period_us.to_string())?;
                    write_file(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
                if let Some(s) = l.cpu_shares {
                    write_file(&dir.join("cpu.shares"), &s.to_string())?;
                }
            }
        }
        if let Some((dir, _)) = self.dir_for("pids") {
            let max = l.pids_max.map_or("max".to_string(), |n| n.to_string());
            write_file(&dir.join("pids.max"), &max)?;
        }
        if !l.devices.is_empty() {
            self.apply_devices(&l.devices)?;
        }
        Ok(())
    }

    /// v1: deny all, then allow each rule. v2: the eBPF filter.
    fn apply_devices(&self, rules: &[DeviceRule]) -> Result<(), Error> {
        if rules.contains(&DeviceRule::everything()) {
            return Ok(());
        }
        if let Some(dir) = self.v1_dir("devices") {
            write_file(&dir.join("devices.deny"), "a")?;
            for rule in rules {
                write_file(&dir.join("devices.allow"), &rule.to_string())?;
            }
            return Ok(());
        }
        match self.v2_dir() {
            Some(dir) => bpf::attach(&dir, rules),
            None => Ok(()),
        }
    }

    /// Attaches the v2 device filter to this cgroup's cgroup2 directory, whatever the
    /// v1 controllers do: how the v2 path is tested on a hybrid host.
    pub fn attach_v2_device_filter(&self, rules: &[DeviceRule]) -> Result<(), Error> {
        let dir = self.v2_dir().ok_or(Error::NoHierarchy)?;
        bpf::attach(&dir, rules)
    }

    /// The files a child writes `0` into to join, one per hierarchy, opened for
    /// writing and close-on-exec: `tasks` in a v1 hierarchy, `cgroup.procs` in cgroup2.
    ///
    /// Why `tasks`: a write to `cgroup.procs` moves a whole thread group, so the kernel
    /// takes `cgroup_threadgroup_rwsem` for writing, and that waits for an RCU grace
    /// period whenever the lock has been idle: the first join after a quiet moment,
    /// that is, every `run`. A write to v1's `tasks` naming the writer itself moves one
    /// thread and skips that lock (on this machine's 6.18: 0.04 ms against 8–16 ms; a
    /// kernel that takes it anyway is as slow as `cgroup.procs`, no slower). The child
    /// that writes is single-threaded (fork copies one thread), so its one thread is
    /// the whole process. cgroup2 has no such file for domain cgroups; there the cost
    /// stays (see docs/resources.md).
    pub fn procs_files(&self) -> Result<Vec<OwnedFd>, Error> {
        let unified = self.v2_dir();
        self.dirs()
            .iter()
            .map(|d| {
                let file = if Some(d) == unified.as_ref() {
                    "cgroup.procs"
                } else {
                    "tasks"
                };
                let path = d.join(file);
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(Error::at("open", &path))
            })
            .collect()
    }

    /// Processes in the cgroup (its first hierarchy that has the directory).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = Vec::new();
        for dir in self.dirs() {
            if let Some(text) = read_file(&dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the cgroup and waits until it is empty (up to
    /// `deadline`).
    pub fn kill(&self, deadline: Duration) -> Result<(), Error> {
        // Empty (a workload that ended, as at every `rm`): nothing to freeze or kill.
        // Nothing joins a cgroup by itself: only a child the helper forks does.
        if !self.exists() || self.pids().is_empty() {
            return Ok(());
        }
        let kill_file = self.v2_dir().map(|d| d.join("cgroup.kill"));
        let freezer = self.v1_dir("freezer").filter(|d| d.is_dir());
        match (kill_file.filter(|f| f.exists()), freezer) {
            (Some(file), _) => write_file(&file, "1")?,
            (None, Some(freezer)) => self.kill_frozen(&freezer)?,
            (None, None) => self.kill_members(),
        }
        let until = Instant::now() + deadline;
        loop {
            if self.pids().is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(Error::Busy(self.rel.display().to_string()));
            }
            // Without an atomic kill, new members may have appeared meanwhile.
            if self.v2_dir().is_none() {
                self.kill_members();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill_members(&self) {
        for pid in self.pids() {
            // SAFETY: kill(2) with a pid read from the cgroup; ESRCH is fine.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// v1 without cgroup2: frozen, nothing in the cgroup can fork while it is killed.
    fn kill_frozen(&self, freezer: &Path) -> Result<(), Error> {
        let state = freezer.join("freezer.state");
        write_file(&state, "FROZEN")?;
        let until = Instant::now() + Duration::from_secs(2);
        while read_file(&state).is_some_and(|s| s.trim() != "FROZEN") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill_members();
        write_file(&state, "THAWED")
    }

    /// Kills what is left and removes the cgroup's directories. Idempotent.
    pub fn remove(&self) -> Result<(), Error> {
        self.kill(Duration::from_secs(5))?;
        for dir in self.dirs() {
            remove_dir(&dir)?;
        }
        Ok(())
    }

    /// The cgroup's counters (what each hierarchy offers).
    pub fn stats(&self) -> Stats {
        stats::read(self)
    }

    /// How many times the OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        stats::oom_kills(self)
    }
}

/// rmdir, retried while the kernel still counts exiting members.
fn remove_dir(dir: &Path) -> Result<(), Error> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::at("remove", dir)(e)),
        }
    }
}

/// The names of the cgroups directly under `parent`, in any hierarchy.
pub fn children(layout: &Layout, parent: &str) -> Result<Vec<String>, Error> {
    check_path(parent)?;
    let mut names: Vec<String> = Vec::new();
    for root in layout.roots() {
        let Ok(entries) = fs::read_dir(root.join(parent)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(name) = e.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Removes `rel` and everything under it, deepest first, killing what runs there, in
/// every mounted hierarchy (those a container's cgroup leaves out included, and those
/// with no controller of ours, such as blkio, cpuset or name=systemd, where another
/// runtime given the same parent, podman's runc, makes its own): the end of a test's
/// private parent, or of a bench's.
pub fn remove_tree(layout: &Layout, rel: &str) -> Result<(), Error> {
    check_path(rel)?;
    let mut mounts: Vec<PathBuf> = layout
        .v1
        .iter()
        .map(|(m, _)| m.clone())
        .chain(layout.unified.clone())
        .collect();
    for m in layout::every_hierarchy() {
        if !mounts.contains(&m) {
            mounts.push(m);
        }
    }
    for mount in mounts {
        remove_dir_tree(&mount.join(rel))?;
    }
    Ok(())
}

/// Removes, at the top of every mounted hierarchy, the cgroups `select` picks by name,
/// with everything under them, but only what is empty: rmdir fails on a cgroup that
/// holds a task, and nothing is killed. For leftovers of runs that ended without
/// their clean-up (a killed test's parent, a compared runtime's), where whoever still
/// has a task there must not be harmed.
pub fn remove_empty_trees(select: impl Fn(&str) -> bool) {
    for hierarchy in layout::every_hierarchy() {
        let Ok(entries) = fs::read_dir(&hierarchy) else {
            continue;
        };
        for e in entries.flatten() {
            if select(&e.file_name().to_string_lossy()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn remove_dir_tree(dir: &Path) -> Result<(), Error> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir_tree(&e.path())?;
        }
    }
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<i32> = read_file(&dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= until {
            return Err(Error::Busy(dir.display().to_string()));
        }
        for pid in pids {
            // SAFETY: kill(2) of a pid read from the cgroup; ESRCH is fine.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    remove_dir(dir)
}
