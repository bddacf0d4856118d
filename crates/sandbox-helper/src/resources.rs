//! What issue 10 asks of the sandbox besides capabilities and filters: the container's
//! cgroup (made at setup, joined by the workload and every exec, killed and removed at
//! teardown), its rlimits and `oom_score_adj`, and the device nodes `--device` (or
//! `--privileged`) puts into its /dev. The launch plan takes them at its marked places
//! (see `plan.rs`); the user namespace is `userns.rs`.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use container_cgroups::{devices, Cgroup, DeviceKind, DeviceRule, Layout, Limits};
use container_protocol::resources::{IdRange, ResourceConfig, Ulimit, CPU_PERIOD_US};
use container_protocol::sandbox::SandboxSpec;

use crate::plan::PlanError;
use crate::process::Plan;

/// The container's cgroup and its join files, opened once.
pub struct ContainerCgroup {
    pub cgroup: Cgroup,
    procs: Vec<OwnedFd>,
}

impl ContainerCgroup {
    /// Makes `<rel>` with the limits of `spec`, allowing `rules`' devices.
    pub fn create(rel: &str, spec: &SandboxSpec, rules: Vec<DeviceRule>) -> Result<Self, String> {
        let layout = match &spec.cgroup_mounts {
            Some(lines) => Layout::from_mountinfo(lines),
            None => Layout::detect().map_err(|e| format!("cgroup: {e}"))?,
        };
        let cgroup = Cgroup::new(layout, rel).map_err(|e| format!("cgroup: {e}"))?;
        cgroup
            .create(&limits(&spec.resources, rules))
            .map_err(|e| format!("cgroup {rel}: {e}"))?;
        match cgroup.procs_files() {
            Ok(procs) => Ok(ContainerCgroup { cgroup, procs }),
            Err(e) => {
                let _ = cgroup.remove();
                Err(format!("cgroup {rel}: {e}"))
            }
        }
    }

    /// Kills whatever is left in it and removes it.
    pub fn remove(&self) -> Result<(), String> {
        self.cgroup
            .remove()
            .map_err(|e| format!("cgroup {}: {e}", self.cgroup.path().display()))
    }

    /// SIGKILL to every member, and wait until there is none.
    pub fn kill(&self) -> Result<(), String> {
        self.cgroup
            .kill(Duration::from_secs(10))
            .map_err(|e| format!("cgroup {}: kill: {e}", self.cgroup.path().display()))
    }
}

/// The cgroup's limits for `r`.
pub fn limits(r: &ResourceConfig, devices: Vec<DeviceRule>) -> Limits {
    Limits {
        memory: r.memory,
        memory_swap: r.memory_swap_total(),
        cpu_quota_us: r.nano_cpus.map(|n| n * CPU_PERIOD_US / 1_000_000_000),
        cpu_period_us: CPU_PERIOD_US,
        cpu_shares: r.cpu_shares,
        pids_max: r.pids_max(),
        devices,
    }
}

/// A device node to make in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Inside the container.
    pub path: PathBuf,
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
}

/// `--device HOST` looked up on the host: what it is, or why it is not a device.
pub fn host_device(host: &str) -> Result<(DeviceKind, libc::dev_t, std::fs::Metadata), String> {
    let meta = std::fs::metadata(host).map_err(|e| format!("device {host}: {e}"))?;
    let kind = if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else {
        return Err(format!("device {host}: not a block or character device"));
    };
    Ok((kind, meta.rdev(), meta))
}

/// The device rules and nodes of a container: Docker's defaults and each `--device`;
/// with `all` (`--privileged`), every device of the host, and no rule. Owners are the
/// host's, seen through `range` when the container has its own user namespace.
pub fn devices(
    spec: &SandboxSpec,
    range: Option<IdRange>,
) -> Result<(Vec<DeviceRule>, Vec<DeviceNode>), String> {
    let owner = |uid: u32, gid: u32| match range {
        Some(r) => (r.host_id(uid).unwrap_or(uid), r.host_id(gid).unwrap_or(gid)),
        None => (uid, gid),
    };
    let mut rules: Vec<DeviceRule> = devices::DEFAULT_RULES.to_vec();
    let mut nodes = Vec::new();
    if spec.all_devices {
        rules = vec![DeviceRule::everything()];
        for path in host_dev_nodes(Path::new("/dev")) {
            let host = path.display().to_string();
            if let Ok((_, dev, meta)) = host_device(&host) {
                let (uid, gid) = owner(meta.uid(), meta.gid());
                nodes.push(DeviceNode {
                    path,
                    mode: meta.mode(),
                    dev,
                    uid,
                    gid,
                });
            }
        }
    }
    for d in &spec.resources.devices {
        let (kind, dev, meta) = host_device(&d.path_on_host)?;
        let access = DeviceRule::parse_access(&d.permissions).ok_or_else(|| {
            format!(
                "device {}: bad permissions {:?}",
                d.path_on_host, d.permissions
            )
        })?;
        rules.push(DeviceRule {
            kind,
            major: Some(libc::major(dev)),
            minor: Some(libc::minor(dev)),
            access,
        });
        let (uid, gid) = owner(meta.uid(), meta.gid());
        nodes.retain(|n: &DeviceNode| n.path != Path::new(&d.path_in_container));
        nodes.push(DeviceNode {
            path: PathBuf::from(&d.path_in_container),
            mode: meta.mode(),
            dev,
            uid,
            gid,
        });
    }
    Ok((rules, nodes))
}

/// The host's device nodes under `dir`, but for what the container's /dev has of its
/// own (pts, shm, mqueue) and the defaults it already binds.
fn host_dev_nodes(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(t) = e.file_type() else { continue };
        let name = e.file_name();
        let name = name.to_string_lossy();
        if t.is_dir() {
            if !["pts", "shm", "mqueue"].contains(&name.as_ref()) {
                out.extend(host_dev_nodes(&path));
            }
        } else if (t.is_char_device() || t.is_block_device())
            && !crate::rootfs::DEVICES.contains(&name.as_ref())
            && !["ptmx", "console"].contains(&name.as_ref())
        {
            out.push(path);
        }
    }
    out
}

/// What a process of the container gets from this module, the workload and each exec
/// alike (built before fork).
#[derive(Default)]
pub struct Launch {
    /// The join files of the container's cgroup, one per hierarchy.
    pub cgroup: Vec<(String, OwnedFd)>,
    pub rlimits: Vec<Ulimit>,
    pub oom_score_adj: Option<i32>,
    /// The host's /proc, for `oom_score_adj` and the netns's sysctls.
    pub proc: Option<OwnedFd>,
    /// netns sysctls (path under /proc, value): the workload only.
    pub sysctls: Vec<(String, String)>,
    /// Device nodes to make in /dev (the workload with a root filesystem only).
    pub devices: Vec<DeviceNode>,
    /// The user namespace to enter (see `userns.rs`).
    pub userns: Option<Userns>,
}

/// A container's user namespace, for one launch.
pub struct Userns {
    pub fd: OwnedFd,
    /// The host ids it maps: `range.start` is the container's root.
    pub range: IdRange,
}

impl Launch {
    /// The cgroup's files, duplicated for one launch.
    pub fn cgroup_of(cg: &ContainerCgroup) -> std::io::Result<Vec<(String, OwnedFd)>> {
        cg.cgroup
            .dirs()
            .iter()
            .zip(&cg.procs)
            .map(|(d, f)| Ok((d.display().to_string(), f.try_clone()?)))
            .collect()
    }
}

fn io(step: String) -> impl FnOnce(std::io::Error) -> PlanError {
    move |source| PlanError::Io { step, source }
}

/// Plan step 2: rlimits, `oom_score_adj`, netns sysctls, then the cgroup: all while
/// the process still has the host's privileges (raising a hard limit, lowering the
/// OOM score and moving between cgroups need them), before it runs anything.
pub(crate) fn plan_limits(plan: &mut Plan, l: &Launch) -> Result<(), PlanError> {
    for u in &l.rlimits {
        let Some(resource) = u.resource() else {
            continue;
        };
        plan.setrlimit(&u.name, resource, u.soft, u.hard);
    }
    if let Some(proc) = &l.proc {
        if let Some(adj) = l.oom_score_adj {
            plan.write_at(
                "set oom_score_adj",
                proc,
                "self/oom_score_adj",
                &adj.to_string(),
            )
            .map_err(io("prepare oom_score_adj".into()))?;
        }
        for (path, value) in &l.sysctls {
            plan.write_at(format!("sysctl {path}={value}"), proc, path, value)
                .map_err(io(format!("prepare sysctl {path}")))?;
        }
    }
    for (dir, fd) in &l.cgroup {
        plan.write_fd(format!("join cgroup {dir}"), fd, b"0")
            .map_err(io(format!("duplicate the join file of {dir}")))?;
    }
    Ok(())
}

/// Plan step 4 (inside the new root, before masks): the device nodes. Their parent
/// directories under /dev are made first.
pub(crate) fn plan_devices(plan: &mut Plan, l: &Launch) -> Result<(), PlanError> {
    for node in &l.devices {
        let mut dirs: Vec<&Path> = node
            .path
            .ancestors()
            .skip(1)
            .take_while(|d| *d != Path::new("/dev") && *d != Path::new("/"))
            .collect();
        dirs.reverse();
        for d in dirs {
            plan.mkdir(d)?;
        }
        plan.mknod(&node.path, node.mode, node.dev, (node.uid, node.gid))?;
    }
    Ok(())
}

/// Between plan steps 5 and 6: into the container's user namespace, once the steps
/// that need the host's privileges are done (mounts: /proc and /sys belong to
/// namespaces the host's user namespace owns; the hostname), and before the
/// capability bounding set is dropped (entering a user namespace gives a full set in
/// it, bounding set included).
pub(crate) fn plan_userns(plan: &mut Plan, l: &Launch) -> Result<(), PlanError> {
    if let Some(userns) = &l.userns {
        plan.setns("join user namespace", &userns.fd, libc::CLONE_NEWUSER)
            .map_err(io("duplicate user namespace descriptor".into()))?;
    }
    Ok(())
}

/// The host's /proc, by descriptor.
pub fn open_proc() -> std::io::Result<OwnedFd> {
    let path = CString::new("/proc").map_err(std::io::Error::other)?;
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: we own the new descriptor.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use container_protocol::resources::DeviceMapping;

    fn spec() -> SandboxSpec {
        SandboxSpec {
            id: "c".into(),
            hostname: "c".into(),
            rootfs: None,
            dns: vec![],
            hosts: vec![],
            allocations: vec![],
            net_devices: vec![],
            process: container_protocol::sandbox::ProcessSpec {
                args: vec!["true".into()],
                env: vec![],
                cwd: None,
                user: container_protocol::sandbox::UserSpec::root(),
                tty: false,
            },
            log_path: String::new(),
            log: Default::default(),
            labels: Default::default(),
            confinement: container_protocol::security::Confinement::unconfined(),
            resources: Default::default(),
            cgroup: None,
            cgroup_mounts: None,
            userns: None,
            all_devices: false,
            overlay: None,
            mounts: vec![],
        }
    }

    #[test]
    fn limits_follow_the_flags() {
        let r = ResourceConfig {
            memory: Some(64 << 20),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(512),
            ..Default::default()
        };
        let l = limits(&r, vec![]);
        assert_eq!(l.cpu_quota_us, Some(150_000));
        assert_eq!(
            l.memory_swap,
            Some(Some(128 << 20)),
            "Docker: swap as much as memory"
        );
        assert_eq!(l.pids_max, Some(2048), "podman's default");
    }

    #[test]
    fn a_device_flag_adds_a_rule_and_a_node_and_a_missing_one_is_named() {
        let mut spec = spec();
        spec.resources.devices = vec![DeviceMapping {
            path_on_host: "/dev/null".into(),
            path_in_container: "/dev/sub/mynull".into(),
            permissions: "r".into(),
        }];
        let (rules, nodes) = devices(
            &spec,
            Some(IdRange {
                start: 100_000,
                size: 65_536,
            }),
        )
        .unwrap();
        let last = rules.last().unwrap();
        assert_eq!(last.to_string(), "c 1:3 r");
        assert_eq!(nodes[0].path, Path::new("/dev/sub/mynull"));
        assert_eq!(
            (nodes[0].uid, nodes[0].gid),
            (100_000, 100_000),
            "root seen through the range"
        );
        spec.resources.devices[0].path_on_host = "/nonexistent".into();
        let e = devices(&spec, None).unwrap_err();
        assert!(e.contains("/nonexistent"), "{e}");
        spec.resources.devices[0].path_on_host = "/etc/passwd".into();
        assert!(devices(&spec, None)
            .unwrap_err()
            .contains("not a block or character device"));
    }
}
