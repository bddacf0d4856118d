//! Starting a helper's process with `posix_spawn`, not fork.
//!
//! The apiserver holds a descriptor or three per container and tens of MB mapped. A
//! fork copies its page tables and descriptor table, and its pages turn copy-on-write
//! until the child execs. glibc's `posix_spawn` runs the child on the parent's memory
//! until its exec (`CLONE_VM | CLONE_VFORK`), so none of that is copied. It takes
//! everything a helper needs as attributes: its own session, a clean signal mask, and
//! its descriptors placed by file actions, so no code runs between clone and exec.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;

/// What a helper's process gets: its program, arguments, one extra environment
/// variable, its output and the descriptor it finds as fd 3.
pub struct Launch<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    pub env: (&'a str, &'a str),
    pub output: BorrowedFd<'a>,
    pub fd3: BorrowedFd<'a>,
}

/// Descriptors at or above this are never a target of the file actions below, so a
/// source can't be overwritten by an earlier action (an apiserver started with fd 1
/// closed gets its log opened as 1).
const SAFE_FD: i32 = 10;

impl Launch<'_> {
    /// Starts the process and returns its pid. It is our child and stays unreaped until
    /// the caller waits for it, so the pid names it until then.
    pub fn spawn(&self) -> io::Result<u32> {
        let output = lift(self.output)?;
        let fd3 = lift(self.fd3)?;

        let mut actions = PosixSpawnFileActions::init()?;
        actions.add_open(
            0,
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // dup2 clears close-on-exec on its target, so these four are the only
        // descriptors the helper inherits.
        actions.add_dup2(output.as_raw_fd(), 1)?;
        actions.add_dup2(output.as_raw_fd(), 2)?;
        actions.add_dup2(fd3.as_raw_fd(), 3)?;

        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        // The apiserver ignores SIGPIPE, as every Rust program does; ignored signals
        // survive exec, and a helper's workload must not inherit that.
        let mut defaults = SigSet::empty();
        defaults.add(Signal::SIGPIPE);
        attr.set_sigdefault(&defaults)?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
                // Its own session: not signalled with the apiserver's terminal or
                // process group, and the leader of the group that kill_group kills.
                | PosixSpawnFlags::from_bits_retain(libc::POSIX_SPAWN_SETSID as libc::c_int),
        )?;

        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(cstring(self.program.as_os_str())?);
        for arg in self.args {
            argv.push(cstring(arg)?);
        }
        let (key, value) = self.env;
        let mut envp: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k.as_bytes() != key.as_bytes())
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect::<io::Result<_>>()?;
        envp.push(cstring(OsStr::new(&format!("{key}={value}")))?);

        let pid = posix_spawn(self.program, &actions, &attr, &argv, &envp)?;
        Ok(pid.as_raw() as u32)
    }
}

/// A close-on-exec copy of `fd` numbered at least [`SAFE_FD`].
fn lift(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(SAFE_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", s.to_string_lossy()),
        )
    })
}

/// Reaps the child once its pidfd says it has exited, and returns how it ended (in
/// std's words: `exit status: 0`, `signal: 9 (SIGKILL)`).
pub async fn reap(pidfd: &crate::Pidfd) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    pidfd.exited().await;
    let mut status = 0;
    // SAFETY: waitpid on our own child, writing its status into a local.
    match unsafe { libc::waitpid(pidfd.pid() as libc::pid_t, &mut status, libc::WNOHANG) } {
        // A pidfd polls readable only once its process has exited.
        0 => Err(io::Error::other("alive after its pidfd said it exited")),
        rc if rc < 0 => Err(io::Error::last_os_error()),
        _ => Ok(std::process::ExitStatus::from_raw(status)),
    }
}

/// Kills and reaps a child we could not watch. Only for our own unreaped child, whose
/// pid can't name another process.
pub fn kill_and_reap(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn the_child_gets_its_session_descriptors_and_environment() {
        let (mut read, write) = std::io::pipe().unwrap();
        let (fd3_read, fd3) = std::io::pipe().unwrap();
        // Field 6 of stat is the session: a session leader's is its own pid.
        let script = "set -- $(cat /proc/$$/stat); test \"$6\" -eq $$ && echo session; \
             echo \"$LAUNCH_TEST\"; \
             echo three >&3; \
             grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status && echo unblocked";
        let args = [OsString::from("-c"), OsString::from(script)];
        // Blocked here, so a child that inherited our mask would show it.
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        blocked.thread_block().unwrap();
        let pid = Launch {
            program: Path::new("/bin/sh"),
            args: &args,
            env: ("LAUNCH_TEST", "here"),
            output: write.as_fd(),
            fd3: fd3.as_fd(),
        }
        .spawn()
        .unwrap();
        blocked.thread_unblock().unwrap();
        drop((write, fd3));
        let pidfd = crate::Pidfd::open(pid).unwrap();
        let status = reap(&pidfd).await.unwrap();
        assert_eq!(status.code(), Some(0));
        let mut out = String::new();
        read.read_to_string(&mut out).unwrap();
        assert_eq!(out, "session\nhere\nunblocked\n");
        let mut three = String::new();
        let mut fd3_read = fd3_read;
        fd3_read.read_to_string(&mut three).unwrap();
        assert_eq!(three, "three\n");
    }

    #[test]
    fn a_missing_program_fails_the_spawn() {
        let (_r, w) = std::io::pipe().unwrap();
        let err = Launch {
            program: Path::new("/nonexistent/helper"),
            args: &[],
            env: ("A", "b"),
            output: w.as_fd(),
            fd3: w.as_fd(),
        }
        .spawn()
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
