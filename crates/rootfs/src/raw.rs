//! The system calls behind [`Root`](crate::Root), in a form that a forked child may
//! call between fork and exec: no allocation, no locks, only raw descriptors and
//! C strings prepared beforehand.

use std::ffi::CStr;
use std::os::fd::RawFd;

/// How every path inside a root is resolved: `..` and absolute symlinks stop at the
/// root, and magic links (`/proc/<pid>/root`, `/proc/self/fd/N`), which would jump
/// anywhere, are refused with `ELOOP`.
pub const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// Stricter: no symlink at all on the way (`ELOOP`), and no crossing into another
/// mount (`EXDEV`). For writing content that must land where its name says, such as
/// a layer being unpacked.
pub const RESOLVE_STRICT: u64 = RESOLVE | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;

/// `openat2(root, path, flags, RESOLVE)`: the new descriptor (always `O_CLOEXEC`), owned
/// by the caller, or the errno. Retries by itself where the kernel asks for it.
pub fn open_in_root(root: RawFd, path: &CStr, flags: libc::c_int) -> Result<RawFd, i32> {
    open_in_root_with(root, path, flags, RESOLVE)
}

/// [`open_in_root`] with other `RESOLVE_*` flags ([`RESOLVE`] or [`RESOLVE_STRICT`]).
pub fn open_in_root_with(
    root: RawFd,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> Result<RawFd, i32> {
    // SAFETY: open_how is plain data; all zeros is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` lives across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            return Ok(rc as RawFd);
        }
        // SAFETY: reading errno right after the failed call.
        let errno = unsafe { *libc::__errno_location() };
        // A rename or mount raced with the walk of `..`: the kernel asks us to retry.
        if errno != libc::EAGAIN && errno != libc::EINTR {
            return Err(errno);
        }
    }
}

/// `/proc/self/fd/<fd>`, written into `buf` without allocating: the path through which
/// `mount(2)`, which takes no descriptor, reaches what `fd` refers to.
pub fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> &CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
    // The buffer holds one NUL, at the end of what was written.
    CStr::from_bytes_with_nul(&buf[..PREFIX.len() + len + 1]).unwrap_or(c"/proc/self/fd/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths_are_written_in_place() {
        let mut buf = [0u8; 32];
        assert_eq!(fd_path(0, &mut buf), c"/proc/self/fd/0");
        assert_eq!(fd_path(7, &mut buf), c"/proc/self/fd/7");
        assert_eq!(fd_path(1024, &mut buf), c"/proc/self/fd/1024");
        assert_eq!(fd_path(i32::MAX, &mut buf), c"/proc/self/fd/2147483647");
    }
}
