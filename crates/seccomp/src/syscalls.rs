//! System call names: libseccomp's tables, and the calls newer than the libseccomp this
//! is built with (Debian 12's 2.5.4 knows up to `futex_requeue`, 456).
//!
//! Since Linux 5.1 a new system call has one number on every architecture (x32 adds
//! its bit), so one number per name covers both machines this runtime runs on.

use libseccomp::ScmpSyscall;

/// Calls after `futex_requeue` (456), from the kernel's syscall tables (6.8 to 6.17).
pub const NEWER: [(&str, i32); 13] = [
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// How a name is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// libseccomp knows it (on some architecture): it translates it per architecture.
    Known(ScmpSyscall),
    /// Newer than libseccomp: this number, on the machine's own architecture only.
    Newer(i32),
}

pub fn resolve(name: &str) -> Option<Syscall> {
    if let Ok(s) = ScmpSyscall::from_name(name) {
        return Some(Syscall::Known(s));
    }
    NEWER
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| Syscall::Newer(*nr))
}

pub fn known(name: &str) -> bool {
    resolve(name).is_some()
}
