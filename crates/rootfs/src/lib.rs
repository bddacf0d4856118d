//! Paths inside a root filesystem, resolved the way a process rooted there resolves
//! them, whatever the root's symlinks say.
//!
//! A root filesystem is the container's, not the host's: an absolute symlink in it
//! (`etc -> /srv/host-dir`) means `<root>/srv/host-dir`, a chain of `..` stops at the
//! root, and a magic link (`/proc/self/root`) is refused. Every lookup is one
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a descriptor of the root, so
//! the kernel applies these rules atomically, also against a root whose owner renames
//! things while we look (a running container's). Linux 5.6 has it; an older kernel is
//! refused with [`Error::Unsupported`] rather than served by a weaker walk.
//!
//! What creates (`mkdir_all`, `create_file`) follows links inside the root too, and
//! creates where they lead: a container whose `/etc/hostname` links to a missing
//! `/run/x` gets `<root>/run/x`, as it would by writing `/etc/hostname` itself. Each
//! creation is one `mkdirat`/`openat(O_EXCL|O_NOFOLLOW)` of a single name in a
//! directory held by descriptor, so nothing is created through a link.
//!
//! [`raw`] has the same lookup for a forked child, which may not allocate.

mod error;
pub mod raw;

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};

pub use error::Error;

/// Links followed in one lookup before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;
/// Rounds a creation may lose to a concurrent change of the same name.
const MAX_RACES: usize = 16;

/// What a path names, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
    Symlink,
    /// A device node, fifo or socket.
    Other,
}

/// A root filesystem, held by a descriptor of its top directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// For messages only: every lookup goes through `fd`.
    label: PathBuf,
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    /// Opens the directory at `path` (a host path the caller trusts: it is resolved
    /// normally, links and all) as a root.
    pub fn open(path: &Path) -> Result<Root, Error> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| Error::Io {
            root: path.to_path_buf(),
            path: PathBuf::from("/"),
            step: "open the root",
            errno,
        })?;
        Root::from_fd(fd, path)
    }

    /// A root already held by descriptor (e.g. `/proc/<pid>/root` of a running
    /// container), named `label` in messages.
    pub fn from_fd(fd: OwnedFd, label: impl Into<PathBuf>) -> Result<Root, Error> {
        let root = Root {
            fd,
            label: label.into(),
        };
        // One lookup tells whether the kernel resolves in a root at all.
        match root.openat2(Path::new("."), OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(_) => Ok(root),
            Err(errno @ (Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG)) => {
                Err(Error::Unsupported {
                    root: root.label,
                    errno,
                })
            }
            Err(errno) => Err(root.io("/", "open the root", errno)),
        }
    }

    /// The root as named in messages.
    pub fn label(&self) -> &Path {
        &self.label
    }

    /// Opens `path` with `flags` (`O_CLOEXEC` is added), following links inside the
    /// root. `O_PATH` opens without touching the file (no device side effects).
    pub fn open_at(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Error> {
        self.openat2(path, flags).map_err(|errno| match errno {
            Errno::ELOOP => self.refused(path, "too many symlinks, or a link into /proc"),
            errno => self.io(path, "open", errno),
        })
    }

    /// Opens `path` with `flags` where no component at all is a symlink (nor a mount
    /// point): what a writer that must never go through a link uses (an unpacked
    /// layer). A link on the way is refused with [`Error::Refused`] naming it as such.
    pub fn open_strict(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Error> {
        let c = CString::new(relative(path).as_os_str().as_bytes())
            .map_err(|_| self.refused(path, "a NUL byte in the name"))?;
        match raw::open_in_root_with(self.fd.as_raw_fd(), &c, flags.bits(), raw::RESOLVE_STRICT) {
            // SAFETY: the kernel just gave us this descriptor.
            Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(libc::ELOOP) => Err(self.refused(
                path,
                "a symlink on the way (nothing is written through a link)",
            )),
            Err(libc::EXDEV) => Err(self.refused(path, "crosses a mount point")),
            Err(errno) => Err(self.io(path, "open", Errno::from_raw(errno))),
        }
    }

    /// `path` for reading, at most `limit` bytes of it (a longer file is refused: the
    /// root's owner chooses its size).
    pub fn read(&self, path: &Path, limit: usize) -> Result<Vec<u8>, Error> {
        use std::io::Read;
        // Looked at before it is opened: opening a device or fifo has effects.
        let found = self.open_at(path, OFlag::O_PATH)?;
        let st = fstat(&found).map_err(|e| self.io(path, "stat", e))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(self.refused(path, "not a regular file"));
        }
        let fd = reopen(found.as_fd(), OFlag::O_RDONLY).map_err(|e| self.io(path, "open", e))?;
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(limit as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| self.io(path, "read", io_errno(&e)))?;
        if data.len() > limit {
            return Err(self.refused(path, &format!("larger than {limit} bytes")));
        }
        Ok(data)
    }

    /// What `path` is, without following a final symlink (its directory is found
    /// inside the root); `None` when it does not exist.
    pub fn kind(&self, path: &Path) -> Result<Option<FileKind>, Error> {
        let (parent, name) = split(path).ok_or_else(|| self.refused(path, "not a file name"))?;
        let dir = match self.openat2(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(dir) => dir,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ENOTDIR) => return Err(self.refused(&parent, "not a directory")),
            Err(errno) => return Err(self.io(&parent, "open", errno)),
        };
        match fstatat(
            &dir,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(kind_of(st.st_mode))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(self.io(path, "stat", errno)),
        }
    }

    /// The directory `path`, created with `mode` where missing, parents included;
    /// links on the way are followed inside the root, and where one leads nowhere, the
    /// directories it names are created. Returns an `O_PATH` descriptor of it.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<OwnedFd, Error> {
        let mut todo = components(path);
        let mut prefix = PathBuf::new();
        let mut dir = self.dup()?;
        let (mut links, mut races) = (0, 0);
        while let Some(name) = todo.pop_front() {
            let next = prefix.join(&name);
            match self.openat2(&next, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => {
                    dir = fd;
                    prefix = next;
                    continue;
                }
                Err(Errno::ENOENT) if name != ".." => {}
                Err(Errno::ENOTDIR) => return Err(self.refused(&next, "not a directory")),
                Err(Errno::ELOOP) => {
                    return Err(self.refused(&next, "too many symlinks, or a link into /proc"))
                }
                Err(errno) => return Err(self.io(&next, "open", errno)),
            }
            // Missing, or a link whose end is missing: which one, `dir` itself says.
            match readlinkat(&dir, &name) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(self.refused(path, "too many symlinks"));
                    }
                    if target.is_absolute() {
                        prefix = PathBuf::new();
                        dir = self.dup()?;
                    }
                    let mut rest = components(&target);
                    rest.extend(todo.drain(..));
                    todo = rest;
                }
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        &dir,
                        name.as_os_str(),
                        Mode::from_bits_truncate(mode),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(errno) => return Err(self.io(&next, "create directory", errno)),
                    }
                    races += 1;
                    todo.push_front(name);
                }
                // There now, and not a link: it appeared meanwhile.
                Err(Errno::EINVAL) => {
                    races += 1;
                    todo.push_front(name);
                }
                Err(errno) => return Err(self.io(&next, "read link", errno)),
            }
            if races > MAX_RACES + path.components().count() {
                return Err(self.io(path, "create directory", Errno::EAGAIN));
            }
        }
        Ok(dir)
    }

    /// A non-directory at `path`, made an empty file with `mode` if nothing is there
    /// (parents created as by [`Root::mkdir_all`]; a final link followed inside the
    /// root). Returns an `O_PATH` descriptor of it: what a file bind mount goes onto.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<OwnedFd, Error> {
        let mut path = path.to_path_buf();
        let (mut links, mut races) = (0, 0);
        loop {
            let (parent, name) =
                split(&path).ok_or_else(|| self.refused(&path, "not a file name"))?;
            let dir = self.mkdir_all(&parent, 0o755)?;
            match readlinkat(&dir, &name) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(self.refused(&path, "too many symlinks"));
                    }
                    path = parent.join(target);
                    continue;
                }
                Err(Errno::ENOENT) => {
                    let created = nix::fcntl::openat(
                        &dir,
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(mode),
                    );
                    match created {
                        Ok(_) => {}
                        Err(Errno::EEXIST) if races < MAX_RACES => {
                            races += 1;
                            continue;
                        }
                        Err(errno) => return Err(self.io(&path, "create", errno)),
                    }
                }
                Err(Errno::EINVAL) => {}
                Err(errno) => return Err(self.io(&path, "read link", errno)),
            }
            let fd = nix::fcntl::openat(
                &dir,
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| self.io(&path, "open", errno))?;
            let st = fstat(&fd).map_err(|errno| self.io(&path, "stat", errno))?;
            return match kind_of(st.st_mode) {
                FileKind::Directory => Err(self.refused(&path, "is a directory")),
                // Replaced by a link between our two looks: look again.
                FileKind::Symlink if races < MAX_RACES => {
                    races += 1;
                    continue;
                }
                FileKind::Symlink => Err(self.io(&path, "create", Errno::EAGAIN)),
                FileKind::File | FileKind::Other => Ok(fd),
            };
        }
    }

    fn openat2(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let c = CString::new(relative(path).as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
        let fd =
            raw::open_in_root(self.fd.as_raw_fd(), &c, flags.bits()).map_err(Errno::from_raw)?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn dup(&self) -> Result<OwnedFd, Error> {
        self.fd
            .try_clone()
            .map_err(|e| self.io("/", "duplicate descriptor", io_errno(&e)))
    }

    fn io(&self, path: impl AsRef<Path>, step: &'static str, errno: Errno) -> Error {
        Error::Io {
            root: self.label.clone(),
            path: shown(path.as_ref()),
            step,
            errno,
        }
    }

    fn refused(&self, path: impl AsRef<Path>, reason: &str) -> Error {
        Error::Refused {
            root: self.label.clone(),
            path: shown(path.as_ref()),
            reason: reason.to_string(),
        }
    }
}

/// Opens what `fd` (often `O_PATH`) refers to again, with `flags`: the way to open a
/// file for real once its kind has been checked, without looking its path up again.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> Result<OwnedFd, Errno> {
    let mut buf = [0u8; 32];
    let path = raw::fd_path(fd.as_raw_fd(), &mut buf);
    nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
}

fn kind_of(mode: libc::mode_t) -> FileKind {
    match SFlag::from_bits_truncate(mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFREG => FileKind::File,
        SFlag::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn readlinkat(dir: &OwnedFd, name: &OsStr) -> Result<PathBuf, Errno> {
    nix::fcntl::readlinkat(dir, name).map(PathBuf::from)
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The names to walk: `.` and the leading `/` dropped (a lookup starts at the root).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// `path` as a lookup from the root: relative, `.` for the root itself.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = components(path).into_iter().collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Parent and last name, when the last component is a name (not `..`, not the root).
fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    let mut parts = components(path);
    let name = parts.pop_back().filter(|n| n != "..")?;
    Some((parts.into_iter().collect(), name))
}

/// A path as the container writes it: absolute.
fn shown(path: &Path) -> PathBuf {
    Path::new("/").join(relative(path)).components().collect()
}

#[cfg(test)]
mod tests;
