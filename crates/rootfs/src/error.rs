use std::path::PathBuf;

use container_protocol::ErrorKind;
use nix::errno::Errno;

/// Why a path inside a root could not be used. `path` is as the container sees it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel cannot resolve inside a root: nothing would keep the root's links
    /// from reaching the host.
    #[error(
        "{}: this kernel cannot resolve paths inside a root (openat2 with RESOLVE_IN_ROOT needs Linux 5.6 or later): {}",
        root.display(), errno.desc()
    )]
    Unsupported { root: PathBuf, errno: Errno },
    /// The root's contents make the path unusable: a file where a directory must be,
    /// a link loop, a magic link.
    #[error("{}: {}: {reason}", root.display(), path.display())]
    Refused {
        root: PathBuf,
        path: PathBuf,
        reason: String,
    },
    #[error("{}: {}: {step}: {}", root.display(), path.display(), errno.desc())]
    Io {
        root: PathBuf,
        path: PathBuf,
        step: &'static str,
        errno: Errno,
    },
}

impl Error {
    /// A refused root is the caller's input; a missing kernel feature is the host's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unsupported { .. } => ErrorKind::Unavailable,
            Error::Refused { .. } => ErrorKind::Invalid,
            Error::Io {
                errno: Errno::ENOENT | Errno::ENOTDIR,
                ..
            } => ErrorKind::NotFound,
            Error::Io { .. } => ErrorKind::Internal,
        }
    }

    /// The system call's error, where one failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Unsupported { errno, .. } | Error::Io { errno, .. } => Some(*errno),
            Error::Refused { .. } => None,
        }
    }
}
