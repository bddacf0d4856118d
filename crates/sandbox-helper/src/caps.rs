//! Capabilities and no_new_privs: the launch plan's steps that decide what a process
//! may do as root, and whether exec can ever give it more.
//!
//! The sets: bounding, permitted and effective are the container's; inheritable and
//! ambient are empty (Docker since 20.10.14 and Podman since 4.0: an inheritable set
//! lets a non-root user gain capabilities through a file's inheritable bits,
//! CVE-2022-24769). At exec the kernel recomputes them: root gets the bounding set, any
//! other user nothing, unless a setuid or file-capability binary gives it some, which
//! no_new_privs forbids.

use crate::process::{Plan, Step};
use std::sync::OnceLock;

const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug)]
pub enum CapStep {
    /// Drops from the bounding set every capability up to `last` not in `keep`.
    Bounding {
        keep: u64,
        last: u32,
    },
    /// Keeps permitted capabilities across the setuid that follows.
    KeepCaps,
    /// capset(2), and the ambient set cleared.
    Set {
        effective: u64,
        permitted: u64,
    },
    NoNewPrivs,
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`), read once,
/// before any fork.
pub fn last_cap() -> u32 {
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// The capabilities this helper holds in both its bounding and permitted sets: all a
/// process it starts can get (capset refuses more, and the machine's own sandbox may
/// have withheld some). Read once, before any fork.
fn held() -> u64 {
    static HELD: OnceLock<u64> = OnceLock::new();
    *HELD.get_or_init(|| {
        let mut data = [CapData::default(); 2];
        // SAFETY: capget fills the two words of `data`.
        let rc = unsafe { capget(&mut data) };
        let permitted = if rc == 0 {
            u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32)
        } else {
            u64::MAX
        };
        let mut bounding = 0u64;
        for cap in 0..=last_cap().min(63) {
            // SAFETY: a query.
            if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 1 {
                bounding |= 1 << cap;
            }
        }
        permitted & bounding
    })
}

/// `mask` limited to what can be given (see [`held`]).
fn known(mask: u64) -> u64 {
    mask & held()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One word of each set, as `capget`/`capset` take them (version 3: two words).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's capability sets: raw system call, for the child.
pub(crate) unsafe fn capget(sets: &mut [CapData; 2]) -> libc::c_int {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    libc::syscall(libc::SYS_capget, &mut header, sets.as_mut_ptr()) as libc::c_int
}

/// Sets the calling thread's capability sets: raw system call, for the child.
pub(crate) unsafe fn capset(sets: &[CapData; 2]) -> libc::c_int {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    libc::syscall(libc::SYS_capset, &mut header, sets.as_ptr()) as libc::c_int
}

impl CapStep {
    /// In the child: raw system calls only.
    ///
    /// # Safety
    /// Called between fork and exec; it passes pointers to its own stack.
    pub(crate) unsafe fn apply(&self) -> libc::c_int {
        match self {
            CapStep::Bounding { keep, last } => {
                for cap in 0..=*last {
                    if keep & (1u64 << cap) == 0
                        && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0
                    {
                        return -1;
                    }
                }
                0
            }
            CapStep::KeepCaps => libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            CapStep::Set {
                effective,
                permitted,
            } => {
                let word = |mask: u64, i: u32| (mask >> (32 * i)) as u32;
                let data = [0, 1].map(|i| CapData {
                    effective: word(*effective, i),
                    permitted: word(*permitted, i),
                    inheritable: 0,
                });
                if capset(&data) < 0 {
                    return -1;
                }
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            }
            CapStep::NoNewPrivs => libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        }
    }
}

impl Plan {
    /// The bounding set cut to `caps` (needs CAP_SETPCAP, so before the ids change), and
    /// the permitted set kept across setuid for [`Plan::capabilities`].
    pub fn bounding_set(&mut self, caps: u64) -> &mut Plan {
        let last = last_cap();
        self.push(
            format!(
                "drop capabilities outside {:#x} from the bounding set",
                known(caps)
            ),
            Step::Caps(CapStep::Bounding {
                keep: known(caps),
                last,
            }),
        );
        self.push(
            "keep capabilities across setuid",
            Step::Caps(CapStep::KeepCaps),
        )
    }

    /// Permitted and effective set to `caps`, inheritable and ambient empty. With a
    /// filter still to load and no no_new_privs, CAP_SYS_ADMIN is kept until exec: the
    /// kernel loads a filter only for a process that has it or no_new_privs, and exec
    /// recomputes the sets from the bounding set (root) or to nothing (anyone else), so
    /// the program never holds it.
    pub fn capabilities(&mut self, caps: u64, filter_without_nnp: bool) -> &mut Plan {
        let mut held = known(caps);
        if filter_without_nnp {
            held |= 1 << CAP_SYS_ADMIN;
        }
        self.push(
            format!("set capabilities {:#x}", known(caps)),
            Step::Caps(CapStep::Set {
                effective: held,
                permitted: held,
            }),
        )
    }

    pub fn no_new_privs(&mut self) -> &mut Plan {
        self.push("set no_new_privs", Step::Caps(CapStep::NoNewPrivs))
    }
}
