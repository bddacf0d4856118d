//! The launch plan: everything a process does between fork and exec, for the workload
//! and for an exec'd process alike, built by one function in one documented order.
//!
//! The plan is data (a list of [`Step`]s with their arguments), built here without
//! touching the kernel, and carried out by `process::spawn` in the child. That split is
//! the seam youki's `Syscall` trait gives it: a test builds a plan and reads its steps
//! and their arguments; only the executor makes system calls.
//!
//! The order, and why:
//! 1. namespaces: join the container's (net, uts, ipc; an exec'd process also mnt,
//!    last, since entering it changes root and cwd). The workload makes its own mount
//!    namespace, private from `/` down, so nothing it mounts reaches the host.
//! 2. (issue 10) the user-namespace handshake, then rlimits, then the cgroup: set up
//!    while the process still has every privilege, before anything it runs.
//! 3. mounts (the root's own, then the container's binds, volumes and tmpfs mounts),
//!    then pivot_root (the workload only: an exec'd process joined them).
//! 4. masked and read-only paths, inside the new root, then `--read-only` (`masks`).
//! 5. hostname (the workload only); a session with the terminal, if there is one; the
//!    signals the helper and the apiserver ignore (HUP, USR1, USR2, ALRM) back to default.
//!    5b. (issue 10) the user namespace, entered here: mounts and the hostname need the
//!    host's privileges (the namespaces they belong to are owned by the host's user
//!    namespace), and entering resets the capability sets to full, so it comes before
//!    the bounding set.
//! 6. the capability bounding set, while CAP_SETPCAP is still held, and keepcaps for
//!    the setuid that follows (`caps`).
//! 7. ids and groups: supplementary groups, gid, then uid (after setuid the others are
//!    no longer allowed).
//! 8. capabilities (inheritable and ambient empty), then no_new_privs (`caps`).
//! 9. parent-death signal (credentials clear it), working directory, every inherited
//!    descriptor close-on-exec.
//! 10. seccomp, last: nothing after it may need a filtered call (`seccomp`).
//!
//! docs/security.md gives the reasons in full.
//!
//! [`Step`]: crate::process::Step

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use libc::{MS_PRIVATE, MS_REC, MS_SLAVE};

use container_protocol::security::Confinement;
use container_protocol::volume::SandboxMount;

use crate::etc::EtcFiles;
use crate::process::{Launch, NulError, Plan};

/// Where the process goes.
pub enum Entry<'a> {
    /// The workload: the sandbox's namespaces, a new mount namespace of its own.
    Workload {
        net: &'a dyn AsFd,
        uts: &'a dyn AsFd,
        ipc: &'a dyn AsFd,
        fs: Filesystem<'a>,
    },
    /// An exec'd process: every namespace of the running workload `pid`. Its pid
    /// namespace is the helper's `pid_for_children`, set once at start.
    Join { pid: u32 },
}

/// The workload's view of the files.
pub enum Filesystem<'a> {
    /// A root filesystem (canonical path), prepared by `rootfs::prepare`.
    Rootfs {
        path: &'a Path,
        etc: &'a EtcFiles,
        mounts: &'a [SandboxMount],
    },
    /// An image's layers under the container's upper directory, mounted and prepared
    /// by `overlay::prepare` (`tree`, detached), moved into place by the child.
    Overlay {
        spec: &'a container_protocol::sandbox::OverlaySpec,
        tree: Option<&'a std::os::fd::OwnedFd>,
        etc: &'a EtcFiles,
        mounts: &'a [SandboxMount],
    },
    /// The host's own files, with the container's /proc and /etc files, and `masked`
    /// host directories (the runtime's state and sockets) under an empty tmpfs.
    Host {
        etc: &'a EtcFiles,
        masked: &'a [PathBuf],
    },
}

/// Who the process runs as, resolved before fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub home: String,
}

/// Everything a launch needs to know.
pub struct LaunchSpec<'a> {
    pub entry: Entry<'a>,
    pub args: &'a [String],
    /// Environment layers, later ones overriding earlier ones (see `environment`).
    pub env: &'a [&'a [String]],
    pub cwd: Option<&'a str>,
    pub hostname: &'a str,
    pub user: &'a Credentials,
    /// The process's stdin is a pty slave, to become its controlling terminal.
    pub tty: bool,
    /// Capabilities, no_new_privs, seccomp and masked paths: the workload's and every
    /// exec's alike.
    pub confinement: &'a Confinement,
    /// cgroup, rlimits, devices, user namespace (issue 10; `resources.rs`).
    pub resources: &'a crate::resources::Launch,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Nul(#[from] NulError),
    #[error("{0}")]
    Other(String),
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::BadProgram),
}

/// The plan for `spec`, in the order of the module comment.
pub fn build(spec: &LaunchSpec<'_>) -> Result<Plan, PlanError> {
    let mut plan = Plan::new();
    // 1. Namespaces.
    let fs = match &spec.entry {
        Entry::Workload { net, uts, ipc, fs } => {
            for (what, fd, flag) in [
                ("network", net, libc::CLONE_NEWNET),
                ("uts", uts, libc::CLONE_NEWUTS),
                ("ipc", ipc, libc::CLONE_NEWIPC),
            ] {
                plan.setns(format!("join {what} namespace"), fd, flag)
                    .map_err(|source| PlanError::Io {
                        step: format!("duplicate {what} namespace descriptor"),
                        source,
                    })?;
            }
            plan.unshare("unshare mount namespace", libc::CLONE_NEWNS);
            // A bind that receives the host's mounts (`bind-propagation=rslave`) needs
            // `/` a slave rather than private: a private copy has no peers left.
            let from_host = match fs {
                Filesystem::Rootfs { mounts, .. } | Filesystem::Overlay { mounts, .. } => {
                    crate::mounts::needs_host_propagation(mounts)
                }
                Filesystem::Host { .. } => false,
            };
            let flags = if from_host { MS_SLAVE } else { MS_PRIVATE };
            plan.mount(None, Path::new("/"), None, MS_REC | flags, None)?;
            Some(fs)
        }
        Entry::Join { pid } => {
            join_workload(&mut plan, *pid)?;
            None
        }
    };
    // 2. Confinement (issue 10): user-namespace handshake, rlimits, cgroup.
    // (The user namespace was made with its maps when the helper started: see
    // `userns.rs`. It is entered after step 5.)
    crate::resources::plan_limits(&mut plan, spec.resources)?;

    // 3. Mounts and pivot_root.
    match fs {
        Some(Filesystem::Rootfs { path, etc, mounts }) => crate::rootfs::rootfs_mounts(
            &mut plan,
            path,
            etc,
            spec.confinement,
            spec.resources.userns.as_ref(),
            mounts,
        )?,
        Some(Filesystem::Overlay {
            spec: overlay,
            tree,
            etc,
            mounts,
        }) => crate::rootfs::overlay_mounts(
            &mut plan,
            overlay,
            *tree,
            etc,
            spec.confinement,
            spec.resources.userns.as_ref(),
            mounts,
        )?,
        Some(Filesystem::Host { etc, masked }) => {
            crate::rootfs::host_mounts(&mut plan, etc, masked)?
        }
        None => {}
    }
    // 4. Confinement (issue 10): the devices granted (`--device`, `--privileged`), then
    // masked and read-only paths, inside the new root (an exec'd process joined the
    // workload's mounts, masks included).
    if matches!(fs, Some(Filesystem::Rootfs { .. })) {
        crate::resources::plan_devices(&mut plan, spec.resources)?;
    }
    let c = spec.confinement;
    if fs.is_some() {
        for path in &c.masked_paths {
            plan.mask_path(path)?;
        }
        for path in &c.readonly_paths {
            plan.readonly_path(path)?;
        }
        if c.read_only_rootfs {
            plan.readonly_root();
        }
    }

    // 5. Hostname, terminal, signals.
    if matches!(spec.entry, Entry::Workload { .. }) {
        plan.sethostname(spec.hostname)?;
    }
    if spec.tty {
        plan.controlling_tty();
    }
    // An ignored signal stays ignored across exec: the helper ignores SIGHUP, and
    // inherits the apiserver's ignored SIGUSR1, SIGUSR2 and SIGALRM. A workload whose
    // shell found USR1 ignored could not even trap it (an image's StopSignal).
    for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM] {
        plan.default_signal(sig);
    }
    // 5b. (issue 10) into the user namespace: after what needs the host's privileges,
    // before the bounding set (entering gives a full set in the new namespace).
    crate::resources::plan_userns(&mut plan, spec.resources)?;
    // 6. Confinement (issue 10): capability bounding set.
    plan.bounding_set(c.capabilities);

    // 7. Ids and groups.
    plan.credentials(spec.user.uid, spec.user.gid, &spec.user.groups);
    // 8. Confinement (issue 10): capabilities, no_new_privs.
    plan.capabilities(c.capabilities, c.seccomp.is_some() && !c.no_new_privileges);
    if c.no_new_privileges {
        plan.no_new_privs();
    }

    // 9. What the exec'd program finds.
    plan.parent_death_signal(libc::SIGKILL);
    plan.chdir(Path::new(spec.cwd.unwrap_or("/")))?;
    plan.cloexec_all();
    // 10. Confinement (issue 10): seccomp.
    if let Some(program) = &c.seccomp {
        plan.seccomp(program)?;
    }
    Ok(plan)
}

/// The running workload's namespaces, by `/proc/<pid>/ns`, the mount namespace last.
fn join_workload(plan: &mut Plan, pid: u32) -> Result<(), PlanError> {
    for (kind, flag) in [
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{kind}");
        let io = |source| PlanError::Io {
            step: format!("open {path}"),
            source,
        };
        let fd: OwnedFd = std::fs::File::open(&path).map_err(io)?.into();
        plan.setns(format!("join {kind} namespace of pid {pid}"), &fd, flag)
            .map_err(io)?;
    }
    Ok(())
}

/// The whole launch: the plan, the program and its environment, and its stdio.
pub fn launch(spec: &LaunchSpec<'_>, stdio: crate::launch::Wiring) -> Result<Launch, PlanError> {
    Ok(Launch {
        args: spec.args.to_vec(),
        env: crate::launch::environment(spec.env, spec.hostname, spec.user, spec.tty),
        stdin: stdio.stdin,
        stdout: stdio.stdout,
        stderr: stdio.stderr,
        plan: build(spec)?,
    })
}

#[cfg(test)]
mod tests;
