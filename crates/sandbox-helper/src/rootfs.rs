//! The workload's filesystem: what its child mounts (steps of the launch plan) and what
//! the helper makes ready in a root filesystem before fork.

use std::path::{Path, PathBuf};

use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_STRICTATIME};

use container_protocol::security::Confinement;

use crate::etc::EtcFiles;
use crate::process::{Plan, Slot};
use crate::resources::Userns;
use container_rootfs::Root;

/// Device nodes bind-mounted from the host into a rootfs's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// No rootfs: the host's files, with the container's own /proc and /etc files.
/// Targets missing on the host are skipped rather than created there.
pub(crate) fn host_mounts(
    plan: &mut Plan,
    etc: &EtcFiles,
    masked: &[PathBuf],
) -> Result<(), crate::process::NulError> {
    plan.mount(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    for (file, name) in etc.mounts() {
        let target = Path::new("/etc").join(name);
        if target.exists() {
            plan.mount(Some(file), &target, None, MS_BIND, None)?;
        }
    }
    // After the /etc binds: their sources live under the runtime's root.
    for dir in masked.iter().filter(|d| d.is_dir()) {
        plan.mount(
            Some(Path::new("tmpfs")),
            dir,
            Some("tmpfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// The directories the kernel's filesystems go on. A symlink there is refused, as runc
/// refuses one for proc and sysfs: the container's /proc must be at /proc for every
/// tool in it, and a link is a broken or hostile root filesystem.
pub const KERNEL_DIRS: [&str; 3] = ["proc", "sys", "dev"];

/// Makes the root filesystem ready for [`rootfs_mounts`], before fork (the child may
/// not allocate): the kernel filesystems' directories exist and are no links, and the
/// generated /etc files have something to go onto. Links are followed inside the root
/// (see `container_rootfs`), so nothing is created outside it. Changes only the root.
pub fn prepare(
    root: &Root,
    etc: &EtcFiles,
    mounts: &[container_protocol::volume::SandboxMount],
) -> Result<(), RootfsError> {
    for dir in KERNEL_DIRS {
        let path = Path::new(dir);
        if root.kind(path)? == Some(container_rootfs::FileKind::Symlink) {
            let to = std::fs::read_link(root.label().join(dir))
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(RootfsError::KernelDirLink {
                root: root.label().to_path_buf(),
                dir,
                to,
            });
        }
        root.mkdir_all(path, 0o755)?;
    }
    for (_, name) in etc.mounts() {
        root.create_file(&Path::new("etc").join(name), 0o644)?;
    }
    crate::mounts::prepare(root, mounts)
}

/// Why a root filesystem is refused.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{}: /{dir} is a symlink{to}: it must be a directory, where the container's /{dir} is mounted", root.display())]
    KernelDirLink {
        root: PathBuf,
        dir: &'static str,
        to: String,
    },
    #[error(transparent)]
    Path(#[from] container_rootfs::Error),
    #[error("volume at {0}: copy the root's files into it: {1}")]
    CopyUp(String, String),
}

impl RootfsError {
    pub fn kind(&self) -> container_protocol::ErrorKind {
        match self {
            RootfsError::KernelDirLink { .. } => container_protocol::ErrorKind::Invalid,
            RootfsError::Path(e) => e.kind(),
            RootfsError::CopyUp(..) => container_protocol::ErrorKind::Internal,
        }
    }
}

/// A rootfs: itself bind-mounted (pivot_root wants a mount point), /proc, read-only
/// /sys, a minimal /dev, the generated /etc files, then pivot_root. Every target is
/// looked up by the child, after its unshare, inside the root (see [`Slot`]), and
/// everything in /dev is made relative to the fresh tmpfs, by descriptor.
pub(crate) fn rootfs_mounts(
    plan: &mut Plan,
    rootfs: &Path,
    etc: &EtcFiles,
    confinement: &Confinement,
    userns: Option<&Userns>,
    mounts: &[container_protocol::volume::SandboxMount],
) -> Result<(), crate::plan::PlanError> {
    match userns {
        // `--userns=auto`: the root's files seen through the container's id mapping
        // (issue 10), instead of a chowned copy.
        Some(ns) => {
            plan.idmap_bind(rootfs, &ns.fd)
                .map_err(|source| crate::plan::PlanError::Io {
                    step: "duplicate user namespace descriptor".into(),
                    source,
                })?;
        }
        None => {
            plan.mount(Some(rootfs), rootfs, None, MS_BIND | MS_REC, None)?;
        }
    }
    mounts_in_root(plan, rootfs, etc, confinement, userns, mounts)
}

/// An image: the overlay `overlay::prepare` mounted, moved (a detached clone, `tree`)
/// onto the container's empty mount point, then used as a rootfs. Under
/// `--userns=auto` the child mounts it anew from idmapped layers
/// (`idmap::IdmappedOverlay`), and there is no `tree`.
pub(crate) fn overlay_mounts(
    plan: &mut Plan,
    spec: &container_protocol::sandbox::OverlaySpec,
    tree: Option<&std::os::fd::OwnedFd>,
    etc: &EtcFiles,
    confinement: &Confinement,
    userns: Option<&Userns>,
    mounts: &[container_protocol::volume::SandboxMount],
) -> Result<(), crate::plan::PlanError> {
    let target = Path::new(&spec.target);
    match userns {
        Some(ns) => {
            plan.idmap_overlay(idmapped_overlay(spec, ns)?);
        }
        None => {
            let tree = tree.ok_or_else(|| {
                crate::plan::PlanError::Other("image rootfs: no prepared overlay".into())
            })?;
            plan.move_mount(tree, target)
                .map_err(|source| crate::plan::PlanError::Io {
                    step: "duplicate the overlay's descriptor".into(),
                    source,
                })?;
        }
    }
    mounts_in_root(plan, target, etc, confinement, userns, mounts)
}

/// The overlay's paths as the idmapped mount wants them: upper and work by name in
/// the one directory that holds both.
fn idmapped_overlay(
    spec: &container_protocol::sandbox::OverlaySpec,
    ns: &Userns,
) -> Result<crate::idmap::IdmappedOverlay, crate::plan::PlanError> {
    use crate::plan::PlanError;
    let (upper, work) = (Path::new(&spec.upper), Path::new(&spec.work));
    let dir = upper.parent().filter(|d| Some(*d) == work.parent());
    let (Some(dir), Some(up), Some(wk)) = (dir, upper.file_name(), work.file_name()) else {
        return Err(PlanError::Other(format!(
            "image rootfs: upper {} and work {} must be in one directory",
            spec.upper, spec.work
        )));
    };
    let c = |what: &'static str, b: &[u8]| crate::process::cstr(what, b);
    Ok(crate::idmap::IdmappedOverlay {
        layers: c("path", spec.layers_dir.as_bytes())?,
        lower: spec
            .lower
            .iter()
            .map(|l| c("layer", l.as_bytes()))
            .collect::<Result<_, _>>()?,
        dir: c("path", dir.as_os_str().as_encoded_bytes())?,
        upper: c("path", up.as_encoded_bytes())?,
        work: c("path", wk.as_encoded_bytes())?,
        target: c("path", spec.target.as_bytes())?,
        userns: ns.fd.try_clone().map_err(|source| PlanError::Io {
            step: "duplicate user namespace descriptor".into(),
            source,
        })?,
        owner: ns.range.start,
    })
}

/// What goes inside a root that is a mount point already: the kernel filesystems,
/// /dev, the /etc files, the container's own mounts (`mounts.rs`), then pivot_root.
fn mounts_in_root(
    plan: &mut Plan,
    rootfs: &Path,
    etc: &EtcFiles,
    confinement: &Confinement,
    userns: Option<&Userns>,
    mounts: &[container_protocol::volume::SandboxMount],
) -> Result<(), crate::plan::PlanError> {
    use Slot::{Dev, Root as R, Target as T};
    plan.open_dir(rootfs, R)?;
    // Read-only unless --privileged, as Docker mounts it.
    let sys_ro = if confinement.writable_sysfs {
        0
    } else {
        MS_RDONLY
    };
    // Under `--userns=auto`, /dev/shm is the container's root's, as in Docker.
    let shm = format!(
        "mode=1777,size={}{}",
        confinement.shm_size,
        crate::mounts::tmpfs_owner(userns)
    );
    let kernel: [(&str, &str, libc::c_ulong, Option<&str>); 3] = [
        ("proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        (
            "sys",
            "sysfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | sys_ro,
            None,
        ),
        (
            "dev",
            "tmpfs",
            MS_NOSUID | MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    ];
    for (dir, fstype, flags, data) in kernel {
        let shown = format!("/{dir}");
        plan.resolve(R, dir, true, T, &shown)?.mount_at(
            Some(Path::new(fstype)),
            T,
            &shown,
            Some(fstype),
            flags,
            data,
        )?;
    }
    // The tmpfs just mounted, not the directory under it.
    plan.resolve(R, "dev", true, Dev, "/dev")?;
    for name in DEVICES {
        let shown = format!("/dev/{name}");
        let host = Path::new("/dev").join(name);
        plan.create_at(Dev, name, &shown)?
            .resolve(Dev, name, false, T, &shown)?
            .mount_at(Some(&host), T, &shown, None, MS_BIND, None)?;
    }
    plan.mkdir_at(Dev, "pts", "/dev/pts")?
        .resolve(Dev, "pts", true, T, "/dev/pts")?
        .mount_at(
            Some(Path::new("devpts")),
            T,
            "/dev/pts",
            Some("devpts"),
            MS_NOSUID | MS_NOEXEC,
            // A devpts of its own: the host's ptys are not the container's.
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )?;
    plan.symlink_at("pts/ptmx", Dev, "ptmx", "/dev/ptmx")?;
    plan.mkdir_at(Dev, "shm", "/dev/shm")?
        .resolve(Dev, "shm", true, T, "/dev/shm")?
        .mount_at(
            Some(Path::new("shm")),
            T,
            "/dev/shm",
            Some("tmpfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            Some(&shm),
        )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        plan.symlink_at(target, Dev, link, &format!("/dev/{link}"))?;
    }
    plan.close(Dev);
    // Last: a link to somewhere a kernel filesystem now covers fails loudly here
    // rather than binding onto a file the container cannot see.
    for (file, name) in etc.mounts() {
        let shown = format!("/etc/{name}");
        plan.resolve(R, &format!("etc/{name}"), false, T, &shown)?
            .mount_at(Some(file), T, &shown, None, MS_BIND, None)?;
    }
    // After the root's own: a volume may go onto /dev/shm or over an /etc file, as
    // Docker lets it.
    crate::mounts::plan(plan, mounts, userns)?;
    plan.close(T)
        .fchdir(R, &rootfs.display().to_string())
        .close(R);
    plan.pivot_root(rootfs).chdir(Path::new("/"))?;
    Ok(())
}
