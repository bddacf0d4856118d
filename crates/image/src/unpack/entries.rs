//! The rules for each tar entry. Whatever the tar holds, nothing is written outside
//! the layer directory:
//!
//! * names are cleaned lexically; one that climbs above the layer (`../x`) is refused,
//!   a leading `/` is dropped (tar's habit, and Docker's reading);
//! * every directory on the way is looked up with `container_rootfs::Root::open_strict`
//!   (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`): a symlink on the way is
//!   refused, so a link planted by an earlier entry cannot carry a later write out, nor
//!   anywhere else. Image builders write a layer from a real tree, where no path goes
//!   through a link; an entry that does is hostile or broken;
//! * the last name is created relative to that directory's descriptor, with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat`, `mknodat`, `linkat`;
//! * a hard link's target is a name inside the layer, looked up the same way;
//! * whiteouts (`.wh.NAME`) become overlayfs whiteouts (a 0:0 character device) and
//!   `.wh..wh..opq` marks its directory opaque (`user.overlay.opaque`, for an overlay
//!   mounted with `userxattr`), both by the same lookups;
//! * device nodes are not created (counted in the report); fifos, setuid and setgid
//!   bits and file capabilities are kept, as runtimes keep them: the store is 0700,
//!   so only containers reach them;
//! * extended attributes: `user.*` (not `user.overlay.*`, overlayfs's own) and
//!   `security.capability`; the rest (`trusted.*`, labels) are skipped.

use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use container_rootfs::Root;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use super::stream::Guarded;
use super::{Limits, Report};
use crate::error::{invalid, ImageError, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Unpacks the (possibly compressed) tar `input` into `root`, an empty directory.
pub fn apply(root: &Root, input: impl Read, limits: Limits) -> Result<Report> {
    let mut stream = Guarded::new(input, limits)
        .map_err(ImageError::io("layer: read the start of the stream"))?;
    let mut report = Report::default();
    let mut dirs: Vec<(PathBuf, i64, i64)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut stream);
        let mut writer = Writer {
            root,
            cached: None,
            limits,
        };
        let entries = archive
            .entries()
            .map_err(|e| invalid(format!("layer: not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(format!("layer: malformed tar: {e}")))?;
            report.entries += 1;
            if report.entries > limits.entries {
                return Err(invalid(format!(
                    "layer has more than {} entries (the limit)",
                    limits.entries
                )));
            }
            let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            writer
                .entry(&mut entry, &mut report, &mut dirs)
                .map_err(|e| e.context(format!("layer entry {shown:?}")))?;
        }
    }
    // What follows the end-of-archive blocks is part of the diff ID too.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| stream_error(&stream, e))?;
    // Directory times last: creating entries in a directory changes its own.
    for (path, secs, nsecs) in dirs.iter().rev() {
        if let Ok(fd) = root.open_strict(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            set_times(&fd, None, *secs, *nsecs, false);
        }
    }
    report.tar_bytes = stream.out;
    report.diff_id = Some(std::mem::take(&mut stream.hasher).finish());
    Ok(report)
}

fn stream_error(stream: &Guarded<'_>, e: io::Error) -> ImageError {
    match &stream.tripped {
        Some(limit) => invalid(limit.to_string()),
        None => invalid(format!("layer: read: {e}")),
    }
}

/// A cleaned entry name: its directories and its last component. `None`: the layer's
/// own root (`./`).
fn clean(raw: &[u8]) -> Result<Option<(PathBuf, Vec<u8>)>> {
    if raw.contains(&0) {
        return Err(invalid("a NUL byte in the name"));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(invalid("the name leads outside the layer"));
                }
            }
            c => parts.push(c),
        }
    }
    let Some(last) = parts.pop() else {
        return Ok(None);
    };
    let dir: PathBuf = parts.iter().map(|p| OsStr::from_bytes(p)).collect();
    Ok(Some((dir, last.to_vec())))
}

struct Writer<'r> {
    root: &'r Root,
    /// The last directory looked up: entries come directory by directory.
    cached: Option<(PathBuf, OwnedFd)>,
    limits: Limits,
}

impl Writer<'_> {
    /// The directory `dir`, created (0755, as Docker) where missing; never through a
    /// link.
    fn dir(&mut self, dir: &Path) -> Result<&OwnedFd> {
        let hit = matches!(&self.cached, Some((p, _)) if p == dir);
        if !hit {
            let fd = self.lookup_dir(dir)?;
            self.cached = Some((dir.to_path_buf(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd),
            None => Err(invalid("internal: no directory")),
        }
    }

    fn lookup_dir(&self, dir: &Path) -> Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        match self.root.open_strict(dir, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.errno() == Some(Errno::ENOENT) => {}
            Err(e) => return Err(refused(e)),
        }
        let mut fd = self
            .root
            .open_strict(Path::new("."), flags)
            .map_err(refused)?;
        let mut prefix = PathBuf::new();
        for c in dir.components() {
            let name = c.as_os_str();
            prefix.push(name);
            match nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(invalid(format!(
                        "create directory {}: {}",
                        prefix.display(),
                        e.desc()
                    )))
                }
            }
            fd = self.root.open_strict(&prefix, flags).map_err(refused)?;
        }
        Ok(fd)
    }

    fn entry(
        &mut self,
        entry: &mut tar::Entry<'_, &mut Guarded<'_>>,
        report: &mut Report,
        dirs: &mut Vec<(PathBuf, i64, i64)>,
    ) -> Result<()> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let Some((dir, name)) = clean(&entry.path_bytes())? else {
            // The layer's root: its own attributes do not matter under overlayfs.
            return Ok(());
        };
        let header = entry.header();
        let uid = id32(header.uid(), "uid")?;
        let gid = id32(header.gid(), "gid")?;
        let mode = header.mode().map_err(|e| invalid(format!("mode: {e}")))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let cname = CString::new(name.clone()).map_err(|_| invalid("a NUL byte in the name"))?;

        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let parent = self.dir(&dir)?;
            if name == OPAQUE.as_bytes() {
                set_xattr(parent, OPAQUE_XATTR, b"y")
                    .map_err(|e| invalid(format!("mark directory opaque: {}", e.desc())))?;
                report.opaque_dirs += 1;
                return Ok(());
            }
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                return Err(invalid("a whiteout that names nothing in its directory"));
            }
            let target = CString::new(target).map_err(|_| invalid("a NUL byte in the name"))?;
            let parent = self.dir(&dir)?.try_clone().map_err(ImageError::io("dup"))?;
            self.clear(&parent, &target)?;
            nix::sys::stat::mknodat(&parent, target.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| invalid(format!("create whiteout: {}", e.desc())))?;
            report.whiteouts += 1;
            return Ok(());
        }

        let parent = self.dir(&dir)?.try_clone().map_err(ImageError::io("dup"))?;
        let xattrs = xattrs_of(entry, report)?;
        match kind {
            T::Directory => {
                let full = dir.join(OsStr::from_bytes(&name));
                match nix::sys::stat::mkdirat(
                    &parent,
                    cname.as_c_str(),
                    Mode::from_bits_truncate(0o700),
                ) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = nix::sys::stat::fstatat(
                            &parent,
                            cname.as_c_str(),
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .map_err(|e| invalid(format!("stat: {}", e.desc())))?;
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                            self.clear(&parent, &cname)?;
                            nix::sys::stat::mkdirat(
                                &parent,
                                cname.as_c_str(),
                                Mode::from_bits_truncate(0o700),
                            )
                            .map_err(|e| invalid(format!("create directory: {}", e.desc())))?;
                        }
                    }
                    Err(e) => return Err(invalid(format!("create directory: {}", e.desc()))),
                }
                let fd = self
                    .root
                    .open_strict(&full, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(refused)?;
                own(&fd, uid, gid, mode, &xattrs)?;
                dirs.push((full, mtime, 0));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(&parent, &cname)?;
                let fd = nix::fcntl::openat(
                    &parent,
                    cname.as_c_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| invalid(format!("create: {}", e.desc())))?;
                let mut file = std::fs::File::from(fd);
                let n = io::copy(entry, &mut file).map_err(|e| {
                    invalid(match e.get_ref() {
                        Some(inner) if inner.to_string().contains("(--image-max") => {
                            inner.to_string()
                        }
                        _ => format!("write: {e}"),
                    })
                })?;
                report.content_bytes += n;
                if report.content_bytes > self.limits.layer_bytes {
                    return Err(invalid(format!(
                        "layer is larger than the limit of {} bytes (--image-max-layer-size)",
                        self.limits.layer_bytes
                    )));
                }
                let fd = OwnedFd::from(file);
                own(&fd, uid, gid, mode, &xattrs)?;
                set_times(&fd, None, mtime, 0, false);
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("a symlink without a target"))?;
                let target = CString::new(target.to_vec())
                    .map_err(|_| invalid("a NUL byte in the link target"))?;
                self.clear(&parent, &cname)?;
                nix::unistd::symlinkat(target.as_c_str(), &parent, cname.as_c_str())
                    .map_err(|e| invalid(format!("create symlink: {}", e.desc())))?;
                nix::unistd::fchownat(
                    &parent,
                    cname.as_c_str(),
                    Some(uid.into()),
                    Some(gid.into()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| invalid(format!("chown symlink: {}", e.desc())))?;
                set_times(&parent, Some(&cname), mtime, 0, true);
            }
            T::Link => {
                let raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("a hard link without a target"))?;
                let (tdir, tname) = clean(&raw)
                    .map_err(|e| invalid(format!("hard link target: {e}")))?
                    .ok_or_else(|| invalid("a hard link to the layer's root"))?;
                let tdir_fd = self
                    .root
                    .open_strict(&tdir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(|e| invalid(format!("hard link target: {}", refused(e))))?;
                let tname =
                    CString::new(tname).map_err(|_| invalid("a NUL byte in the link target"))?;
                let st = nix::sys::stat::fstatat(
                    &tdir_fd,
                    tname.as_c_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| invalid(format!("hard link target: {}", e.desc())))?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    return Err(invalid("a hard link to a directory"));
                }
                self.clear(&parent, &cname)?;
                nix::unistd::linkat(
                    &tdir_fd,
                    tname.as_c_str(),
                    &parent,
                    cname.as_c_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| invalid(format!("create hard link: {}", e.desc())))?;
            }
            T::Fifo => {
                self.clear(&parent, &cname)?;
                nix::sys::stat::mknodat(
                    &parent,
                    cname.as_c_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|e| invalid(format!("create fifo: {}", e.desc())))?;
                let fd = nix::fcntl::openat(
                    &parent,
                    cname.as_c_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| invalid(format!("open fifo: {}", e.desc())))?;
                nix::unistd::fchownat(
                    &parent,
                    cname.as_c_str(),
                    Some(uid.into()),
                    Some(gid.into()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| invalid(format!("chown fifo: {}", e.desc())))?;
                nix::sys::stat::fchmodat(
                    &parent,
                    cname.as_c_str(),
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| invalid(format!("chmod fifo: {}", e.desc())))?;
                drop(fd);
            }
            T::Char | T::Block => {
                report.skipped_devices += 1;
            }
            other => {
                return Err(invalid(format!("entry type {other:?} is not supported")));
            }
        }
        Ok(())
    }

    /// Makes room for a new entry at `name`: a later entry replaces an earlier one,
    /// as tar does. A directory there goes with its contents, removed by descriptor.
    fn clear(&mut self, parent: &OwnedFd, name: &CString) -> Result<()> {
        match nix::sys::stat::fstatat(parent, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(invalid(format!("stat: {}", e.desc()))),
            Ok(st) => {
                // The cached directory may be the one going.
                self.cached = None;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    remove_tree(parent, name)
                } else {
                    nix::unistd::unlinkat(
                        parent,
                        name.as_c_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    )
                    .map_err(|e| invalid(format!("replace: {}", e.desc())))
                }
            }
        }
    }
}

/// Removes the directory `name` in `parent` with what it holds, never following a link.
fn remove_tree(parent: &OwnedFd, name: &CString) -> Result<()> {
    let fd = nix::fcntl::openat(
        parent,
        name.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| invalid(format!("open directory to replace: {}", e.desc())))?;
    let mut dir =
        nix::dir::Dir::from_fd(fd).map_err(|e| invalid(format!("read directory: {}", e.desc())))?;
    let fd = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(ImageError::io("dup"))?;
    let names: Vec<(CString, bool)> = dir
        .iter()
        .flatten()
        .filter(|e| e.file_name() != c"." && e.file_name() != c"..")
        .map(|e| {
            (
                e.file_name().to_owned(),
                e.file_type() == Some(nix::dir::Type::Directory),
            )
        })
        .collect();
    for (n, is_dir) in names {
        if is_dir {
            remove_tree(&fd, &n)?;
        } else {
            nix::unistd::unlinkat(&fd, n.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| invalid(format!("remove: {}", e.desc())))?;
        }
    }
    nix::unistd::unlinkat(
        parent,
        name.as_c_str(),
        nix::unistd::UnlinkatFlags::RemoveDir,
    )
    .map_err(|e| invalid(format!("remove directory: {}", e.desc())))
}

fn refused(e: container_rootfs::Error) -> ImageError {
    match e {
        container_rootfs::Error::Refused { path, reason, .. } => {
            invalid(format!("{}: {reason}", path.display()))
        }
        other => invalid(other.to_string()),
    }
}

fn id32(v: std::io::Result<u64>, what: &str) -> Result<u32> {
    let v = v.map_err(|e| invalid(format!("{what}: {e}")))?;
    u32::try_from(v).map_err(|_| invalid(format!("{what} {v} is out of range")))
}

/// The extended attributes kept: `user.*` but overlayfs's own, and file capabilities.
fn xattrs_of(
    entry: &mut tar::Entry<'_, &mut Guarded<'_>>,
    report: &mut Report,
) -> Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| invalid(format!("pax header: {e}")))?
    else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(|e| invalid(format!("pax header: {e}")))?;
        let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let keep = (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
            || name == b"security.capability";
        if !keep {
            report.skipped_xattrs += 1;
            continue;
        }
        let name =
            CString::new(name.to_vec()).map_err(|_| invalid("a NUL byte in an xattr name"))?;
        out.push((name, ext.value_bytes().to_vec()));
    }
    Ok(out)
}

/// Owner, then mode (chown clears setuid), then attributes (security.capability last:
/// chown clears it too).
fn own(fd: &OwnedFd, uid: u32, gid: u32, mode: u32, xattrs: &[(CString, Vec<u8>)]) -> Result<()> {
    nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()))
        .map_err(|e| invalid(format!("chown {uid}:{gid}: {}", e.desc())))?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
        .map_err(|e| invalid(format!("chmod {mode:o}: {}", e.desc())))?;
    for (name, value) in xattrs {
        set_xattr_c(fd, name, value).map_err(|e| {
            invalid(format!(
                "set xattr {}: {}",
                name.to_string_lossy(),
                e.desc()
            ))
        })?;
    }
    Ok(())
}

fn set_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> std::result::Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    set_xattr_c(fd, &name, value)
}

fn set_xattr_c(fd: &OwnedFd, name: &CString, value: &[u8]) -> std::result::Result<(), Errno> {
    // SAFETY: valid descriptor, NUL-terminated name, value pointer and length match.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Sets atime and mtime (best effort: a time the filesystem refuses is no reason to
/// fail a layer). With `name`, of that entry in `fd`.
fn set_times(fd: &OwnedFd, name: Option<&CString>, secs: i64, nsecs: i64, nofollow: bool) {
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: nsecs,
    };
    let times = [ts, ts];
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    let path = name.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: the descriptor is valid; path is null (the fd itself) or NUL-terminated.
    unsafe { libc::utimensat(fd.as_raw_fd(), path, times.as_ptr(), flags) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_kept_inside() {
        let ok = |raw: &str| clean(raw.as_bytes()).unwrap();
        assert_eq!(ok("./"), None);
        assert_eq!(ok("/"), None);
        assert_eq!(ok("a"), Some((PathBuf::new(), b"a".to_vec())));
        assert_eq!(
            ok("/etc/passwd"),
            Some((PathBuf::from("etc"), b"passwd".to_vec()))
        );
        assert_eq!(
            ok("./a//b/./c"),
            Some((PathBuf::from("a/b"), b"c".to_vec()))
        );
        assert_eq!(ok("a/../b"), Some((PathBuf::new(), b"b".to_vec())));
        for bad in ["..", "../x", "a/../../x", "/../etc/passwd", "a/../../"] {
            assert!(clean(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
