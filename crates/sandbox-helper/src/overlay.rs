//! An image's root filesystem: overlayfs with the image's layers read-only below and
//! the container's own upper directory. It is only ever mounted in a mount namespace
//! that dies with its user, never on the host's, so a crash leaves nothing mounted:
//!
//! * before fork, a thread of the helper that made a private mount namespace of its
//!   own mounts it, makes the kernel filesystems' directories and the /etc files exist
//!   (writes land in the upper directory) and resolves `-u` against the image's
//!   /etc/passwd and /etc/group; the thread's namespace, and the mount, end with it;
//! * before that namespace ends, the thread takes a detached clone of the mount
//!   (open_tree(OPEN_TREE_CLONE)), which keeps the overlay's superblock alive; the
//!   workload's child moves that clone into its own mount namespace (see
//!   `rootfs::overlay_mounts`) and pivots into it. One superblock per start, not
//!   two: the last unmount of a writable overlay syncs the whole filesystem under
//!   its upper directory (everyone's dirty data on the host), and a second mount
//!   would have paid that for the first one's end, in the start's path;
//! * a container removed when it ends (`--rm`) is mounted `volatile`, so its end
//!   pays no sync either: its changes go with it.
//!
//! The layers are named relative to the store's layer directory (the mount's options
//! must fit in one page), with the mounting thread or child in that directory. The
//! overlay is mounted with `userxattr`: opaque directories are marked
//! `user.overlay.opaque`, which the unpacker may set without CAP_SYS_ADMIN.

use std::os::fd::OwnedFd;
use std::path::Path;

use container_protocol::sandbox::{OverlaySpec, UserSpec};
use container_protocol::volume::SandboxMount;
use container_protocol::RemoteError;
use container_rootfs::Root;

use crate::etc::EtcFiles;
use crate::plan::Credentials;

/// The largest mount data the kernel takes.
const MAX_OPTIONS: usize = 4000;

/// The overlay's mount options.
pub fn options(spec: &OverlaySpec) -> Result<String, RemoteError> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr{}",
        spec.lower.join(":"),
        spec.upper,
        spec.work,
        if spec.volatile { ",volatile" } else { "" }
    );
    let bad = |what: &str| RemoteError::invalid(format!("image rootfs: {what}"));
    for p in spec.lower.iter().chain([&spec.upper, &spec.work]) {
        if p.contains(',') || p.contains(':') && !spec.lower.contains(p) || p.is_empty() {
            return Err(bad(&format!("unusable path {p:?} in the overlay")));
        }
    }
    if data.len() > MAX_OPTIONS {
        return Err(bad(&format!(
            "{} layers do not fit in one overlay mount",
            spec.lower.len()
        )));
    }
    Ok(data)
}

/// What a start takes from `prepare`: the user, and the mounted tree (detached) that
/// the workload's child moves into place.
pub struct Prepared {
    pub user: Credentials,
    pub tree: OwnedFd,
}

/// Makes the merged tree ready and resolves the user in it, in a mount namespace of
/// its own (see the module comment). The helper cannot start a thread once it has
/// unshared its pid namespace (clone refuses CLONE_THREAD then), so the calling thread
/// itself goes into a fresh mount namespace and comes back to the one it left, by
/// descriptor, whatever happens in between.
pub fn prepare(
    spec: &OverlaySpec,
    etc: &EtcFiles,
    user: &UserSpec,
    mounts: &[SandboxMount],
) -> Result<Prepared, RemoteError> {
    let data = options(spec)?;
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| RemoteError::internal(format!("image rootfs: {what}: {e}"))
    };
    let home: OwnedFd = std::fs::File::open("/proc/thread-self/ns/mnt")
        .map_err(sys("open the helper's mount namespace"))?
        .into();
    let cwd: OwnedFd = std::fs::File::open(".")
        .map_err(sys("open the working directory"))?
        .into();
    let result = prepare_here(spec, &data, etc, user, mounts);
    if let Err(e) = nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWNS) {
        // Left in the scratch namespace, the helper would see none of its mounts.
        tracing::error!("image rootfs: back to the helper's mount namespace: {e}; exiting");
        std::process::abort();
    }
    let _ = nix::unistd::fchdir(&cwd);
    result
}

fn prepare_here(
    spec: &OverlaySpec,
    data: &str,
    etc: &EtcFiles,
    user: &UserSpec,
    mounts: &[SandboxMount],
) -> Result<Prepared, RemoteError> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| RemoteError::internal(format!("image rootfs: {what}: {}", e.desc()))
    };
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare mount namespace"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make mounts private"))?;
    nix::unistd::chdir(Path::new(&spec.layers_dir))
        .map_err(sys(&format!("chdir {}", spec.layers_dir)))?;
    let target = Path::new(&spec.target);
    let mounted = mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    );
    if let Err(e) = mounted {
        return Err(refusal(spec, e));
    }
    let result = (|| {
        let root = Root::open(target)
            .map_err(|e| RemoteError::new(e.kind(), format!("image rootfs: {e}")))?;
        crate::rootfs::prepare(&root, etc, mounts)
            .map_err(|e| RemoteError::new(e.kind(), format!("image rootfs: {e}")))?;
        let user = crate::users::resolve(&root, user)
            .map_err(|e| RemoteError::new(e.kind(), e.to_string()))?;
        let tree = crate::idmap::clone_tree(target).map_err(|e| {
            RemoteError::internal(format!("image rootfs: open_tree {}: {e}", spec.target))
        })?;
        Ok(Prepared { user, tree })
    })();
    // With the clone held, this is not the superblock's end: no sync here.
    let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    result
}

/// The overlay mount refused: the words for it.
fn refusal(spec: &OverlaySpec, e: nix::Error) -> RemoteError {
    let volatile_mark = Path::new(&spec.work).join("work/incompat/volatile");
    if spec.volatile && e == nix::Error::EINVAL && volatile_mark.exists() {
        // The kernel leaves this mark at every volatile mount so that a second mount
        // of the same directories, which could follow a crash, is refused.
        return RemoteError::new(
            container_protocol::ErrorKind::Conflict,
            format!(
                "image rootfs: {} was mounted volatile before (a --rm container is started \
                 once); its changes cannot be trusted: remove the container",
                spec.upper
            ),
        );
    }
    RemoteError::internal(format!(
        "image rootfs: mount overlay on {}: {}",
        spec.target,
        e.desc()
    ))
}
