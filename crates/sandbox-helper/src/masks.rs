//! Masked and read-only paths, and a read-only root: the launch plan's steps after the
//! container's mounts, so they cover the container's own /proc and /sys. Each path is
//! looked up when the step runs, inside the new root (or the private copy of the host's
//! mounts), and a path the kernel does not have is skipped, as runc does.

use std::ffi::CString;

use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};

use crate::process::{NulError, Plan, Step};

#[derive(Debug)]
pub enum MaskStep {
    /// A file under /dev/null, a directory under an empty read-only tmpfs.
    Mask(CString),
    /// Bound onto itself, then remounted read-only.
    ReadOnly(CString),
    /// The root filesystem remounted read-only (`--read-only`).
    ReadOnlyRoot,
}

/// Flags a bind's remount must keep: they are the mount's own, and dropping one would
/// loosen it (or fail, where the kernel locks them).
const KEPT: libc::c_ulong =
    MS_NOSUID | MS_NODEV | MS_NOEXEC | libc::MS_NOATIME | libc::MS_NODIRATIME | libc::MS_RELATIME;

/// Remounts the bind at `path` read-only with the flags it already has.
unsafe fn remount_read_only(path: *const libc::c_char) -> libc::c_int {
    let mut st: libc::statvfs = std::mem::zeroed();
    if libc::statvfs(path, &mut st) < 0 {
        return -1;
    }
    // statvfs's ST_* flags have MS_*'s values.
    let kept = st.f_flag as libc::c_ulong & KEPT;
    libc::mount(
        std::ptr::null(),
        path,
        std::ptr::null(),
        MS_BIND | MS_REMOUNT | MS_RDONLY | kept,
        std::ptr::null(),
    )
}

/// What is at `path`: `None` when there is nothing to mask (missing, or a path through
/// a file).
unsafe fn kind(path: *const libc::c_char) -> Result<Option<libc::mode_t>, ()> {
    let mut st: libc::stat = std::mem::zeroed();
    if libc::stat(path, &mut st) == 0 {
        return Ok(Some(st.st_mode & libc::S_IFMT));
    }
    match *libc::__errno_location() {
        libc::ENOENT | libc::ENOTDIR => Ok(None),
        _ => Err(()),
    }
}

impl MaskStep {
    /// # Safety
    /// Called between fork and exec: raw system calls on strings the plan owns.
    pub(crate) unsafe fn apply(&self) -> libc::c_int {
        match self {
            MaskStep::Mask(path) => match kind(path.as_ptr()) {
                Err(()) => -1,
                Ok(None) => 0,
                Ok(Some(libc::S_IFDIR)) => libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    c"size=0".as_ptr().cast(),
                ),
                Ok(Some(_)) => libc::mount(
                    c"/dev/null".as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    MS_BIND,
                    std::ptr::null(),
                ),
            },
            MaskStep::ReadOnly(path) => match kind(path.as_ptr()) {
                Err(()) => -1,
                Ok(None) => 0,
                Ok(Some(_)) => {
                    if libc::mount(
                        path.as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        MS_BIND | MS_REC,
                        std::ptr::null(),
                    ) < 0
                    {
                        return -1;
                    }
                    remount_read_only(path.as_ptr())
                }
            },
            MaskStep::ReadOnlyRoot => remount_read_only(c"/".as_ptr()),
        }
    }
}

fn cpath(what: &'static str, path: &str) -> Result<CString, NulError> {
    crate::process::cstr(what, path.as_bytes())
}

impl Plan {
    pub fn mask_path(&mut self, path: &str) -> Result<&mut Plan, NulError> {
        let step = Step::Mask(MaskStep::Mask(cpath("masked path", path)?));
        Ok(self.push(format!("mask {path}"), step))
    }

    pub fn readonly_path(&mut self, path: &str) -> Result<&mut Plan, NulError> {
        let step = Step::Mask(MaskStep::ReadOnly(cpath("read-only path", path)?));
        Ok(self.push(format!("make {path} read-only"), step))
    }

    pub fn readonly_root(&mut self) -> &mut Plan {
        self.push(
            "remount the root filesystem read-only",
            Step::Mask(MaskStep::ReadOnlyRoot),
        )
    }
}
