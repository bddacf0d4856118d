//! The on-disk layout shared with the CNI host-local plugin (containernetworking/plugins
//! `plugins/ipam/host-local/backend/disk`), as observed from the installed binary:
//!
//! * `<dir>/<ip>`: one file per reservation, created `O_EXCL` with mode 0644, holding
//!   `<container-id>\r\n<ifname>` with no trailing newline. Old versions wrote only the id.
//! * `<dir>/last_reserved_ip.<range-set index>`: the last address reserved from that
//!   range set, bare text, no newline.
//! * `<dir>/lock`: empty, mode 0750, `flock(LOCK_EX)` around every read-modify-write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::range::{file_name, parse_file_name};
use crate::IpamError;

pub(crate) const LOCK_FILE: &str = "lock";
pub(crate) const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Our temp files start with this. They only exist while we hold the lock, so one found
/// by a lock holder is debris of a crash and may be removed.
pub(crate) const TEMP_PREFIX: &str = ".container-ipam.tmp.";
const LINE_BREAK: &str = "\r\n";

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Who holds a reservation, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    pub container_id: String,
    /// Empty for files in the old format that held only the container id.
    pub ifname: String,
}

impl Holder {
    fn parse(content: &[u8]) -> Holder {
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

    pub(crate) fn is_old_format(&self) -> bool {
        self.ifname.is_empty()
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

/// One reservation file found on disk. `holder` is `None` when the file could not be read:
/// the address is still taken, but nobody can tell by whom.
pub(crate) struct Entry {
    pub ip: IpAddr,
    pub holder: Option<Holder>,
}

pub(crate) struct Store {
    dir: PathBuf,
}

/// Holds the directory's lock until dropped. Closing the descriptor would release it too;
/// the guard only makes the scope explicit.
pub(crate) struct Locked<'a> {
    store: &'a Store,
    /// Reservation files are read relative to this, sparing a path walk per file when a
    /// scan reads thousands of them; it is also what gets fsynced.
    dir_fd: File,
    _lock: Flock<File>,
}

/// A fsynced temp file holding `<id>\r\n<ifname>`; each reservation of one allocation is
/// a hard link to it, so one fsync covers every range set. Removed on drop.
pub(crate) struct Staged<'a> {
    temp: PathBuf,
    /// The temp name is fixed, so a staged file must not outlive the lock.
    _locked: PhantomData<&'a Locked<'a>>,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.temp);
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, IpamError> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        // A reservation is only durable if the directories leading to it are too.
        for created in missing {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("fsync directory", parent))?;
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh descriptor per call: flock excludes between open file descriptions, so two
    /// threads sharing one descriptor would both "hold" the lock.
    pub fn lock(&self, exclusive: bool) -> Result<Locked<'_>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        // Same open as host-local: O_RDONLY | O_CREAT, 0750. std only sets O_CREAT with
        // write access, so it goes in as a custom flag.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_CREAT)
            .mode(0o750)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        let lock = loop {
            match Flock::lock(file, arg) {
                Ok(lock) => break lock,
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(IpamError::Io {
                        op: "flock",
                        path,
                        source: errno.into(),
                    })
                }
            }
        };
        let dir_fd = File::open(&self.dir).map_err(io_err("open directory", &self.dir))?;
        Ok(Locked {
            store: self,
            dir_fd,
            _lock: lock,
        })
    }
}

impl Locked<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// Every reservation file in the directory. Names that are neither reservations nor
    /// bookkeeping are returned separately so callers decide whether to complain.
    pub fn scan(&self) -> Result<(Vec<Entry>, Vec<String>), IpamError> {
        let dir = &self.store.dir;
        let mut entries = Vec::new();
        let mut junk = Vec::new();
        for dirent in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let dirent = dirent.map_err(io_err("read directory", dir))?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else {
                junk.push(name.to_string_lossy().into_owned());
                continue;
            };
            if name == LOCK_FILE || name.starts_with(LAST_RESERVED_PREFIX) {
                continue;
            }
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let Some(ip) = parse_file_name(name) else {
                junk.push(name.to_string());
                continue;
            };
            if dirent.file_type().map(|t| !t.is_file()).unwrap_or(true) {
                junk.push(name.to_string());
                continue;
            }
            let holder = match self.read_small(name) {
                Ok(content) => Some(Holder::parse(&content)),
                Err(e) => {
                    tracing::warn!(path = %dirent.path().display(), error = %e,
                        "unreadable reservation file; its address stays taken");
                    None
                }
            };
            entries.push(Entry { ip, holder });
        }
        entries.sort_by_key(|e| e.ip);
        Ok((entries, junk))
    }

    /// Removes temp files left by a crash. Only safe with the exclusive lock held.
    pub fn remove_stale_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.store.dir) else {
            return;
        };
        for dirent in rd.flatten() {
            if dirent
                .file_name()
                .to_string_lossy()
                .starts_with(TEMP_PREFIX)
            {
                let _ = fs::remove_file(dirent.path());
            }
        }
    }

    /// Reads a file of the directory in one `openat` + `read` (reservations are a few
    /// dozen bytes), where `fs::read` would also stat and walk the full path.
    fn read_small(&self, name: &str) -> io::Result<Vec<u8>> {
        let fd = openat(
            &self.dir_fd,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        let mut file = File::from(fd);
        let mut buf = [0u8; 256];
        let n = file.read(&mut buf)?;
        let mut content = buf[..n].to_vec();
        if n == buf.len() {
            file.read_to_end(&mut content)?;
        }
        Ok(content)
    }

    pub fn holder(&self, ip: IpAddr) -> Option<Holder> {
        self.read_small(&file_name(ip))
            .ok()
            .map(|c| Holder::parse(&c))
    }

    /// Writes and fsyncs the content every reservation of `holder` will have.
    pub fn stage(&self, holder: &Holder) -> Result<Staged<'_>, IpamError> {
        let temp = self.path(&format!("{TEMP_PREFIX}reserve"));
        let content = format!("{}{LINE_BREAK}{}", holder.container_id, holder.ifname);
        write_file(&temp, content.as_bytes(), true)?;
        Ok(Staged {
            temp,
            _locked: PhantomData,
        })
    }

    /// Creates the reservation file for `ip` unless it exists; `Ok(false)` if taken.
    ///
    /// Hard-linking the staged file into place fails if the name exists (like host-local's
    /// `O_EXCL`), and a crash can never leave an empty or half-written reservation behind.
    /// The caller must [`sync_dir`](Self::sync_dir) before telling anyone about the address.
    pub fn reserve(&self, staged: &Staged<'_>, ip: IpAddr) -> Result<bool, IpamError> {
        let target = self.path(&file_name(ip));
        match fs::hard_link(&staged.temp, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(IpamError::Io {
                op: "create reservation",
                path: target,
                source: e,
            }),
        }
    }

    /// Removes a reservation; a file already gone counts as removed.
    pub fn remove(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.path(&file_name(ip));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IpamError::Io {
                op: "remove reservation",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// `None` when absent or unparsable: host-local then just starts at range start.
    pub fn last_reserved(&self, index: usize) -> Option<IpAddr> {
        let text = fs::read_to_string(self.path(&format!("{LAST_RESERVED_PREFIX}{index}"))).ok()?;
        text.trim().parse().ok()
    }

    /// Written by rename so readers see old or new, never a truncated file. Not fsynced:
    /// it is only a round-robin hint, and losing it costs nothing but the rotation.
    pub fn set_last_reserved(&self, index: usize, ip: IpAddr) -> Result<(), IpamError> {
        let target = self.path(&format!("{LAST_RESERVED_PREFIX}{index}"));
        let temp = self.path(&format!("{TEMP_PREFIX}last"));
        write_file(&temp, file_name(ip).as_bytes(), false)?;
        fs::rename(&temp, &target).map_err(io_err("write last reserved ip", &target))
    }

    /// Makes created, linked, renamed and removed names durable.
    pub fn sync_dir(&self) -> Result<(), IpamError> {
        self.dir_fd
            .sync_all()
            .map_err(io_err("fsync directory", &self.store.dir))
    }
}

fn write_file(path: &Path, content: &[u8], sync: bool) -> Result<(), IpamError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(io_err("create temp file", path))?;
    f.write_all(content)
        .map_err(io_err("write temp file", path))?;
    if sync {
        f.sync_all().map_err(io_err("fsync temp file", path))?;
    }
    Ok(())
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
    }
}
