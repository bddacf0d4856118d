//! The on-disk layout shared with the CNI host-local plugin (containernetworking/plugins
//! `plugins/ipam/host-local/backend/disk`), as observed from the installed binary:
//!
//! * `<dir>/<ip>`: one file per reservation, created `O_EXCL` with mode 0644, holding
//!   `<container-id>\r\n<ifname>` with no trailing newline. Old versions wrote only the id.
//! * `<dir>/last_reserved_ip.<range-set index>`: the last address reserved from that
//!   range set, bare text, no newline, rewritten in place.
//! * `<dir>/lock`: empty, mode 0750, `flock(LOCK_EX)` around every read-modify-write.
//!
//! Every operation but the lock goes through one descriptor of the directory, so a call
//! costs the syscalls it makes and no path walks.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::range::{file_name, parse_file_name};
use crate::IpamError;

pub(crate) const LOCK_FILE: &str = "lock";
pub(crate) const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Temp files of earlier versions of this crate began with this. Only a lock holder
/// ever had one, so one found by a lock holder is debris of a crash.
pub(crate) const TEMP_PREFIX: &str = ".container-ipam.tmp.";
const LINE_BREAK: &str = "\r\n";

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Who holds a reservation, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub container_id: String,
    /// Empty for files in the old format that held only the container id.
    pub ifname: String,
}

impl Holder {
    pub(crate) fn parse(content: &[u8]) -> Holder {
        // host-local compares TrimSpace(content) against "<id>\r\n<ifname>" and "<id>".
        let text = String::from_utf8_lossy(content);
        let text = text.trim();
        match text.split_once(LINE_BREAK) {
            Some((id, ifname)) => Holder {
                container_id: id.trim().to_string(),
                ifname: ifname.to_string(),
            },
            None => Holder {
                container_id: text.to_string(),
                ifname: String::new(),
            },
        }
    }

    pub(crate) fn new(container_id: &str, ifname: &str) -> Holder {
        Holder {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }

    pub(crate) fn is_old_format(&self) -> bool {
        self.ifname.is_empty()
    }

    fn content(&self) -> String {
        format!("{}{LINE_BREAK}{}", self.container_id, self.ifname)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ifname.is_empty() {
            write!(f, "container {}", self.container_id)
        } else {
            write!(f, "container {} ({})", self.container_id, self.ifname)
        }
    }
}

/// What a name that parses as an address turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Absent,
    /// A regular file; `None` when it could not be read (its address stays taken, but
    /// nobody can tell by whom).
    Reservation(Option<Holder>),
    /// A directory, link or other node: not a reservation, but it still blocks the
    /// address for host-local's `O_EXCL`, and for ours.
    Blocker,
}

/// One directory entry of a listing, classified.
pub(crate) enum Listed {
    Reservation {
        ip: IpAddr,
        ino: u64,
        /// `None`: the listing could not tell (`DT_UNKNOWN`).
        regular: Option<bool>,
    },
    /// Our own debris: removed by whoever holds the exclusive lock.
    Temp(String),
    /// Neither a reservation nor bookkeeping.
    Junk(String),
}

/// `<root>/ipam/<network>`, opened.
pub(crate) struct NetDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl NetDir {
    /// Opens `dir`, creating it (and fsyncing the parents it creates, so that the
    /// directory survives a crash of the machine) if needed.
    pub fn open(dir: &Path) -> Result<NetDir, IpamError> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        for created in missing {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("fsync directory", parent))?;
            }
        }
        let fd = File::open(dir).map_err(io_err("open directory", dir))?;
        Ok(NetDir {
            path: dir.to_path_buf(),
            fd: fd.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str, name: &str, errno: Errno) -> IpamError {
        IpamError::Io {
            op,
            path: self.path.join(name),
            source: errno.into(),
        }
    }

    /// Takes `<dir>/lock` by path, as host-local does, so that a directory replaced
    /// under us is still locked where the others lock it. Released when dropped.
    pub fn lock(path: &Path, exclusive: bool) -> Result<Flock<File>, IpamError> {
        let lock_path = path.join(LOCK_FILE);
        // Same open as host-local: O_RDONLY | O_CREAT, 0750. std only sets O_CREAT with
        // write access, so it goes in as a custom flag.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_CREAT | nix::libc::O_CLOEXEC)
            .mode(0o750)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        loop {
            match Flock::lock(file, arg) {
                Ok(lock) => return Ok(lock),
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(IpamError::Io {
                        op: "flock",
                        path: lock_path,
                        source: errno.into(),
                    })
                }
            }
        }
    }

    /// Whether `lock` (taken by path) is this directory's lock file. The inode of a file
    /// held open cannot be reused, so a match means the path still leads here; a
    /// directory removed or replaced since it was opened does not match.
    pub fn holds(&self, lock: &File) -> Result<bool, IpamError> {
        let held = fstat(lock).map_err(|e| self.err("stat lock file", LOCK_FILE, e))?;
        match fstatat(self.fd.as_fd(), LOCK_FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(here) => Ok(here.st_dev == held.st_dev && here.st_ino == held.st_ino),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.err("stat lock file", LOCK_FILE, e)),
        }
    }

    /// Reads a small file of the directory in one `openat` + `read`.
    fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, Errno> {
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut file = File::from(fd);
        let mut buf = [0u8; 256];
        let n = file.read(&mut buf).map_err(errno_of)?;
        let mut content = buf[..n].to_vec();
        if n == buf.len() {
            file.read_to_end(&mut content).map_err(errno_of)?;
        }
        Ok(Some(content))
    }

    /// Reads what `ip`'s name holds now. `regular` is what a listing said about it, if
    /// it could tell: then no `fstat` is needed.
    pub fn find(&self, ip: IpAddr, regular: Option<bool>) -> Found {
        let name = file_name(ip);
        if regular == Some(false) {
            return Found::Blocker;
        }
        let fd = match openat(
            self.fd.as_fd(),
            name.as_str(),
            // O_NONBLOCK: a FIFO named like an address must not hang us.
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Found::Absent,
            // O_NOFOLLOW on a symlink.
            Err(Errno::ELOOP) => return Found::Blocker,
            Err(e) => {
                tracing::warn!(path = %self.path.join(&name).display(), error = %e,
                    "unreadable reservation file; its address stays taken");
                return Found::Reservation(None);
            }
        };
        if regular.is_none() {
            match fstat(&fd) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {}
                Ok(_) => return Found::Blocker,
                Err(e) => {
                    tracing::warn!(path = %self.path.join(&name).display(), error = %e,
                        "cannot stat reservation file; its address stays taken");
                    return Found::Reservation(None);
                }
            }
        }
        let mut file = File::from(fd);
        let mut buf = [0u8; 256];
        let read = file.read(&mut buf).and_then(|n| {
            let mut content = buf[..n].to_vec();
            if n == buf.len() {
                file.read_to_end(&mut content)?;
            }
            Ok(content)
        });
        match read {
            Ok(content) => Found::Reservation(Some(Holder::parse(&content))),
            Err(e) => {
                tracing::warn!(path = %self.path.join(&name).display(), error = %e,
                    "unreadable reservation file; its address stays taken");
                Found::Reservation(None)
            }
        }
    }

    /// Creates the reservation of `ip` for `holder` with `O_EXCL`, as host-local does;
    /// `Ok(false)` if the name exists. A crash between the create and the write leaves
    /// an empty file, which holds the address for nobody until GC releases it.
    pub fn create(&self, ip: IpAddr, holder: &Holder) -> Result<bool, IpamError> {
        let name = file_name(ip);
        let fd = match openat(
            self.fd.as_fd(),
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(self.err("create reservation", &name, e)),
        };
        if let Err(e) = File::from(fd).write_all(holder.content().as_bytes()) {
            let _ = unlinkat(self.fd.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(IpamError::Io {
                op: "write reservation",
                path: self.path.join(&name),
                source: e,
            });
        }
        Ok(true)
    }

    /// Removes a reservation; a file already gone counts as removed.
    pub fn remove(&self, ip: IpAddr) -> Result<(), IpamError> {
        let name = file_name(ip);
        match unlinkat(self.fd.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.err("remove reservation", &name, e)),
        }
    }

    pub fn remove_temp(&self, name: &str) {
        let _ = unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir);
    }

    /// `None` when absent or unparsable: host-local then just starts at range start.
    pub fn last_reserved(&self, index: usize) -> Option<IpAddr> {
        let content = self
            .read_small(&format!("{LAST_RESERVED_PREFIX}{index}"))
            .ok()??;
        String::from_utf8_lossy(&content).trim().parse().ok()
    }

    /// Rewritten in place, not fsynced: it is only a round-robin hint, read under the
    /// lock, and a torn or lost one costs nothing but the rotation. host-local opens it
    /// with `O_TRUNC`; we overwrite and then cut to length instead, because ext4 turns a
    /// truncation to zero into a flush of the file at close (`auto_da_alloc`), which
    /// cost milliseconds per allocation here. The bytes left are the same.
    pub fn set_last_reserved(&self, index: usize, ip: IpAddr) -> Result<(), IpamError> {
        use std::os::unix::fs::FileExt;
        let name = format!("{LAST_RESERVED_PREFIX}{index}");
        let fd = openat(
            self.fd.as_fd(),
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| self.err("write last reserved ip", &name, e))?;
        let file = File::from(fd);
        let text = file_name(ip);
        file.write_all_at(text.as_bytes(), 0)
            .and_then(|()| file.set_len(text.len() as u64))
            .map_err(io_err("write last reserved ip", &self.path.join(&name)))
    }

    /// One pass over the directory's entries, classified; `.`, `..`, the lock and the
    /// `last_reserved_ip` files are left out.
    pub fn list(&self) -> Result<Vec<Listed>, IpamError> {
        let mut dir = Dir::openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("read directory", ".", e))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.err("read directory", ".", e))?;
            let Ok(name) = entry.file_name().to_str() else {
                out.push(Listed::Junk(
                    entry.file_name().to_string_lossy().into_owned(),
                ));
                continue;
            };
            if name == "." || name == ".." || name == LOCK_FILE {
                continue;
            }
            if name.starts_with(LAST_RESERVED_PREFIX) {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                out.push(Listed::Temp(name.to_string()));
                continue;
            }
            let Some(ip) = parse_file_name(name) else {
                out.push(Listed::Junk(name.to_string()));
                continue;
            };
            out.push(Listed::Reservation {
                ip,
                ino: entry.ino(),
                regular: entry.file_type().map(|t| t == Type::File),
            });
        }
        Ok(out)
    }
}

fn errno_of(e: io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_formats() {
        let h = Holder::parse(b"abc\r\neth0");
        assert_eq!(
            (h.container_id.as_str(), h.ifname.as_str()),
            ("abc", "eth0")
        );
        let h = Holder::parse(b"abc\n");
        assert_eq!((h.container_id.as_str(), h.ifname.as_str()), ("abc", ""));
        assert!(h.is_old_format());
        let h = Holder::parse(b"");
        assert_eq!(h.container_id, "");
        assert_eq!(Holder::new("a", "eth0").content(), "a\r\neth0");
    }
}
