//! The container's own mounts (issue 12): binds of host paths and volumes, and tmpfs
//! mounts, made inside its root after the root's own mounts and before pivot_root.
//!
//! * Before fork, [`prepare`] makes every target exist inside the root (a directory,
//!   or an empty file for a file's bind), with the root's links followed inside it
//!   (`container_rootfs`), and seeds a new, empty volume with the root's files at its
//!   target (Docker's copy-up), reading them by descriptor without following a link.
//! * In the child, [`plan`] looks each target up again inside the root (after the
//!   unshare, so the descriptor names the new namespace's mount), binds or mounts onto
//!   it by `/proc/self/fd/N`, then looks it up once more (now the new mount's top) to
//!   remount it read-only or set its propagation. A symlink planted at a target leads
//!   inside the root, never onto a host path.
//! * Under `--userns=auto` a bind (a host path or a volume's data) is an idmapped clone
//!   of its source moved onto the target (`idmap`), so on disk it keeps the ids the
//!   container's root sees as its own (0 is its root), and a tmpfs belongs to the
//!   container's root. Copy-up copies on-disk ids from the root (idmapped the same
//!   way) into the volume, so the container sees the owners the image gave.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use libc::{
    MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED,
    MS_SLAVE,
};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};

use container_protocol::volume::{Propagation, SandboxMount, SandboxMountKind};
use container_rootfs::Root;

use crate::process::{Plan, Slot};
use crate::resources::Userns;
use crate::rootfs::RootfsError;

/// Deeper trees than this are not copied up (a hostile image's trap).
const MAX_DEPTH: usize = 128;

/// Flags a read-only remount keeps from the bind's source (dropping one would loosen
/// the mount).
const KEPT: libc::c_ulong =
    MS_NOSUID | MS_NODEV | MS_NOEXEC | libc::MS_NOATIME | libc::MS_NODIRATIME | libc::MS_RELATIME;

/// Whether a bind's source is a directory (else its target is a file).
fn source_is_dir(source: &str) -> bool {
    std::fs::metadata(source)
        .map(|m| m.is_dir())
        .unwrap_or(true)
}

/// The path as a lookup from the root.
fn relative(target: &str) -> &str {
    let rel = target.trim_start_matches('/');
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

/// Makes every target exist inside `root`, and copies up into empty volumes. Changes
/// only the root and the volumes' data directories.
pub fn prepare(root: &Root, mounts: &[SandboxMount]) -> Result<(), RootfsError> {
    for m in mounts {
        let target = Path::new(&m.target);
        match &m.kind {
            SandboxMountKind::Bind { source, copy_up } => {
                if source_is_dir(source) {
                    if *copy_up {
                        copy_up_into(root, target, Path::new(source))
                            .map_err(|e| RootfsError::CopyUp(m.target.clone(), e))?;
                    }
                    root.mkdir_all(target, 0o755)?;
                } else {
                    root.create_file(target, 0o644)?;
                }
            }
            SandboxMountKind::Tmpfs { .. } | SandboxMountKind::Filesystem { .. } => {
                root.mkdir_all(target, 0o755)?;
            }
        }
    }
    Ok(())
}

/// The mounts as steps of the child's plan; `R` holds the root.
pub(crate) fn plan(
    plan: &mut Plan,
    mounts: &[SandboxMount],
    userns: Option<&Userns>,
) -> Result<(), crate::plan::PlanError> {
    use Slot::{Root as R, Target as T};
    for m in mounts {
        let rel = relative(&m.target);
        let shown = m.target.as_str();
        match &m.kind {
            SandboxMountKind::Bind { source, .. } => {
                let dir = source_is_dir(source);
                plan.resolve(R, rel, dir, T, shown)?;
                match userns {
                    Some(ns) => {
                        plan.idmap_bind_at(Path::new(source), T, shown, &ns.fd)
                            .map_err(|source| crate::plan::PlanError::Io {
                                step: "duplicate user namespace descriptor".into(),
                                source,
                            })?;
                    }
                    None => {
                        plan.mount_at(
                            Some(Path::new(source)),
                            T,
                            shown,
                            None,
                            MS_BIND | MS_REC,
                            None,
                        )?;
                    }
                }
                // Now the bind's top, not the directory under it.
                plan.resolve(R, rel, dir, T, shown)?;
                plan.mount_at(None, T, shown, None, propagation(m.propagation), None)?;
                if m.readonly {
                    let kept = nix::sys::statvfs::statvfs(Path::new(source))
                        .map(|s| s.flags().bits() as libc::c_ulong & KEPT)
                        .unwrap_or(0);
                    plan.mount_at(
                        None,
                        T,
                        shown,
                        None,
                        MS_BIND | MS_REMOUNT | MS_RDONLY | kept,
                        None,
                    )?;
                }
            }
            SandboxMountKind::Tmpfs { options, exec } => {
                let options = format!("{options}{}", tmpfs_owner(userns));
                let mut flags = MS_NOSUID | MS_NODEV;
                if !exec {
                    flags |= MS_NOEXEC;
                }
                if m.readonly {
                    flags |= MS_RDONLY;
                }
                plan.resolve(R, rel, true, T, shown)?.mount_at(
                    Some(Path::new("tmpfs")),
                    T,
                    shown,
                    Some("tmpfs"),
                    flags,
                    Some(&options),
                )?;
            }
            SandboxMountKind::Filesystem {
                fstype,
                device,
                flags,
                data,
            } => {
                // A tmpfs volume under `--userns=auto` is the container's root's, as a
                // `--tmpfs` is; other types are refused there at create.
                let data = match (fstype.as_str(), userns) {
                    ("tmpfs", Some(_)) => format!("{data}{}", tmpfs_owner(userns))
                        .trim_start_matches(',')
                        .to_string(),
                    _ => data.clone(),
                };
                let mut flags = *flags as libc::c_ulong;
                if m.readonly {
                    flags |= MS_RDONLY;
                }
                plan.resolve(R, rel, true, T, shown)?.mount_at(
                    Some(Path::new(device)),
                    T,
                    shown,
                    Some(fstype),
                    flags,
                    (!data.is_empty()).then_some(data.as_str()),
                )?;
            }
        }
    }
    Ok(())
}

/// tmpfs options that give its top directory to the container's root.
pub(crate) fn tmpfs_owner(userns: Option<&Userns>) -> String {
    match userns {
        Some(ns) => format!(",uid={0},gid={0}", ns.range.start),
        None => String::new(),
    }
}

fn propagation(p: Propagation) -> libc::c_ulong {
    match p {
        Propagation::Rprivate => MS_REC | MS_PRIVATE,
        Propagation::Private => MS_PRIVATE,
        Propagation::Rslave => MS_REC | MS_SLAVE,
        Propagation::Slave => MS_SLAVE,
        Propagation::Rshared => MS_REC | MS_SHARED,
        Propagation::Shared => MS_SHARED,
    }
}

/// Whether the container's `/` must stay a slave of the host's mounts (a bind that
/// receives the host's mounts needs its peers).
pub fn needs_host_propagation(mounts: &[SandboxMount]) -> bool {
    mounts
        .iter()
        .any(|m| matches!(m.kind, SandboxMountKind::Bind { .. }) && m.propagation.from_host())
}

/// Seeds `data` (a volume's directory, trusted) with what the root has at `target`,
/// when `data` is empty and the root has a directory there; its owner and mode too.
fn copy_up_into(root: &Root, target: &Path, data: &Path) -> Result<(), String> {
    let empty = std::fs::read_dir(data)
        .map_err(|e| format!("read {}: {e}", data.display()))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let src = match root.open_at(target, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        // Nothing there to copy (or not a directory): the volume stays empty.
        Err(_) => return Ok(()),
    };
    let dst: OwnedFd = nix::fcntl::open(
        data,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", data.display()))?;
    copy_dir(&src, &dst, 0).map_err(|(name, e)| format!("copy {name}: {}", e.desc()))?;
    let st = fstat(&src).map_err(|e| format!("stat: {}", e.desc()))?;
    nix::unistd::fchown(&dst, Some(st.st_uid.into()), Some(st.st_gid.into()))
        .and_then(|_| nix::sys::stat::fchmod(&dst, Mode::from_bits_truncate(st.st_mode & 0o7777)))
        .map_err(|e| format!("set owner and mode of {}: {}", data.display(), e.desc()))
}

type CopyError = (String, Errno);

/// Copies the directory `src` into `dst`, entry by entry, by descriptor and without
/// following a link: directories, regular files, symlinks (devices, fifos and sockets
/// are left out), with owners and modes.
fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: usize) -> Result<(), CopyError> {
    if depth > MAX_DEPTH {
        return Err(("a tree too deep".into(), Errno::ELOOP));
    }
    // The names only, through the descriptor: every entry is then opened relative to it.
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", src.as_raw_fd())).map_err(|e| {
        (
            ".".to_string(),
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| {
            (
                ".".to_string(),
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        names.push(
            std::ffi::CString::new(entry.file_name().into_encoded_bytes())
                .map_err(|_| (".".to_string(), Errno::EINVAL))?,
        );
    }
    for name in names {
        let shown = name.to_string_lossy().into_owned();
        let err = |e: Errno| (shown.clone(), e);
        let st = fstatat(src, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(err)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let owner = (Some(st.st_uid.into()), Some(st.st_gid.into()));
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => {
                nix::sys::stat::mkdirat(dst, name.as_c_str(), Mode::from_bits_truncate(0o700))
                    .map_err(err)?;
                let open = |at: &OwnedFd| {
                    nix::fcntl::openat(
                        at,
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                };
                let (s, d) = (open(src).map_err(err)?, open(dst).map_err(err)?);
                copy_dir(&s, &d, depth + 1)
                    .map_err(|(inner, e)| (format!("{shown}/{inner}"), e))?;
                nix::unistd::fchown(&d, owner.0, owner.1).map_err(err)?;
                nix::sys::stat::fchmod(&d, mode).map_err(err)?;
            }
            SFlag::S_IFREG => {
                let s = nix::fcntl::openat(
                    src,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(err)?;
                let d = nix::fcntl::openat(
                    dst,
                    name.as_c_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(err)?;
                let (mut from, mut to) = (std::fs::File::from(s), std::fs::File::from(d));
                std::io::copy(&mut from, &mut to)
                    .map_err(|e| err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
                // Owner before mode: a chown clears setuid bits.
                nix::unistd::fchown(&to, owner.0, owner.1).map_err(err)?;
                nix::sys::stat::fchmod(&to, mode).map_err(err)?;
            }
            SFlag::S_IFLNK => {
                let link = nix::fcntl::readlinkat(src, name.as_c_str()).map_err(err)?;
                nix::unistd::symlinkat(link.as_os_str(), dst, name.as_c_str()).map_err(err)?;
                nix::unistd::fchownat(
                    dst,
                    name.as_c_str(),
                    owner.0,
                    owner.1,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(err)?;
            }
            _ => {}
        }
    }
    Ok(())
}
