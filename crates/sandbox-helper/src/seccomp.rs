//! Loading a seccomp filter, the launch plan's last step: the apiserver compiled the
//! program (see `container-seccomp`); the child only hands it to the kernel.

use container_protocol::security::SeccompProgram;

use crate::process::{Plan, Step};

/// A program as the kernel takes it, laid out before fork.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_uint,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Filter({} instructions, flags {:#x})",
            self.program.len(),
            self.flags
        )
    }
}

impl Filter {
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// # Safety
    /// Called between fork and exec; the program outlives the call.
    pub(crate) unsafe fn apply(&self) -> libc::c_int {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            self.flags,
            &prog as *const libc::sock_fprog,
        ) as libc::c_int
    }
}

/// Why a program cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("seccomp program of {0} bytes is not a whole number of 8-byte instructions, or longer than the kernel's 4096")]
pub struct BadProgram(usize);

impl Plan {
    /// Loads `program`. Last: every system call after it goes through the filter, and
    /// the exec that follows must be allowed by it.
    pub fn seccomp(&mut self, program: &SeccompProgram) -> Result<&mut Plan, BadProgram> {
        let bytes = &program.filter;
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > 4096 {
            return Err(BadProgram(bytes.len()));
        }
        let program_words = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect::<Vec<_>>();
        let filter = Filter {
            program: program_words,
            flags: program.flags,
        };
        Ok(self.push(
            format!("load seccomp filter ({} instructions)", filter.len()),
            Step::Seccomp(filter),
        ))
    }
}
