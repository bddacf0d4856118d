//! The plans the workload's and an exec'd process's children run before exec: which
//! namespaces they join, what the workload mounts, who they become.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use container_protocol::sandbox::ProcessSpec;
use libc::{
    MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME,
};

use crate::etc::EtcFiles;
use crate::process::Plan;

/// Device nodes bind-mounted from the host into a rootfs's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What the workload's child needs to know.
pub struct WorkloadFs<'a> {
    pub net: &'a dyn AsFd,
    pub uts: &'a dyn AsFd,
    pub ipc: &'a dyn AsFd,
    pub hostname: &'a str,
    /// Canonical path of the root filesystem, if any.
    pub rootfs: Option<&'a Path>,
    pub etc: &'a EtcFiles,
    pub process: &'a ProcessSpec,
    pub tty: bool,
    /// Host directories hidden under an empty tmpfs when the workload sees the host's
    /// files: the runtime's own state and sockets, so a container cannot reach the
    /// apiserver or read other containers' records.
    pub masked: &'a [PathBuf],
}

fn plan_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Namespaces, a private mount namespace with the container's view of the files,
/// hostname, terminal, credentials, working directory.
pub fn workload_plan(w: &WorkloadFs<'_>) -> Result<Plan, String> {
    let mut plan = Plan::new();
    plan.setns("join network namespace", w.net, libc::CLONE_NEWNET)
        .and_then(|p| p.setns("join uts namespace", w.uts, libc::CLONE_NEWUTS))
        .and_then(|p| p.setns("join ipc namespace", w.ipc, libc::CLONE_NEWIPC))
        .map_err(|e| format!("duplicate namespace descriptor: {e}"))?;
    plan.unshare("unshare mount namespace", libc::CLONE_NEWNS);
    // Nothing mounted from here on may reach the host.
    plan.mount(None, Path::new("/"), None, MS_REC | MS_PRIVATE, None)
        .map_err(plan_err)?;
    match w.rootfs {
        Some(rootfs) => rootfs_mounts(&mut plan, rootfs, w.etc).map_err(plan_err)?,
        None => host_mounts(&mut plan, w.etc, w.masked).map_err(plan_err)?,
    }
    plan.sethostname(w.hostname).map_err(plan_err)?;
    if w.tty {
        plan.controlling_tty();
    }
    finish(&mut plan, w.process)?;
    Ok(plan)
}

/// An exec'd process joins the running workload's namespaces; the mount namespace
/// last, since entering it changes root and cwd to the container's. Its pid namespace
/// is the helper's `pid_for_children`, set once at start.
pub fn exec_plan(workload_pid: u32, process: &ProcessSpec) -> Result<Plan, String> {
    let mut plan = Plan::new();
    for (kind, flag) in [
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{workload_pid}/ns/{kind}");
        let fd: OwnedFd = std::fs::File::open(&path)
            .map_err(|e| format!("open {path}: {e}"))?
            .into();
        plan.setns(
            format!("join {kind} namespace of pid {workload_pid}"),
            &fd,
            flag,
        )
        .map_err(|e| format!("duplicate {path}: {e}"))?;
    }
    if process.tty {
        plan.controlling_tty();
    }
    finish(&mut plan, process)?;
    Ok(plan)
}

/// Credentials, working directory, a clean slate for signals and descriptors.
fn finish(plan: &mut Plan, process: &ProcessSpec) -> Result<(), String> {
    // The helper ignores SIGHUP, and an ignored signal stays ignored across exec.
    plan.default_signal(libc::SIGHUP);
    plan.credentials(process.uid, process.gid);
    plan.parent_death_signal(libc::SIGKILL);
    let cwd = process.cwd.as_deref().unwrap_or("/");
    plan.chdir(Path::new(cwd)).map_err(plan_err)?;
    plan.cloexec_all();
    Ok(())
}

/// No rootfs: the host's files, with the container's own /proc and /etc files.
/// Targets missing on the host are skipped rather than created there.
fn host_mounts(
    plan: &mut Plan,
    etc: &EtcFiles,
    masked: &[PathBuf],
) -> Result<(), crate::process::NulError> {
    plan.mount(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    for (file, name) in etc.mounts() {
        let target = Path::new("/etc").join(name);
        if target.exists() {
            plan.mount(Some(file), &target, None, MS_BIND, None)?;
        }
    }
    // After the /etc binds: their sources live under the runtime's root.
    for dir in masked.iter().filter(|d| d.is_dir()) {
        plan.mount(
            Some(Path::new("tmpfs")),
            dir,
            Some("tmpfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// A rootfs: itself bind-mounted (pivot_root wants a mount point), /proc, read-only
/// /sys, a minimal /dev, the generated /etc files, then pivot_root.
fn rootfs_mounts(
    plan: &mut Plan,
    rootfs: &Path,
    etc: &EtcFiles,
) -> Result<(), crate::process::NulError> {
    let at = |p: &str| -> PathBuf { rootfs.join(p) };
    plan.mount(Some(rootfs), rootfs, None, MS_BIND | MS_REC, None)?;
    plan.mkdir(&at("proc"))?.mount(
        Some(Path::new("proc")),
        &at("proc"),
        Some("proc"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    plan.mkdir(&at("sys"))?.mount(
        Some(Path::new("sysfs")),
        &at("sys"),
        Some("sysfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
        None,
    )?;
    let dev = at("dev");
    plan.mkdir(&dev)?.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MS_NOSUID | MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEVICES {
        let node = dev.join(name);
        plan.touch(&node)?.mount(
            Some(&Path::new("/dev").join(name)),
            &node,
            None,
            MS_BIND,
            None,
        )?;
    }
    plan.mkdir(&dev.join("pts"))?.mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    plan.symlink("pts/ptmx", &dev.join("ptmx"))?;
    plan.mkdir(&dev.join("shm"))?.mount(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        plan.symlink(target, &dev.join(link))?;
    }
    plan.mkdir(&at("etc"))?;
    for (file, name) in etc.mounts() {
        let target = at("etc").join(name);
        plan.touch(&target)?
            .mount(Some(file), &target, None, MS_BIND, None)?;
    }
    plan.chdir(rootfs)?
        .pivot_root(rootfs)
        .chdir(Path::new("/"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> ProcessSpec {
        ProcessSpec {
            args: vec!["sh".into()],
            env: vec![],
            cwd: None,
            uid: 1000,
            gid: 1000,
            tty: false,
        }
    }

    #[test]
    fn rootfs_plan_pivots_after_mounting_and_drops_privileges_last() {
        let fd = std::fs::File::open("/dev/null").unwrap();
        let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
        let p = process();
        let plan = workload_plan(&WorkloadFs {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            hostname: "box",
            rootfs: Some(Path::new("/r")),
            etc: &etc,
            process: &p,
            tty: true,
            masked: &[],
        })
        .unwrap();
        let labels = plan.labels();
        let pos = |l: &str| {
            labels
                .iter()
                .rposition(|x| *x == l)
                .unwrap_or_else(|| panic!("{l} not in {labels:?}"))
        };
        assert!(pos("unshare mount namespace") < pos("mount proc on /r/proc"));
        assert!(pos("bind mount /state/c1/etc/hosts on /r/etc/hosts") < pos("pivot_root /r"));
        assert!(pos("mount devpts on /r/dev/pts") < pos("pivot_root /r"));
        assert!(pos("pivot_root /r") < pos("detach old root"));
        assert!(pos("setsid") < pos("setuid 1000"));
        assert!(pos("setgid 1000") < pos("setuid 1000"));
        assert!(pos("setuid 1000") < pos("chdir /"));
        assert_eq!(labels.last(), Some(&"mark descriptors close-on-exec"));
    }

    #[test]
    fn host_plan_mounts_own_proc_and_no_pivot() {
        let fd = std::fs::File::open("/dev/null").unwrap();
        let etc = EtcFiles::in_dir(Path::new("/state/c1/etc"));
        let p = process();
        let plan = workload_plan(&WorkloadFs {
            net: &fd,
            uts: &fd,
            ipc: &fd,
            hostname: "box",
            rootfs: None,
            etc: &etc,
            process: &p,
            tty: false,
            masked: &[],
        })
        .unwrap();
        let labels = plan.labels();
        assert!(labels.contains(&"mount proc on /proc"));
        assert!(!labels.iter().any(|l| l.starts_with("pivot_root")));
        assert!(!labels.contains(&"setsid"));
    }
}
