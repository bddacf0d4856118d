//! Test isolation: every test that touches the kernel first moves its own thread into a
//! fresh network and mount namespace, so links, routes, nftables rules and mounts it makes
//! are invisible to the host and vanish with the test.
//!
//! Namespaces are per thread; threads and processes created afterwards by this thread
//! inherit them. So call [`isolate`] first thing in the test, before building a tokio
//! runtime or spawning a process.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("testkit: {step}: {source}")]
    Sys {
        step: &'static str,
        source: nix::Error,
    },
    #[error("testkit: {step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
}

/// A private network + mount namespace for the calling thread and a temporary state tree.
pub struct Isolated {
    dir: tempfile::TempDir,
}

impl Isolated {
    /// Temporary directory holding `root/` and `run/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// State root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    /// Runtime directory (`--run-dir`).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
}

/// Moves the calling thread into new network and mount namespaces (mount propagation
/// private, so nothing mounted here reaches the host), brings loopback up, and creates a
/// temporary state tree.
pub fn isolate() -> Result<Isolated, Error> {
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|source| Error::Sys {
        step: "unshare(net|mnt)",
        source,
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| Error::Sys {
        step: "make / rprivate",
        source,
    })?;
    // Loopback starts down in a new netns; bringing it up needs no netlink library here.
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|source| Error::Io {
            step: "ip link set lo up",
            source,
        })?;
    if !status.success() {
        return Err(Error::Io {
            step: "ip link set lo up",
            source: std::io::Error::other(format!("exit {status}")),
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("container-test-")
        .tempdir()
        .map_err(|source| Error::Io {
            step: "temp dir",
            source,
        })?;
    for sub in ["root", "run"] {
        std::fs::create_dir_all(dir.path().join(sub)).map_err(|source| Error::Io {
            step: "create state tree",
            source,
        })?;
    }
    Ok(Isolated { dir })
}

impl Drop for Isolated {
    /// A test that killed a helper leaves that helper's netns bind mount behind in this
    /// thread's mount namespace, and a mount point cannot be removed: unmount whatever
    /// is mounted under the temporary tree first, so it goes entirely.
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(dir.as_str()))
            .collect();
        // Deepest first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Directory holding the workspace's built binaries (`target/<profile>/`), derived from
/// the running test executable (`target/<profile>/deps/<test>-<hash>`).
/// `CONTAINER_TEST_BIN_DIR` points the tests at other builds: an older commit's, to
/// see a new test fail before its fix.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINER_TEST_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, built by `cargo build --workspace` or `cargo xtask test`.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A cgroup parent of the test's own, `container-test-<pid>-<n>` at the top of every
/// hierarchy: what the test's containers (or cgroups) go under, so it never touches
/// another cgroup of this machine. Dropping it kills what runs there and removes the
/// whole tree, also when the test failed.
pub struct CgroupParent {
    name: String,
}

impl CgroupParent {
    pub fn new() -> CgroupParent {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_dead_parents);
        let n = N.fetch_add(1, Ordering::Relaxed);
        CgroupParent {
            name: format!("container-test-{}-{n}", std::process::id()),
        }
    }

    /// Relative to every hierarchy's root, as `--cgroup-parent` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Removes the parents a killed test run left (its `Drop` never ran): those whose pid
/// is gone. Only empty cgroups go, so a parent that still holds a task, or belongs to
/// a process this pid namespace cannot see, is left as it is.
fn sweep_dead_parents() {
    container_cgroups::remove_empty_trees(|name| {
        name.strip_prefix("container-test-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
}

impl Default for CgroupParent {
    fn default() -> Self {
        CgroupParent::new()
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let Ok(layout) = container_cgroups::Layout::detect() else {
            return;
        };
        if let Err(e) = container_cgroups::remove_tree(&layout, &self.name) {
            eprintln!("testkit: remove cgroup {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    /// A parent named for a pid above any `pid_max` (4,194,304) is a dead run's; one
    /// named for this process is alive and stays.
    #[test]
    fn a_dead_runs_parents_are_removed_and_a_live_ones_kept() {
        let Ok(layout) = container_cgroups::Layout::detect() else {
            eprintln!("no cgroup hierarchy mounted: nothing to check");
            return;
        };
        let Some(h) = layout
            .v1
            .first()
            .map(|(m, _)| m.clone())
            .or(layout.unified.clone())
        else {
            eprintln!("no cgroup hierarchy mounted: nothing to check");
            return;
        };
        let dead = h.join("container-test-4194305-0");
        let live = h.join(format!("container-test-{}-4242", std::process::id()));
        std::fs::create_dir_all(dead.join("leftover")).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        sweep_dead_parents();
        let dead_gone = !dead.exists();
        let live_kept = live.exists();
        let _ = std::fs::remove_dir(&live);
        let _ = std::fs::remove_dir(dead.join("leftover"));
        let _ = std::fs::remove_dir(&dead);
        assert!(dead_gone, "{} was left", dead.display());
        assert!(live_kept, "{} was removed", live.display());
    }
}
