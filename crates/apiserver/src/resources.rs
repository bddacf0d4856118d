//! The apiserver's side of issue 10's resources: its settings (`--cgroup-parent`,
//! `--userns-default`, `--userns-pool`), the defaults filled into a configuration at
//! create (so the record and `inspect` show what applies), the checks that refuse bad
//! values before anything exists, the user-namespace ranges (reserved before a
//! sandbox starts, released at its end, garbage-collected at start and by `check`),
//! and what `stats` reads. The sandbox helper makes and joins the cgroup; the
//! apiserver only reads it, and removes one a dead sandbox left.

use std::path::PathBuf;

use container_cgroups::{Cgroup, Layout};
use container_idranges::{Pool, Ranges};
use container_protocol::api::ContainerStats;
use container_protocol::container::ContainerConfig;
use container_protocol::resources::{Ulimit, UsernsMode, DEFAULT_ULIMIT};

use crate::error::{bad, ApiError};

/// The runtime's cgroup parent when none is given: `<hierarchy>/container/<id>`.
pub const DEFAULT_CGROUP_PARENT: &str = "container";

pub struct Settings {
    /// Relative to every hierarchy's root.
    pub cgroup_parent: String,
    /// What a container without `--userns` gets.
    pub userns_default: UsernsMode,
    pub ranges: Ranges,
    /// The host's cgroup mounts, read at the first start (`SandboxSpec::cgroup_mounts`).
    cgroup_mounts: std::sync::OnceLock<Option<String>>,
}

impl Settings {
    pub fn new(
        root: &std::path::Path,
        cgroup_parent: &str,
        userns_default: UsernsMode,
        pool: Pool,
    ) -> Result<Settings, ApiError> {
        container_cgroups::check_path(cgroup_parent)
            .map_err(|e| bad(format!("--cgroup-parent: {e}")))?;
        let ranges = Ranges::open(&root.join("userns"), pool)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Settings {
            cgroup_parent: cgroup_parent.to_string(),
            userns_default,
            ranges,
            cgroup_mounts: std::sync::OnceLock::new(),
        })
    }

    /// `<parent>/<id>`.
    pub fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// Hierarchies are mounted at boot, before any runtime starts, so one reading
    /// serves the apiserver's life.
    pub fn cgroup_mounts(&self) -> Option<String> {
        self.cgroup_mounts
            .get_or_init(|| container_cgroups::Layout::mount_lines().ok())
            .clone()
    }
}

/// This process's hard limit of `resource`: the cap of a default ulimit (podman's rule:
/// a container does not get more than the runtime has).
fn hard_limit(resource: nix::sys::resource::Resource) -> u64 {
    nix::sys::resource::getrlimit(resource)
        .map(|(_, hard)| hard)
        .unwrap_or(DEFAULT_ULIMIT)
}

/// Checks the resources of `config` and fills in their defaults (pids limit, NOFILE and
/// NPROC, the user namespace). Looks devices up on the host; changes nothing.
pub fn fill(config: &mut ContainerConfig, settings: &Settings) -> Result<(), ApiError> {
    let id = config.id.clone();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let r = &mut config.resources;
    r.check(cpus)
        .map_err(|e| bad(format!("container {id}: {e}")))?;
    for d in &r.devices {
        container_sandbox_helper::resources::host_device(&d.path_on_host)
            .map_err(|e| bad(format!("container {id}: {e}")))?;
    }
    if r.pids_limit.is_none() {
        r.pids_limit = Some(container_protocol::resources::DEFAULT_PIDS_LIMIT);
    }
    use nix::sys::resource::Resource;
    for (name, resource) in [
        ("nofile", Resource::RLIMIT_NOFILE),
        ("nproc", Resource::RLIMIT_NPROC),
    ] {
        if !r.ulimits.iter().any(|u| u.name == name) {
            let v = DEFAULT_ULIMIT.min(hard_limit(resource));
            r.ulimits.push(Ulimit {
                name: name.to_string(),
                soft: v,
                hard: v,
            });
        }
    }
    if config.userns.is_none() {
        config.userns = Some(settings.userns_default);
    }
    Ok(())
}

/// A leftover cgroup of a container whose sandbox died: killed and removed.
pub fn remove_cgroup(rel: &str) -> Result<(), String> {
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    let cg = Cgroup::new(layout, rel).map_err(|e| e.to_string())?;
    cg.remove().map_err(|e| format!("cgroup {rel}: {e}"))
}

/// The cgroups under the runtime's parent.
pub fn cgroups_under(parent: &str) -> Vec<String> {
    Layout::detect()
        .ok()
        .and_then(|l| container_cgroups::children(&l, parent).ok())
        .unwrap_or_default()
}

/// Bytes received and sent by the container's interfaces (loopback aside), from the
/// workload's view of `/proc/net/dev`.
fn network_bytes(pid: u32) -> (u64, u64) {
    let text =
        std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/net/dev"))).unwrap_or_default();
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() >= 9 {
            rx += fields[0];
            tx += fields[8];
        }
    }
    (rx, tx)
}

/// One reading of a running container.
pub fn read_stats(id: &str, rel: &str, pid: Option<u32>) -> Result<ContainerStats, String> {
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    let cg = Cgroup::new(layout, rel).map_err(|e| e.to_string())?;
    if !cg.exists() {
        return Err(format!("container {id}: its cgroup {rel} is gone"));
    }
    let s = cg.stats();
    let (rx, tx) = pid.map(network_bytes).unwrap_or((0, 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Ok(ContainerStats {
        id: id.to_string(),
        read_at_ns: now,
        cpu_usage_ns: s.cpu_usage_ns,
        memory_usage: s.memory_usage,
        memory_limit: s.memory_limit.or_else(host_memory),
        pids: s.pids,
        net_rx_bytes: rx,
        net_tx_bytes: tx,
    })
}

/// The host's memory: what an unlimited container's limit shows, as in Docker.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_in_and_capped_to_the_hard_limit() {
        let dir = std::env::temp_dir().join(format!("res-test-{}", std::process::id()));
        let settings = Settings::new(
            &dir,
            "container",
            UsernsMode::Auto,
            container_idranges::DEFAULT_POOL,
        )
        .unwrap();
        let mut config: ContainerConfig =
            serde_json::from_str(r#"{"id": "c", "process": {"args": ["true"]}}"#).unwrap();
        fill(&mut config, &settings).unwrap();
        assert_eq!(config.resources.pids_limit, Some(2048));
        assert_eq!(
            config.userns,
            Some(UsernsMode::Auto),
            "the apiserver's default"
        );
        let nofile = config
            .resources
            .ulimits
            .iter()
            .find(|u| u.name == "nofile")
            .unwrap();
        assert_eq!(
            nofile.soft,
            DEFAULT_ULIMIT.min(hard_limit(nix::sys::resource::Resource::RLIMIT_NOFILE))
        );
        config.resources.devices = vec![container_protocol::resources::DeviceMapping {
            path_on_host: "/nonexistent".into(),
            path_in_container: "/dev/x".into(),
            permissions: "rwm".into(),
        }];
        let e = fill(&mut config, &settings).unwrap_err().to_string();
        assert!(e.contains("/nonexistent"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
