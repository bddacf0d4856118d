//! Network namespaces as file descriptors.
//!
//! Namespaces are per thread. Nothing here ever moves the calling thread for longer than
//! a closure passed to [`with_netns`]: a tokio worker left in a container's namespace
//! would silently create host resources in the wrong place.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{fstat, Mode};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::error::{Error, Result};

/// The calling thread's own namespace; `/proc/self` would name the main thread's.
const THREAD_NET_NS: &str = "/proc/thread-self/ns/net";

/// A handle on a network namespace, kept alive by an open file descriptor.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    label: String,
}

impl NetNs {
    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs> {
        Self::open_labeled(Path::new(THREAD_NET_NS), "netns of current thread".into())
    }

    /// Opens a namespace file: a bind mount made by [`NetNs::create_bound`] or
    /// `ip netns add`, or `/proc/<pid>/ns/net`.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        Self::open_labeled(path, format!("netns {}", path.display()))
    }

    /// The namespace of a running process.
    pub fn of_pid(pid: u32) -> Result<NetNs> {
        Self::open_labeled(
            &PathBuf::from(format!("/proc/{pid}/ns/net")),
            format!("netns of pid {pid}"),
        )
    }

    fn open_labeled(path: &Path, label: String) -> Result<NetNs> {
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::sys(&label, "open", e))?;
        // Checked here so that passing a wrong file fails with a clear message instead
        // of an EINVAL from setns or from the kernel deep inside a link request.
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor.
        let kind = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
        if kind < 0 {
            let err = Errno::last();
            if err == Errno::ENOTTY {
                return Err(Error::invalid(label, "not a namespace file"));
            }
            return Err(Error::sys(label, "query namespace type", err));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(Error::invalid(label, "not a network namespace"));
        }
        Ok(NetNs { fd, label })
    }

    /// Creates a new network namespace kept alive by this handle alone, without moving
    /// the calling thread: a short-lived thread unshares, opens its namespace and
    /// exits. It goes when the last descriptor and process in it go; no mount names it
    /// (a mount would be copied into every mount namespace made after it).
    pub fn create() -> Result<NetNs> {
        let label = "new netns".to_string();
        std::thread::Builder::new()
            .name("netns-create".into())
            .spawn(|| -> Result<NetNs> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys("new netns", "unshare(CLONE_NEWNET)", e))?;
                NetNs::open_labeled(Path::new(THREAD_NET_NS), "new netns".into())
            })
            .map_err(|e| Error::os(&label, "spawn namespace thread", e))?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::os(
                    &label,
                    "namespace thread",
                    io::Error::other("thread panicked"),
                ))
            })
    }

    /// Creates a new network namespace kept alive by a bind mount on `path` (which
    /// outlives this process), without moving the calling thread. Parent directories
    /// are created. The mount lands in the calling thread's mount namespace.
    pub fn create_bound(path: impl AsRef<Path>) -> Result<NetNs> {
        let ns = NetNs::create()?;
        ns.bind(path)
    }

    /// Binds this namespace onto `path`, which then keeps it alive whatever becomes of
    /// this process, and returns a handle opened by that path (errors name it).
    /// Parent directories are created. On failure nothing is left at `path`.
    pub fn bind(&self, path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref().to_path_buf();
        let label = format!("netns {}", path.display());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::os(&label, "create parent directory", e))?;
        }
        // Not O_EXCL: an empty file left by a crash between create and mount must not
        // block a retry. A file that is already a namespace mount is refused instead.
        let file = open(
            &path,
            OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(&label, "create mount point", e))?;
        let fs_type = fstatfs(&file)
            .map_err(|e| Error::sys(&label, "statfs mount point", e))?
            .filesystem_type();
        drop(file);
        if fs_type == NSFS_MAGIC {
            return Err(Error::os(
                label,
                "create",
                io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
        // The descriptor's magic link names the namespace itself, as
        // `/proc/<pid>/ns/net` would name a process's.
        let source = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let bound = mount(
            Some(source.as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(&label, "bind mount", e));
        if let Err(err) = bound {
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        NetNs::open(&path).inspect_err(|_| {
            let _ = NetNs::remove_bound(&path);
        })
    }

    /// Unmounts and removes a namespace bind mount. Absent paths and plain files are
    /// fine, so cleanup can run again after a partial failure. The namespace itself
    /// lives on while any process or descriptor still holds it.
    pub fn remove_bound(path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let label = format!("netns {}", path.display());
        // A path bound more than once (a racing create) has stacked mounts; peel all.
        for _ in 0..16 {
            match umount2(path, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(Errno::EINVAL | Errno::ENOENT) => break,
                Err(e) => return Err(Error::sys(label, "unmount", e)),
            }
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::os(label, "remove mount point", e)),
        }
    }

    /// `(st_dev, st_ino)` of the namespace: equal for two handles on the same namespace.
    pub fn id(&self) -> Result<(u64, u64)> {
        let st = fstat(&self.fd).map_err(|e| Error::sys(&self.label, "stat", e))?;
        Ok((st.st_dev, st.st_ino))
    }

    pub fn try_clone(&self) -> Result<NetNs> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::os(&self.label, "duplicate descriptor", e))?;
        Ok(NetNs {
            fd,
            label: self.label.clone(),
        })
    }

    /// How errors name this namespace, e.g. `netns /run/container/netns/abc`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Runs `f` with the calling thread switched into `ns`, then switches back, also when
/// `f` fails or panics. `f` must not await or hand work to other threads: only this
/// thread is moved.
///
/// If switching back fails after `f` returned, the error is returned and the thread is
/// left in `ns`. If it fails while unwinding from a panic, the process aborts, since
/// nothing could report it and the thread would go on in the wrong namespace.
pub fn with_netns<T>(ns: &NetNs, f: impl FnOnce() -> T) -> Result<T> {
    let home = NetNs::current()?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys(ns.label(), "enter", e))?;
    let guard = Restore { home: Some(home) };
    let out = f();
    guard.restore()?;
    Ok(out)
}

struct Restore {
    home: Option<NetNs>,
}

impl Restore {
    fn restore(mut self) -> Result<()> {
        match self.home.take() {
            Some(home) => setns(&home, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys("netns of current thread", "switch back", e)),
            None => Ok(()),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            if setns(&home, CloneFlags::CLONE_NEWNET).is_err() {
                std::process::abort();
            }
        }
    }
}
