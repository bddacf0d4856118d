//! IPv6 turned off on one interface, for links that carry no IPv6 address.
//!
//! An interface with IPv6 on makes a link-local address as it comes up, and with it
//! sends a neighbour solicitation (duplicate address detection), MLD reports and
//! router solicitations, the last again and again while no router answers. On a
//! bridge every one of those is flooded to every port, and each container's stack
//! then handles its copy: with N containers each start costs O(N) in softirq, and the
//! whole host pays again for each retried solicitation. A port of a bridge needs no
//! address of its own, nor does a container interface given only IPv4, so those turn
//! IPv6 off before they come up (Docker does the same in a container whose networks
//! have no IPv6).
//!
//! There is no rtnetlink request for it: `disable_ipv6` is a sysctl, and a
//! `/proc/sys/net` file belongs to the namespace of the thread that opens it. It is
//! opened through a procfs instance of its own, not the host's `/proc`: there the
//! dentries of `/proc/sys/net/*` are kept per namespace under one parent, so every
//! lookup compares against one entry for each namespace that ever looked (with 1,000
//! containers, the first cost a few milliseconds a start). A new instance has none.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::netns::{with_netns, NetNs};
use crate::{Error, Result};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;

/// Turns IPv6 off on link `ifname` of `ns`. A kernel without IPv6 has nothing to turn
/// off.
pub fn disable_ipv6(ns: &NetNs, ifname: &str) -> Result<()> {
    crate::valid_ifname(ifname)?;
    let failed = |step: &str, source: io::Error| Error::Os {
        object: format!("link {ifname} in {}", ns.label()),
        step: format!("turn IPv6 off (disable_ipv6): {step}"),
        source,
    };
    let proc = private_proc().map_err(|e| failed("mount a procfs instance", e))?;
    let path = CString::new(format!("sys/net/ipv6/conf/{ifname}/disable_ipv6"))
        .map_err(|e| failed("path", io::Error::other(e)))?;
    let written = with_netns(ns, || write_at(&proc, &path, b"1"))?;
    match written {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !has_ipv6(&proc) => Ok(()),
        other => other.map_err(|e| failed("write", e)),
    }
}

/// A procfs mounted nowhere: `fsopen` + `fsmount` give a mount held only by the
/// descriptor, gone with it, so nothing joins the mount table that workloads copy.
fn private_proc() -> io::Result<OwnedFd> {
    // SAFETY: fsopen with a NUL-terminated name; the result is checked before use.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as libc::c_int) };
    // SAFETY: fsconfig's CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: fsmount of a created context; the result is checked before use.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as libc::c_int) })
}

fn write_at(dir: &OwnedFd, path: &CString, value: &[u8]) -> io::Result<()> {
    // SAFETY: openat relative to a directory descriptor we hold, NUL-terminated path.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    io::Write::write_all(&mut &file, value)
}

/// Whether the kernel has IPv6 at all (`ipv6.disable=1` leaves no `net/ipv6`).
fn has_ipv6(proc: &OwnedFd) -> bool {
    // SAFETY: faccessat relative to a directory descriptor we hold.
    unsafe { libc::faccessat(proc.as_raw_fd(), c"sys/net/ipv6".as_ptr(), libc::F_OK, 0) == 0 }
}
