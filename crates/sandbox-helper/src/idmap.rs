//! Idmapped mounts for `--userns=auto` (issues 10 and 12): the container's files seen
//! through its id mapping, so that what is 0 on disk is its root and what its root
//! writes is 0 on disk, without a chown of anything.
//!
//! Every one is made the same way: a detached clone of the source's mount tree
//! (`open_tree(OPEN_TREE_CLONE)`), marked idmapped through the container's user
//! namespace (`mount_setattr(MOUNT_ATTR_IDMAP)`) while no process can reach it, then
//! attached where it goes (`move_mount`). The root filesystem and the binds and volumes
//! of a rootfs container are such clones; an image's overlay is assembled from them
//! (see [`IdmappedOverlay`]). The functions that run in the workload's child make raw
//! system calls only (the child may not allocate).
//!
//! The plain detached-mount calls (`clone_tree`, `move_tree`) live here too: an image's
//! overlay, prepared before fork, reaches the child the same way, only not idmapped.
//!
//! [`check`] is the same call made by the apiserver before it creates a container, so
//! a source whose filesystem the kernel cannot idmap (procfs, sysfs, tmpfs before
//! Linux 6.3, a FUSE filesystem that does not opt in) is refused by name up front.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libc::{c_int, c_uint};
use nix::errno::Errno;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const OPEN_TREE_CLONE: c_uint = 1;
const AT_RECURSIVE: c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_SET_FLAG: c_uint = 0;
const FSCONFIG_SET_FD: c_uint = 5;
const FSCONFIG_CMD_CREATE: c_uint = 6;

/// Closes `fd` keeping errno as it was.
unsafe fn close_quietly(fd: c_int) {
    if fd >= 0 {
        let errno = Errno::last_raw();
        libc::close(fd);
        *libc::__errno_location() = errno;
    }
}

/// A detached clone of the mount at `path` (under `dirfd`; with `recursive`, its
/// submounts too), idmapped through `userns`: its descriptor, or -1 and errno.
unsafe fn clone_idmapped(dirfd: c_int, path: &CStr, recursive: bool, userns: RawFd) -> c_int {
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    let tree = libc::syscall(
        libc::SYS_open_tree,
        dirfd,
        path.as_ptr(),
        OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint | rec,
    ) as c_int;
    if tree < 0 {
        return -1;
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    let rc = libc::syscall(
        libc::SYS_mount_setattr,
        tree,
        c"".as_ptr(),
        libc::AT_EMPTY_PATH as c_uint | rec,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    );
    if rc < 0 {
        close_quietly(tree);
        return -1;
    }
    tree
}

/// A detached clone of the mount at `path` alone (not its submounts, and not
/// idmapped), close-on-exec: a descriptor that keeps the mount's superblock alive once
/// the mount itself is gone (an image's prepared overlay: see `overlay::prepare`).
pub(crate) fn clone_tree(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_tree(2) with a valid path; the descriptor it returns is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// Attaches the detached tree `tree` onto `target` (under `dirfd`; with
/// `MOVE_MOUNT_T_EMPTY_PATH`, onto what `dirfd` is), leaving the descriptor open.
pub(crate) unsafe fn move_tree(tree: c_int, dirfd: c_int, target: &CStr, flags: c_uint) -> c_int {
    libc::syscall(
        libc::SYS_move_mount,
        tree,
        c"".as_ptr(),
        dirfd,
        target.as_ptr(),
        MOVE_MOUNT_F_EMPTY_PATH | flags,
    ) as c_int
}

/// [`move_tree`], then closes `tree`.
unsafe fn attach(tree: c_int, dirfd: c_int, target: &CStr, flags: c_uint) -> c_int {
    let rc = move_tree(tree, dirfd, target, flags);
    close_quietly(tree);
    rc
}

/// The mount at `path` replaced by an idmapped clone of itself and its submounts (the
/// root filesystem of a rootfs container). Runs in the child.
pub(crate) unsafe fn bind_onto_itself(path: &CStr, userns: RawFd) -> c_int {
    let tree = clone_idmapped(libc::AT_FDCWD, path, true, userns);
    if tree < 0 {
        return -1;
    }
    attach(tree, libc::AT_FDCWD, path, 0)
}

/// An idmapped recursive bind of `source` (a host path the apiserver checked, looked up
/// as a bind's source is) onto `target`, an `O_PATH` descriptor of the target looked up
/// inside the root. Runs in the child.
pub(crate) unsafe fn bind_at(source: &CStr, target: RawFd, userns: RawFd) -> c_int {
    let tree = clone_idmapped(libc::AT_FDCWD, source, true, userns);
    if tree < 0 {
        return -1;
    }
    attach(tree, target, c"", MOVE_MOUNT_T_EMPTY_PATH)
}

/// An image's overlay for a container with its own user namespace, mounted by the
/// workload's child. overlayfs is not idmappable itself, but its layers may be idmapped
/// mounts (Linux 5.19), given by descriptor (`lowerdir+`, `upperdir`, `workdir` with
/// `FSCONFIG_SET_FD`, Linux 6.13): one idmapped clone of the store's layer directory
/// holds every lower layer, one of the container's directory its upper and work
/// directories (overlayfs wants those two on one mount). On disk the upper directory
/// then keeps the container's ids as the image's layers do: a file the container's
/// root writes is 0 there, whatever range the container runs under next time.
///
/// overlayfs makes its work directories and copies files up with the credentials of
/// whoever created it; the host's root is no id of the idmapped mounts (it would get
/// EOVERFLOW and a read-only overlay), so the child creates it with its filesystem ids
/// set to the container's root (`owner`, a host id), its capabilities kept, and sets
/// them back after.
#[derive(Debug)]
pub struct IdmappedOverlay {
    /// The store's layer directory.
    pub layers: CString,
    /// `<chain>/diff` under it, top layer first.
    pub lower: Vec<CString>,
    /// The container's directory holding `upper` and `work`.
    pub dir: CString,
    pub upper: CString,
    pub work: CString,
    /// Where the overlay goes.
    pub target: CString,
    pub userns: OwnedFd,
    /// The container's root as a host id.
    pub owner: u32,
}

impl IdmappedOverlay {
    /// Runs in the child: raw system calls only.
    pub(crate) unsafe fn mount(&self) -> c_int {
        // The layers' tree, the container directory's tree, the context, the overlay.
        let mut fds: [c_int; 4] = [-1; 4];
        let rc = self.mount_with(&mut fds);
        for fd in fds {
            close_quietly(fd);
        }
        rc
    }

    unsafe fn mount_with(&self, fds: &mut [c_int; 4]) -> c_int {
        let ns = self.userns.as_raw_fd();
        fds[0] = clone_idmapped(libc::AT_FDCWD, &self.layers, false, ns);
        if fds[0] < 0 {
            return -1;
        }
        fds[1] = clone_idmapped(libc::AT_FDCWD, &self.dir, false, ns);
        if fds[1] < 0 {
            return -1;
        }
        let mut caps = [crate::caps::CapData::default(); 2];
        if crate::caps::capget(&mut caps) < 0 {
            return -1;
        }
        // Changing the filesystem uid away from 0 drops the filesystem capabilities
        // from the effective set: they are raised again from the permitted set.
        libc::setfsgid(self.owner);
        libc::setfsuid(self.owner);
        let mut raised = caps;
        for c in raised.iter_mut() {
            c.effective = c.permitted;
        }
        let mut rc = crate::caps::capset(&raised);
        if rc == 0 {
            rc = self.create(fds);
        }
        let errno = Errno::last_raw();
        // Back to 0: the kernel raises the filesystem capabilities again; the rest of
        // the effective set is put back as it was.
        libc::setfsuid(0);
        libc::setfsgid(0);
        crate::caps::capset(&caps);
        *libc::__errno_location() = errno;
        if rc < 0 {
            return -1;
        }
        let mount = std::mem::replace(&mut fds[3], -1);
        attach(mount, libc::AT_FDCWD, &self.target, 0)
    }

    /// fsopen, the layers by descriptor, userxattr, create, fsmount into `fds[3]`.
    unsafe fn create(&self, fds: &mut [c_int; 4]) -> c_int {
        fds[2] = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) as c_int;
        if fds[2] < 0 {
            return -1;
        }
        let ctx = fds[2];
        let layer = |tree: c_int, name: &CStr, key: &CStr| -> c_int {
            let fd = libc::openat(
                tree,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return -1;
            }
            let rc = libc::syscall(
                libc::SYS_fsconfig,
                ctx,
                FSCONFIG_SET_FD,
                key.as_ptr(),
                std::ptr::null::<libc::c_void>(),
                fd,
            ) as c_int;
            close_quietly(fd);
            rc
        };
        for name in &self.lower {
            if layer(fds[0], name, c"lowerdir+") < 0 {
                return -1;
            }
        }
        if layer(fds[1], &self.upper, c"upperdir") < 0 || layer(fds[1], &self.work, c"workdir") < 0
        {
            return -1;
        }
        for (cmd, key) in [
            (FSCONFIG_SET_FLAG, c"userxattr".as_ptr()),
            (FSCONFIG_CMD_CREATE, std::ptr::null()),
        ] {
            let rc = libc::syscall(
                libc::SYS_fsconfig,
                ctx,
                cmd,
                key,
                std::ptr::null::<libc::c_void>(),
                0,
            );
            if rc < 0 {
                return -1;
            }
        }
        fds[3] = libc::syscall(libc::SYS_fsmount, ctx, FSMOUNT_CLOEXEC, 0) as c_int;
        if fds[3] < 0 {
            -1
        } else {
            0
        }
    }
}

/// Why a path cannot be idmapped.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("{path}: {what} (--userns=auto maps every mount through the container's ids)")]
    Unsupported { path: String, what: String },
    #[error("{path}: {step}: {errno}", errno = errno.desc())]
    Sys {
        path: String,
        step: &'static str,
        errno: Errno,
    },
    #[error("a user namespace to test idmapping with: {0}")]
    Namespace(String),
}

/// A user namespace of the calling process's own, made once, to try idmapping with.
fn probe_namespace() -> Result<RawFd, IdmapError> {
    static NS: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    NS.get_or_init(|| {
        // One id is enough: nothing is ever reached through the probe's mounts.
        let range = container_protocol::resources::IdRange {
            start: 65_534,
            size: 1,
        };
        crate::userns::create(range).map_err(|e| e.to_string())
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
    .map_err(|e| IdmapError::Namespace(e.clone()))
}

/// Whether `path`'s mount tree (with everything mounted below it) can be idmapped: the
/// same calls the sandbox makes, on a clone that is dropped at once. Changes nothing.
pub fn check(path: &Path) -> Result<(), IdmapError> {
    let shown = path.display().to_string();
    let ns = probe_namespace()?;
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| IdmapError::Sys {
        path: shown.clone(),
        step: "path",
        errno: Errno::EINVAL,
    })?;
    let attempt = |recursive: bool| -> Result<(), Errno> {
        // SAFETY: a clone of our own, closed here.
        let fd = unsafe { clone_idmapped(libc::AT_FDCWD, &c, recursive, ns) };
        if fd < 0 {
            return Err(Errno::last());
        }
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    };
    match attempt(true) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(IdmapError::Unsupported {
            path: shown,
            what: unsupported(path, attempt(false).is_ok(), ns),
        }),
        Err(errno) => Err(IdmapError::Sys {
            path: shown,
            step: "idmap a clone of its mount",
            errno,
        }),
    }
}

/// Names what the kernel refused: the path's own filesystem, or (when that one is fine)
/// the first mount below it that cannot be idmapped.
fn unsupported(path: &Path, top_ok: bool, ns: RawFd) -> String {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = mountinfo();
    if !top_ok {
        let fstype = mounts
            .iter()
            .filter(|(p, _)| canon.starts_with(p))
            .max_by_key(|(p, _)| p.as_os_str().len())
            .map(|(_, t)| t.as_str())
            .unwrap_or("unknown");
        return format!("its filesystem ({fstype}) cannot be idmapped by this kernel");
    }
    for (p, fstype) in mounts
        .iter()
        .filter(|(p, _)| p != &canon && p.starts_with(&canon))
    {
        let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: as in `check`.
        let fd = unsafe { clone_idmapped(libc::AT_FDCWD, &c, false, ns) };
        if fd < 0 {
            return format!(
                "{} mounted below it ({fstype}) cannot be idmapped by this kernel",
                p.display()
            );
        }
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    "a mount below it cannot be idmapped by this kernel".to_string()
}

/// This thread's mounts: mount point and filesystem type.
fn mountinfo() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let d = |k: usize| u32::from(b[i + k] - b'0');
            out.push((d(1) * 64 + d(2) * 8 + d(3)) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}
