//! The plans the workload's and an exec'd process's children run before exec: which
//! namespaces they join, what the workload mounts, who they become.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use container_protocol::sandbox::ProcessSpec;
use libc::{
    MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME,
};

use crate::etc::EtcFiles;
use crate::process::{Plan, Slot};
use container_rootfs::Root;

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

/// The directories the kernel's filesystems go on. A symlink there is refused, as runc
/// refuses one for proc and sysfs: the container's /proc must be at /proc for every
/// tool in it, and a link is a broken or hostile root filesystem.
pub const KERNEL_DIRS: [&str; 3] = ["proc", "sys", "dev"];

/// Makes the root filesystem ready for [`rootfs_mounts`], before fork (the child may
/// not allocate): the kernel filesystems' directories exist and are no links, and the
/// generated /etc files have something to go onto. Links are followed inside the root
/// (see `container_rootfs`), so nothing is created outside it. Changes only the root.
pub fn prepare(root: &Root, etc: &EtcFiles) -> Result<(), RootfsError> {
    for dir in KERNEL_DIRS {
        let path = Path::new(dir);
        if root.kind(path)? == Some(container_rootfs::FileKind::Symlink) {
            let to = std::fs::read_link(root.label().join(dir))
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(RootfsError::KernelDirLink {
                root: root.label().to_path_buf(),
                dir,
                to,
            });
        }
        root.mkdir_all(path, 0o755)?;
    }
    for (_, name) in etc.mounts() {
        root.create_file(&Path::new("etc").join(name), 0o644)?;
    }
    Ok(())
}

/// Why a root filesystem is refused.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{}: /{dir} is a symlink{to}: it must be a directory, where the container's /{dir} is mounted", root.display())]
    KernelDirLink {
        root: PathBuf,
        dir: &'static str,
        to: String,
    },
    #[error(transparent)]
    Path(#[from] container_rootfs::Error),
}

impl RootfsError {
    pub fn kind(&self) -> container_protocol::ErrorKind {
        match self {
            RootfsError::KernelDirLink { .. } => container_protocol::ErrorKind::Invalid,
            RootfsError::Path(e) => e.kind(),
        }
    }
}

/// A rootfs: itself bind-mounted (pivot_root wants a mount point), /proc, read-only
/// /sys, a minimal /dev, the generated /etc files, then pivot_root. Every target is
/// looked up by the child, after its unshare, inside the root (see [`Slot`]), and
/// everything in /dev is made relative to the fresh tmpfs, by descriptor.
fn rootfs_mounts(
    plan: &mut Plan,
    rootfs: &Path,
    etc: &EtcFiles,
) -> Result<(), crate::process::NulError> {
    use Slot::{Dev, Root as R, Target as T};
    plan.mount(Some(rootfs), rootfs, None, MS_BIND | MS_REC, None)?;
    plan.open_dir(rootfs, R)?;
    let kernel: [(&str, &str, libc::c_ulong, Option<&str>); 3] = [
        ("proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        (
            "sys",
            "sysfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            None,
        ),
        (
            "dev",
            "tmpfs",
            MS_NOSUID | MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    ];
    for (dir, fstype, flags, data) in kernel {
        let shown = format!("/{dir}");
        plan.resolve(R, dir, true, T, &shown)?.mount_at(
            Some(Path::new(fstype)),
            T,
            &shown,
            Some(fstype),
            flags,
            data,
        )?;
    }
    // The tmpfs just mounted, not the directory under it.
    plan.resolve(R, "dev", true, Dev, "/dev")?;
    for name in DEVICES {
        let shown = format!("/dev/{name}");
        let host = Path::new("/dev").join(name);
        plan.create_at(Dev, name, &shown)?
            .resolve(Dev, name, false, T, &shown)?
            .mount_at(Some(&host), T, &shown, None, MS_BIND, None)?;
    }
    plan.mkdir_at(Dev, "pts", "/dev/pts")?
        .resolve(Dev, "pts", true, T, "/dev/pts")?
        .mount_at(
            Some(Path::new("devpts")),
            T,
            "/dev/pts",
            Some("devpts"),
            MS_NOSUID | MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
    plan.symlink_at("pts/ptmx", Dev, "ptmx", "/dev/ptmx")?;
    plan.mkdir_at(Dev, "shm", "/dev/shm")?
        .resolve(Dev, "shm", true, T, "/dev/shm")?
        .mount_at(
            Some(Path::new("shm")),
            T,
            "/dev/shm",
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
        plan.symlink_at(target, Dev, link, &format!("/dev/{link}"))?;
    }
    plan.close(Dev);
    // Last: a link to somewhere a kernel filesystem now covers fails loudly here
    // rather than binding onto a file the container cannot see.
    for (file, name) in etc.mounts() {
        let shown = format!("/etc/{name}");
        plan.resolve(R, &format!("etc/{name}"), false, T, &shown)?
            .mount_at(Some(file), T, &shown, None, MS_BIND, None)?;
    }
    plan.close(T)
        .fchdir(R, &rootfs.display().to_string())
        .close(R);
    plan.pivot_root(rootfs).chdir(Path::new("/"))?;
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
        assert!(pos("unshare mount namespace") < pos("mount proc on /proc"));
        assert!(pos("bind mount /state/c1/etc/hosts on /etc/hosts") < pos("pivot_root /r"));
        assert!(pos("mount devpts on /dev/pts") < pos("pivot_root /r"));
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
