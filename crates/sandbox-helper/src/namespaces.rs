//! The container's namespaces, made when the helper starts, before its runtime exists.
//!
//! * net: a new namespace, held by the helper's descriptor alone unless the apiserver
//!   asks for it bound (`--netns-bound`, the default for a helper started by hand):
//!   then it is also bind-mounted at `<run>/netns/<id>`, in the helper's own mount
//!   namespace (the host's), so CNI plugins and `ip netns` can open it by path, and a
//!   helper that dies leaves it for the clean-up (netDevices go back to the host's
//!   namespace from there, not to the initial one). A held one is named
//!   `/proc/<helper>/fd/<n>` while the helper lives and is bound later if a CNI
//!   network is connected. Why not always bound: every mount in the host's namespace
//!   is copied by each `unshare(CLONE_NEWNS)` after it (every workload's start), and
//!   walked again at its `pivot_root`, so a start's cost grew with the containers.
//! * uts, ipc: made by a brief `unshare` of the main thread, which then goes back to
//!   the host's; the helper keeps them by descriptor. Making them here rather than in
//!   the workload's child means they exist from the start, like the netns, and the
//!   workload and every exec join the same ones by the same path (`setns`).
//! * pid: `unshare(CLONE_NEWPID)` changes only where the helper's *children* go: the
//!   first (the workload) is PID 1 of a new pid namespace, later ones (exec) join it.
//!   It is done while the process has a single thread, because it is per thread and
//!   threads made afterwards (tokio's blocking pool) inherit it: any thread that forks
//!   then forks into the container.
//! * mount: made by the workload's child itself (`unshare(CLONE_NEWNS)`); the helper
//!   stays in the host's mount namespace so the netns mount stays visible.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use container_netlink::NetNs;
use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("container {id}: namespaces: {step}: {source}")]
    Sys {
        id: String,
        step: &'static str,
        source: nix::Error,
    },
    #[error("container {id}: namespaces: {step}: {source}")]
    Io {
        id: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("container {id}: namespaces: {source}")]
    Netns {
        id: String,
        source: container_netlink::Error,
    },
}

/// The namespaces one container lives in, held by descriptors.
#[derive(Debug)]
pub struct Namespaces {
    /// `<run>/netns/<id>`: where the netns is bound, or would be.
    mount_path: PathBuf,
    bound: bool,
    pub net: NetNs,
    pub uts: OwnedFd,
    pub ipc: OwnedFd,
    /// The namespace the helper itself lives in (host side of every interface).
    pub host_net: NetNs,
}

fn thread_ns(kind: &str) -> std::io::Result<OwnedFd> {
    // std opens with O_CLOEXEC: no workload inherits these.
    File::open(format!("/proc/thread-self/ns/{kind}")).map(OwnedFd::from)
}

impl Namespaces {
    /// Creates the namespaces of container `id`. Call it before any thread exists (see
    /// the module comment). A stale netns mount at the path, left by a helper that died,
    /// is replaced; the caller has checked that no live helper owns `id`.
    /// `netns_path`: where the store says the container's netns is bind-mounted, if
    /// `bound`.
    pub fn prepare(netns_path: &Path, id: &str, bound: bool) -> Result<Namespaces, NsError> {
        let sys = |step| {
            let id = id.to_string();
            move |source| NsError::Sys { id, step, source }
        };
        let io = |step| {
            let id = id.to_string();
            move |source| NsError::Io { id, step, source }
        };
        let netns_err = |source| NsError::Netns {
            id: id.to_string(),
            source,
        };
        let host_net = NetNs::current().map_err(netns_err)?;
        let netns_path = netns_path.to_path_buf();
        if is_nsfs(&netns_path) {
            tracing::warn!(
                "container {id}: removing stale netns mount {}",
                netns_path.display()
            );
            NetNs::remove_bound(&netns_path).map_err(netns_err)?;
        }
        let net = if bound {
            NetNs::create_bound(&netns_path)
        } else {
            NetNs::create()
        }
        .map_err(netns_err)?;
        let rest = (|| {
            let host_uts = thread_ns("uts").map_err(io("open host uts namespace"))?;
            let host_ipc = thread_ns("ipc").map_err(io("open host ipc namespace"))?;
            unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
                .map_err(sys("unshare(uts|ipc)"))?;
            let made = thread_ns("uts").and_then(|u| Ok((u, thread_ns("ipc")?)));
            // Back home before anything else: the helper must not live in them.
            setns(host_uts.as_fd(), CloneFlags::CLONE_NEWUTS)
                .map_err(sys("return to host uts namespace"))?;
            setns(host_ipc.as_fd(), CloneFlags::CLONE_NEWIPC)
                .map_err(sys("return to host ipc namespace"))?;
            let (uts, ipc) = made.map_err(io("open new uts/ipc namespaces"))?;
            unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare(pid)"))?;
            Ok((uts, ipc))
        })();
        match rest {
            Ok((uts, ipc)) => Ok(Namespaces {
                mount_path: netns_path,
                bound,
                net,
                uts,
                ipc,
                host_net,
            }),
            Err(e) => {
                if bound {
                    let _ = NetNs::remove_bound(&netns_path);
                }
                Err(e)
            }
        }
    }

    /// How others open the netns: its mount, or this helper's descriptor (valid while
    /// the helper lives).
    pub fn netns_path(&self) -> String {
        if self.bound {
            self.mount_path.display().to_string()
        } else {
            format!("/proc/{}/fd/{}", std::process::id(), self.net.as_raw_fd())
        }
    }

    /// Binds the netns at its mount path, if it is not yet (a CNI network connected
    /// later: its plugins, and its clean-up after a crash, need a path that stays).
    pub fn bind(&mut self) -> Result<String, container_netlink::Error> {
        if !self.bound {
            self.net = self.net.bind(&self.mount_path)?;
            self.bound = true;
        }
        Ok(self.netns_path())
    }

    /// Unmounts the netns bind mount, if any. The namespace itself goes when the last
    /// process and descriptor in it go.
    pub fn remove_netns(&self) -> Result<(), container_netlink::Error> {
        if self.bound {
            NetNs::remove_bound(&self.mount_path)
        } else {
            Ok(())
        }
    }
}

/// Takes `--netns-bound` or `--netns-held` from the helper's arguments: whether the
/// netns gets a mount (see the module comment). Bound when neither is given.
pub fn take_bound_arg(argv: &mut Vec<String>) -> bool {
    let mut bound = true;
    argv.retain(|a| match a.as_str() {
        "--netns-bound" => {
            bound = true;
            false
        }
        "--netns-held" => {
            bound = false;
            false
        }
        _ => true,
    });
    bound
}

/// Whether `path` is a namespace bind mount.
pub fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}
