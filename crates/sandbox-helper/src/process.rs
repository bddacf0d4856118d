//! Starting a process inside the container.
//!
//! Everything the child does between fork and exec is prepared in the parent as a list
//! of [`Step`]s with their strings already converted to C strings: the helper's runtime
//! may have other threads, so the child must not allocate, lock or log. The child runs
//! the steps with raw system calls; when one fails it writes the step's index and the
//! errno to a close-on-exec pipe, so the parent can name the step that failed. A failing
//! `exec` itself is reported by std's own close-on-exec pipe and leaves ours empty.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// A descriptor the child opens and later steps use, held in the plan's slots: an fd
/// opened before `unshare(CLONE_NEWNS)` would name the old namespace's mounts, where a
/// mount onto it fails, so targets are looked up by the child itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The root filesystem's top directory.
    Root,
    /// The container's fresh `/dev`.
    Dev,
    /// What the next mount goes onto.
    Target,
}

const SLOTS: usize = 3;

impl Slot {
    fn index(self) -> usize {
        self as usize
    }
}

/// One thing the child does before exec.
#[derive(Debug)]
pub enum Step {
    Setns {
        fd: OwnedFd,
        nstype: libc::c_int,
    },
    Unshare(libc::c_int),
    /// `mount(2)` by path: the host's own files (no rootfs), or trusted host paths.
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Opens a host directory (a path the runtime trusts) into `into`.
    OpenDir {
        path: CString,
        into: Slot,
    },
    /// Looks `path` up inside the root held in `root`, as a process rooted there would
    /// (see `container_rootfs`), and keeps an `O_PATH` descriptor in `into`.
    Resolve {
        root: Slot,
        path: CString,
        directory: bool,
        into: Slot,
    },
    /// `mount(2)` onto what `target` holds, reached as `/proc/self/fd/N`.
    MountAt {
        src: Option<CString>,
        target: Slot,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// A directory `name` in `dir`; an existing one is fine.
    MkdirAt {
        dir: Slot,
        name: CString,
    },
    /// An empty file `name` in `dir`, to mount over; never through a link. An existing
    /// one is fine.
    CreateAt {
        dir: Slot,
        name: CString,
    },
    /// A link `name` in `dir`; an existing one is fine.
    SymlinkAt {
        target: CString,
        dir: Slot,
        name: CString,
    },
    /// `fchdir` to what `slot` holds.
    Fchdir(Slot),
    Close(Slot),
    Chdir(CString),
    /// `pivot_root(".", ".")`: the old root ends up stacked under the new one at ".".
    PivotRoot,
    /// Lazily detaches the old root left at "." by `PivotRoot`.
    DetachOldRoot,
    Sethostname(CString),
    Setsid,
    /// Makes stdin (a pty slave) the controlling terminal of the new session.
    SetCtty,
    /// Supplementary groups (empty: none).
    Setgroups(Vec<libc::gid_t>),
    Setgid(libc::gid_t),
    Setuid(libc::uid_t),
    /// Restores a signal's default action: ignored signals stay ignored across exec.
    DefaultSignal(libc::c_int),
    /// Dies with the thread that forked it (the helper's main thread).
    ParentDeathSignal(libc::c_int),
    /// Marks every descriptor above stderr close-on-exec, whatever opened it.
    CloexecAll,
    /// Capabilities and no_new_privs (see `caps`).
    Caps(crate::caps::CapStep),
    /// Masked and read-only paths (see `masks`).
    Mask(crate::masks::MaskStep),
    /// Loads a seccomp filter (see `seccomp`).
    Seccomp(crate::seccomp::Filter),
    /// `setrlimit(2)` (issue 10: `--ulimit`).
    Setrlimit {
        resource: u32,
        soft: u64,
        hard: u64,
    },
    /// Writes `data` into `path` under the directory `dir` (the host's /proc, held by
    /// descriptor so that an exec'd process, already in the container's mounts, still
    /// reaches it): `oom_score_adj`, a sysctl of the container's netns.
    WriteAt {
        dir: OwnedFd,
        path: CString,
        data: CString,
    },
    /// Writes `data` into an open file: `0` into a cgroup's join file (`tasks` or `cgroup.procs`).
    WriteFd {
        fd: OwnedFd,
        data: &'static [u8],
    },
    /// Replaces the mount at `path` by an idmapped clone of itself (and of its
    /// submounts), mapped through the user namespace `userns`: files owned by 0 on disk
    /// are the container's root, without a chowned copy (mount_setattr(2)).
    IdmapBind {
        path: CString,
        userns: OwnedFd,
    },
    /// Attaches the detached mount `tree` (open_tree(2)'s, made before fork) at `path`.
    MoveMount {
        tree: OwnedFd,
        path: CString,
    },
    /// An idmapped recursive bind of `source` onto what `target` holds (a bind or a
    /// volume under `--userns=auto`; see `idmap`).
    IdmapBindAt {
        source: CString,
        target: Slot,
        userns: OwnedFd,
    },
    /// An image's overlay from idmapped layers (see `idmap::IdmappedOverlay`).
    IdmapOverlay(crate::idmap::IdmappedOverlay),
    /// A directory at `path` (after pivot_root: inside the root); an existing one is
    /// fine.
    Mkdir(CString),
    /// A device node at `path`, owned by `uid:gid`; an existing file there is replaced.
    Mknod {
        path: CString,
        mode: libc::mode_t,
        dev: libc::dev_t,
        uid: libc::uid_t,
        gid: libc::gid_t,
    },
}

/// An existing object is fine for the steps that create one.
fn exists_ok(rc: libc::c_int) -> libc::c_int {
    if rc < 0 && Errno::last_raw() == libc::EEXIST {
        0
    } else {
        rc
    }
}

/// Stores a new descriptor in its slot, closing what was there.
fn keep(slots: &mut [RawFd; SLOTS], slot: Slot, fd: RawFd) {
    let old = std::mem::replace(&mut slots[slot.index()], fd);
    if old >= 0 {
        // SAFETY: the slot owned that descriptor.
        unsafe { libc::close(old) };
    }
}

impl Step {
    /// Runs in the child: raw system calls only.
    fn apply(&self, slots: &mut [RawFd; SLOTS]) -> Result<(), i32> {
        // SAFETY: every pointer comes from a CString owned by the plan, which outlives
        // the call; descriptors are owned by the plan or its slots.
        let rc = unsafe {
            match self {
                Step::Setns { fd, nstype } => libc::setns(fd.as_raw_fd(), *nstype),
                Step::Unshare(flags) => libc::unshare(*flags),
                Step::Mount {
                    src,
                    target,
                    fstype,
                    flags,
                    data,
                } => libc::mount(
                    opt_ptr(src),
                    target.as_ptr(),
                    opt_ptr(fstype),
                    *flags,
                    opt_ptr(data).cast(),
                ),
                Step::OpenDir { path, into } => {
                    let rc = libc::open(
                        path.as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    );
                    if rc >= 0 {
                        keep(slots, *into, rc);
                        0
                    } else {
                        rc
                    }
                }
                Step::Resolve {
                    root,
                    path,
                    directory,
                    into,
                } => {
                    let flags = libc::O_PATH | if *directory { libc::O_DIRECTORY } else { 0 };
                    match container_rootfs::raw::open_in_root(slots[root.index()], path, flags) {
                        Ok(new) => {
                            keep(slots, *into, new);
                            0
                        }
                        Err(errno) => {
                            *libc::__errno_location() = errno;
                            -1
                        }
                    }
                }
                Step::MountAt {
                    src,
                    target,
                    fstype,
                    flags,
                    data,
                } => {
                    let mut buf = [0u8; 32];
                    let target = container_rootfs::raw::fd_path(slots[target.index()], &mut buf);
                    libc::mount(
                        opt_ptr(src),
                        target.as_ptr(),
                        opt_ptr(fstype),
                        *flags,
                        opt_ptr(data).cast(),
                    )
                }
                Step::MkdirAt { dir, name } => {
                    exists_ok(libc::mkdirat(slots[dir.index()], name.as_ptr(), 0o755))
                }
                Step::CreateAt { dir, name } => {
                    let rc = libc::openat(
                        slots[dir.index()],
                        name.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o644,
                    );
                    if rc >= 0 {
                        libc::close(rc);
                        0
                    } else {
                        exists_ok(rc)
                    }
                }
                Step::SymlinkAt { target, dir, name } => exists_ok(libc::symlinkat(
                    target.as_ptr(),
                    slots[dir.index()],
                    name.as_ptr(),
                )),
                Step::Fchdir(slot) => libc::fchdir(slots[slot.index()]),
                Step::Close(slot) => {
                    keep(slots, *slot, -1);
                    0
                }
                Step::Chdir(path) => libc::chdir(path.as_ptr()),
                Step::PivotRoot => {
                    let dot = c".".as_ptr();
                    libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int
                }
                Step::DetachOldRoot => libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
                Step::Sethostname(name) => libc::sethostname(name.as_ptr(), name.as_bytes().len()),
                Step::Setsid => {
                    if libc::setsid() < 0 {
                        -1
                    } else {
                        0
                    }
                }
                Step::SetCtty => libc::ioctl(0, libc::TIOCSCTTY, 0),
                Step::Setgroups(groups) => libc::setgroups(groups.len(), groups.as_ptr()),
                Step::Setgid(gid) => libc::setgid(*gid),
                Step::Setuid(uid) => libc::setuid(*uid),
                Step::DefaultSignal(sig) => {
                    if libc::signal(*sig, libc::SIG_DFL) == libc::SIG_ERR {
                        -1
                    } else {
                        0
                    }
                }
                Step::ParentDeathSignal(sig) => {
                    libc::prctl(libc::PR_SET_PDEATHSIG, *sig as libc::c_ulong, 0, 0, 0)
                }
                Step::CloexecAll => {
                    let rc = libc::syscall(
                        libc::SYS_close_range,
                        3u32,
                        u32::MAX,
                        libc::CLOSE_RANGE_CLOEXEC,
                    );
                    if rc < 0 {
                        // Before Linux 5.11: flag what a helper can plausibly hold.
                        for fd in 3..4096 {
                            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        }
                    }
                    0
                }
                Step::Caps(step) => step.apply(),
                Step::Mask(step) => step.apply(),
                Step::Seccomp(filter) => filter.apply(),
                Step::Setrlimit {
                    resource,
                    soft,
                    hard,
                } => {
                    let limit = libc::rlimit {
                        rlim_cur: *soft,
                        rlim_max: *hard,
                    };
                    libc::setrlimit(*resource as _, &limit)
                }
                Step::WriteAt { dir, path, data } => {
                    let fd = libc::openat(
                        dir.as_raw_fd(),
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CLOEXEC,
                    );
                    if fd < 0 {
                        -1
                    } else {
                        let bytes = data.as_bytes();
                        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                        let errno = Errno::last_raw();
                        libc::close(fd);
                        *libc::__errno_location() = errno;
                        if n < 0 {
                            -1
                        } else {
                            0
                        }
                    }
                }
                Step::WriteFd { fd, data } => {
                    if libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) < 0 {
                        -1
                    } else {
                        0
                    }
                }
                Step::IdmapBind { path, userns } => {
                    crate::idmap::bind_onto_itself(path, userns.as_raw_fd())
                }
                Step::IdmapBindAt {
                    source,
                    target,
                    userns,
                } => crate::idmap::bind_at(source, slots[target.index()], userns.as_raw_fd()),
                Step::IdmapOverlay(overlay) => overlay.mount(),
                Step::MoveMount { tree, path } => {
                    crate::idmap::move_tree(tree.as_raw_fd(), libc::AT_FDCWD, path, 0)
                }
                Step::Mkdir(path) => exists_ok(libc::mkdir(path.as_ptr(), 0o755)),
                Step::Mknod {
                    path,
                    mode,
                    dev,
                    uid,
                    gid,
                } => {
                    libc::unlink(path.as_ptr());
                    let mut rc = libc::mknod(path.as_ptr(), *mode, *dev);
                    if rc == 0 {
                        rc = libc::lchown(path.as_ptr(), *uid, *gid);
                    }
                    rc
                }
            }
        };
        if rc < 0 {
            Err(Errno::last_raw())
        } else {
            Ok(())
        }
    }
}

fn opt_ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// A string that cannot cross into C (it holds a NUL byte).
#[derive(Debug, thiserror::Error)]
#[error("{what} {value:?} contains a NUL byte")]
pub struct NulError {
    what: &'static str,
    value: String,
}

pub(crate) fn cstr(what: &'static str, value: &[u8]) -> Result<CString, NulError> {
    CString::new(value).map_err(|_| NulError {
        what,
        value: String::from_utf8_lossy(value).into_owned(),
    })
}

fn cpath(path: &Path) -> Result<CString, NulError> {
    cstr("path", path.as_os_str().as_bytes())
}

/// The steps a child runs between fork and exec, each with the words that name it in
/// an error.
#[derive(Debug)]
pub struct Plan {
    steps: Vec<(String, Step)>,
    /// The child's descriptors (see [`Slot`]); -1 when empty.
    slots: [RawFd; SLOTS],
}

impl Default for Plan {
    fn default() -> Plan {
        Plan::new()
    }
}

impl Plan {
    pub fn new() -> Plan {
        Plan {
            steps: Vec::new(),
            slots: [-1; SLOTS],
        }
    }

    /// The steps with their labels, in order: what a test inspects.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &Step)> {
        self.steps.iter().map(|(l, s)| (l.as_str(), s))
    }

    /// Labels of the steps, in order: what a failure would be reported as.
    pub fn labels(&self) -> Vec<&str> {
        self.steps.iter().map(|(l, _)| l.as_str()).collect()
    }

    pub(crate) fn push(&mut self, label: impl Into<String>, step: Step) -> &mut Plan {
        self.steps.push((label.into(), step));
        self
    }

    /// Joins a namespace. The descriptor is duplicated, so the plan keeps it alive until
    /// the command is dropped.
    pub fn setns(
        &mut self,
        label: impl Into<String>,
        fd: impl AsFd,
        nstype: libc::c_int,
    ) -> io::Result<&mut Plan> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        Ok(self.push(label, Step::Setns { fd, nstype }))
    }

    pub fn unshare(&mut self, label: impl Into<String>, flags: libc::c_int) -> &mut Plan {
        self.push(label, Step::Unshare(flags))
    }

    pub fn mount(
        &mut self,
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<&mut Plan, NulError> {
        let label = match (fstype, src) {
            (Some(t), _) => format!("mount {t} on {}", target.display()),
            (None, Some(s)) if flags & libc::MS_BIND != 0 => {
                format!("bind mount {} on {}", s.display(), target.display())
            }
            _ => format!("change mount {}", target.display()),
        };
        let step = Step::Mount {
            src: src.map(cpath).transpose()?,
            target: cpath(target)?,
            fstype: fstype
                .map(|t| cstr("filesystem type", t.as_bytes()))
                .transpose()?,
            flags,
            data: data
                .map(|d| cstr("mount options", d.as_bytes()))
                .transpose()?,
        };
        Ok(self.push(label, step))
    }

    /// Opens the host directory `path` (trusted: looked up normally) into `into`.
    pub fn open_dir(&mut self, path: &Path, into: Slot) -> Result<&mut Plan, NulError> {
        let label = format!("open {}", path.display());
        let path = cpath(path)?;
        Ok(self.push(label, Step::OpenDir { path, into }))
    }

    /// Looks `path` up inside the root held in `root` into `into`; `shown` is the path
    /// as the container sees it, for the label.
    pub fn resolve(
        &mut self,
        root: Slot,
        path: &str,
        directory: bool,
        into: Slot,
        shown: &str,
    ) -> Result<&mut Plan, NulError> {
        let step = Step::Resolve {
            root,
            path: cstr("path", path.as_bytes())?,
            directory,
            into,
        };
        Ok(self.push(format!("open {shown} in the root filesystem"), step))
    }

    /// Mounts onto what `target` holds; `shown` names it in the label.
    pub fn mount_at(
        &mut self,
        src: Option<&Path>,
        target: Slot,
        shown: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<&mut Plan, NulError> {
        let label = match (fstype, src) {
            (Some(t), _) => format!("mount {t} on {shown}"),
            (None, Some(s)) => format!("bind mount {} on {shown}", s.display()),
            (None, None) => format!("change mount {shown}"),
        };
        let step = Step::MountAt {
            src: src.map(cpath).transpose()?,
            target,
            fstype: fstype
                .map(|t| cstr("filesystem type", t.as_bytes()))
                .transpose()?,
            flags,
            data: data
                .map(|d| cstr("mount options", d.as_bytes()))
                .transpose()?,
        };
        Ok(self.push(label, step))
    }

    pub fn mkdir_at(&mut self, dir: Slot, name: &str, shown: &str) -> Result<&mut Plan, NulError> {
        let name = cstr("file name", name.as_bytes())?;
        Ok(self.push(
            format!("create directory {shown}"),
            Step::MkdirAt { dir, name },
        ))
    }

    pub fn create_at(&mut self, dir: Slot, name: &str, shown: &str) -> Result<&mut Plan, NulError> {
        let name = cstr("file name", name.as_bytes())?;
        Ok(self.push(format!("create {shown}"), Step::CreateAt { dir, name }))
    }

    pub fn symlink_at(
        &mut self,
        target: &str,
        dir: Slot,
        name: &str,
        shown: &str,
    ) -> Result<&mut Plan, NulError> {
        let step = Step::SymlinkAt {
            target: cstr("link target", target.as_bytes())?,
            dir,
            name: cstr("file name", name.as_bytes())?,
        };
        Ok(self.push(format!("symlink {shown} -> {target}"), step))
    }

    pub fn fchdir(&mut self, slot: Slot, shown: &str) -> &mut Plan {
        self.push(format!("chdir {shown}"), Step::Fchdir(slot))
    }

    pub fn close(&mut self, slot: Slot) -> &mut Plan {
        self.push(format!("close {slot:?}"), Step::Close(slot))
    }

    pub fn chdir(&mut self, path: &Path) -> Result<&mut Plan, NulError> {
        let label = format!("chdir {}", path.display());
        Ok(self.push(label, Step::Chdir(cpath(path)?)))
    }

    /// Pivots into the current directory and detaches the old root.
    pub fn pivot_root(&mut self, rootfs: &Path) -> &mut Plan {
        self.push(format!("pivot_root {}", rootfs.display()), Step::PivotRoot);
        self.push("detach old root", Step::DetachOldRoot)
    }

    pub fn sethostname(&mut self, name: &str) -> Result<&mut Plan, NulError> {
        let label = format!("sethostname {name:?}");
        Ok(self.push(label, Step::Sethostname(cstr("hostname", name.as_bytes())?)))
    }

    /// A new session with stdin (a pty slave) as its controlling terminal.
    pub fn controlling_tty(&mut self) -> &mut Plan {
        self.push("setsid", Step::Setsid);
        self.push("set controlling terminal", Step::SetCtty)
    }

    /// Supplementary groups, then gid, then uid (in that order: after setuid the others
    /// are no longer allowed).
    pub fn credentials(&mut self, uid: u32, gid: u32, groups: &[u32]) -> &mut Plan {
        self.push(
            format!("setgroups {groups:?}"),
            Step::Setgroups(groups.to_vec()),
        );
        self.push(format!("setgid {gid}"), Step::Setgid(gid));
        self.push(format!("setuid {uid}"), Step::Setuid(uid))
    }

    pub fn default_signal(&mut self, sig: libc::c_int) -> &mut Plan {
        self.push(format!("reset signal {sig}"), Step::DefaultSignal(sig))
    }

    /// A process outliving a killed helper would be a container nobody supervises: it
    /// gets `sig` when the helper dies. Set after the credentials, which clear it.
    pub fn parent_death_signal(&mut self, sig: libc::c_int) -> &mut Plan {
        self.push("set parent death signal", Step::ParentDeathSignal(sig))
    }

    /// Last step: nothing the helper holds reaches the workload.
    pub fn cloexec_all(&mut self) -> &mut Plan {
        self.push("mark descriptors close-on-exec", Step::CloexecAll)
    }

    /// `setrlimit` of `resource` (its name for the label).
    pub fn setrlimit(&mut self, name: &str, resource: u32, soft: u64, hard: u64) -> &mut Plan {
        let show = |v: u64| {
            if v == libc::RLIM_INFINITY {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        self.push(
            format!("setrlimit {name} {}:{}", show(soft), show(hard)),
            Step::Setrlimit {
                resource,
                soft,
                hard,
            },
        )
    }

    /// Writes `data` to `path` under `dir` (a duplicate of it is kept).
    pub fn write_at(
        &mut self,
        label: impl Into<String>,
        dir: impl AsFd,
        path: &str,
        data: &str,
    ) -> io::Result<&mut Plan> {
        let dir = dir.as_fd().try_clone_to_owned()?;
        let path = cstr("path", path.as_bytes()).map_err(io::Error::other)?;
        let data = cstr("value", data.as_bytes()).map_err(io::Error::other)?;
        Ok(self.push(label, Step::WriteAt { dir, path, data }))
    }

    /// Writes `data` into the open file `fd` (a duplicate of it is kept).
    pub fn write_fd(
        &mut self,
        label: impl Into<String>,
        fd: impl AsFd,
        data: &'static [u8],
    ) -> io::Result<&mut Plan> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        Ok(self.push(label, Step::WriteFd { fd, data }))
    }

    /// The mount at `path` becomes an idmapped clone through `userns`.
    pub fn idmap_bind(&mut self, path: &Path, userns: impl AsFd) -> io::Result<&mut Plan> {
        let userns = userns.as_fd().try_clone_to_owned()?;
        let label = format!("idmapped bind mount {}", path.display());
        let path = cpath(path).map_err(io::Error::other)?;
        Ok(self.push(label, Step::IdmapBind { path, userns }))
    }

    /// The detached mount `tree` attached at `path`.
    pub fn move_mount(&mut self, tree: impl AsFd, path: &Path) -> io::Result<&mut Plan> {
        let tree = tree.as_fd().try_clone_to_owned()?;
        let label = format!("move mount onto {}", path.display());
        let path = cpath(path).map_err(io::Error::other)?;
        Ok(self.push(label, Step::MoveMount { tree, path }))
    }

    /// An idmapped bind of `source` onto what `target` holds; `shown` names the target.
    pub fn idmap_bind_at(
        &mut self,
        source: &Path,
        target: Slot,
        shown: &str,
        userns: impl AsFd,
    ) -> io::Result<&mut Plan> {
        let userns = userns.as_fd().try_clone_to_owned()?;
        let label = format!(
            "idmapped bind mount {} on {shown} (--userns=auto)",
            source.display()
        );
        let source = cpath(source).map_err(io::Error::other)?;
        Ok(self.push(
            label,
            Step::IdmapBindAt {
                source,
                target,
                userns,
            },
        ))
    }

    /// An image's overlay from idmapped layers, mounted on `overlay.target`.
    pub fn idmap_overlay(&mut self, overlay: crate::idmap::IdmappedOverlay) -> &mut Plan {
        let label = format!(
            "mount the image's overlay from idmapped layers on {}",
            overlay.target.to_string_lossy()
        );
        self.push(label, Step::IdmapOverlay(overlay))
    }

    pub fn mkdir(&mut self, path: &Path) -> Result<&mut Plan, NulError> {
        let label = format!("create directory {}", path.display());
        Ok(self.push(label, Step::Mkdir(cpath(path)?)))
    }

    pub fn mknod(
        &mut self,
        path: &Path,
        mode: libc::mode_t,
        dev: libc::dev_t,
        owner: (u32, u32),
    ) -> Result<&mut Plan, NulError> {
        let label = format!(
            "mknod {} {}:{}",
            path.display(),
            libc::major(dev),
            libc::minor(dev)
        );
        let step = Step::Mknod {
            path: cpath(path)?,
            mode,
            dev,
            uid: owner.0,
            gid: owner.1,
        };
        Ok(self.push(label, step))
    }

    /// Runs in the child. On failure, reports `(index, errno)` on `report`.
    fn run(&mut self, report: RawFd) -> io::Result<()> {
        for (i, (_, step)) in self.steps.iter().enumerate() {
            if let Err(errno) = step.apply(&mut self.slots) {
                let mut buf = [0u8; 8];
                buf[..4].copy_from_slice(&(i as u32).to_ne_bytes());
                buf[4..].copy_from_slice(&errno.to_ne_bytes());
                // SAFETY: writing a stack buffer to a descriptor we own.
                unsafe { libc::write(report, buf.as_ptr().cast(), buf.len()) };
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

/// What to run and with what.
pub struct Launch {
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, already complete (PATH included).
    pub env: Vec<(String, String)>,
    pub stdin: std::process::Stdio,
    pub stdout: std::process::Stdio,
    pub stderr: std::process::Stdio,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("no command given")]
    NoCommand,
    #[error("{step}: {errno}", errno = errno.desc())]
    Step { step: String, errno: Errno },
    #[error("exec {program:?}: {}", errno_text(.source))]
    Exec { program: String, source: io::Error },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: io::Error,
    },
}

impl SpawnError {
    /// A command that is not there (Docker's 127) or cannot be run (126); the rest is
    /// the runtime's own failure.
    pub fn kind(&self) -> container_protocol::ErrorKind {
        use container_protocol::ErrorKind as K;
        match self {
            SpawnError::Exec { source, .. } => match source.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => K::CommandNotFound,
                Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR)
                | Some(libc::EPERM) => K::NotExecutable,
                _ => K::Internal,
            },
            SpawnError::NoCommand => K::Invalid,
            _ => K::Internal,
        }
    }
}

fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// Forks, runs the plan in the child and execs `args[0]` (searched in the PATH of
/// `env`, after the plan ran, so inside the container's root). The command, and with
/// it every descriptor meant for the child, is dropped before this returns.
pub fn spawn(launch: Launch) -> Result<tokio::process::Child, SpawnError> {
    let Launch {
        args,
        env,
        stdin,
        stdout,
        stderr,
        mut plan,
    } = launch;
    let program = args.first().ok_or(SpawnError::NoCommand)?.clone();
    // The plan moves into the child's closure; its labels stay here to name a failure.
    let labels: Vec<String> = plan.labels().into_iter().map(str::to_string).collect();
    let (report_rx, report_tx) = nix::unistd::pipe2(
        nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK,
    )
    .map_err(|e| SpawnError::Io {
        step: "create error pipe",
        source: e.into(),
    })?;
    let result = {
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args[1..])
            .env_clear()
            .envs(env)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(false);
        let report = report_tx.as_raw_fd();
        // SAFETY: the closure only runs the prepared steps (raw system calls on data
        // built before fork) and writes to a pipe: nothing allocates or locks.
        unsafe {
            cmd.pre_exec(move || plan.run(report));
        }
        cmd.spawn()
        // `cmd` drops here: the plan's namespace descriptors and the stdio ends go.
    };
    drop(report_tx);
    match result {
        Ok(child) => Ok(child),
        Err(source) => Err(child_failure(&report_rx, &labels, program, source)),
    }
}

/// Tells a failed step from a failed exec: only a step writes to our pipe. The child
/// wrote before std's own report reached the parent, so no wait is needed.
fn child_failure(
    report: &OwnedFd,
    labels: &[String],
    program: String,
    source: io::Error,
) -> SpawnError {
    let mut buf = [0u8; 8];
    match nix::unistd::read(report, &mut buf) {
        Ok(8) => {
            let index = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            SpawnError::Step {
                step: labels
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| format!("step {index}")),
                errno: Errno::from_raw(errno),
            }
        }
        _ => SpawnError::Exec { program, source },
    }
}
