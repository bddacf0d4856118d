//! The workload's pseudo-terminal.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// A new pty pair, both ends close-on-exec: the slave reaches the workload only as its
/// stdio, the master only the caller (and the helper's copy, for resizing).
pub fn open() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let pty = nix::pty::openpty(None, None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((pty.master, pty.slave))
}

/// Sets the terminal size; the kernel sends SIGWINCH to the foreground process group.
pub fn resize(master: impl AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a pointer that outlives the call.
    let rc = unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where a container's own devpts keeps its multiplexer, inside its root.
pub const PTMX: &str = "/dev/pts/ptmx";

/// A new pty pair from the container's own devpts instance (the `ptmx` under `root`,
/// the running container's root), so that inside the container the slave has a name
/// (`tty`, `ttyname()` work).
///
/// The container owns every path under its root, and the helper is host root: `ptmx`
/// is looked up inside the root (a link there cannot lead to a host file), opened
/// first without touching it (`O_PATH`), and opened for real only once it is a devpts
/// multiplexer. The slave comes from the master by `TIOCGPTPEER`, never by a path.
pub fn open_in(root: &container_rootfs::Root) -> Result<(OwnedFd, OwnedFd), PtyError> {
    use nix::fcntl::OFlag;
    let path = std::path::Path::new(PTMX);
    let found = root.open_at(path, OFlag::O_PATH)?;
    let st = nix::sys::stat::fstat(&found).map_err(PtyError::sys("stat"))?;
    let fs = nix::sys::statfs::fstatfs(&found).map_err(PtyError::sys("statfs"))?;
    let is_char = nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
        & nix::sys::stat::SFlag::S_IFMT
        == nix::sys::stat::SFlag::S_IFCHR;
    // The multiplexer is character device 5:2, and a devpts instance's own is on it.
    let ptmx = is_char
        && nix::sys::stat::major(st.st_rdev) == 5
        && nix::sys::stat::minor(st.st_rdev) == 2
        && fs.filesystem_type() == nix::sys::statfs::DEVPTS_SUPER_MAGIC;
    if !ptmx {
        return Err(PtyError::NotPtmx);
    }
    let master = container_rootfs::reopen(found.as_fd(), OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(PtyError::sys("open"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int; TIOCGPTPEER returns a new descriptor.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(PtyError::sys("unlock")(nix::errno::Errno::last()));
    }
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(PtyError::sys("open the slave")(nix::errno::Errno::last()));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok((master, unsafe {
        std::os::fd::FromRawFd::from_raw_fd(slave)
    }))
}

/// Why the container's terminal could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error(transparent)]
    Path(#[from] container_rootfs::Error),
    #[error("{PTMX} is not a devpts multiplexer (the container replaced it)")]
    NotPtmx,
    #[error("{PTMX}: {step}: {}", errno.desc())]
    Sys {
        step: &'static str,
        errno: nix::errno::Errno,
    },
}

impl PtyError {
    fn sys(step: &'static str) -> impl Fn(nix::errno::Errno) -> PtyError {
        move |errno| PtyError::Sys { step, errno }
    }

    /// What the container did to its own /dev is its business: invalid, not ours.
    pub fn kind(&self) -> container_protocol::ErrorKind {
        match self {
            PtyError::Path(e) => e.kind(),
            PtyError::NotPtmx => container_protocol::ErrorKind::Invalid,
            PtyError::Sys { .. } => container_protocol::ErrorKind::Internal,
        }
    }
}
