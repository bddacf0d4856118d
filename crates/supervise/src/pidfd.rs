//! A process descriptor (`pidfd_open`): unlike a pid it can't come to name another
//! process, so "is this helper alive" and "kill this helper" stay true after the pid is
//! reused, and its exit can be awaited even when it is not our child.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

#[derive(Debug)]
pub struct Pidfd {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
}

impl Pidfd {
    /// Opens the process `pid`. Fails when no such process exists.
    pub fn open(pid: u32) -> std::io::Result<Pidfd> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        // SAFETY: the descriptor is owned by the AsyncFd and lives exactly as long as
        // its registration; nothing else holds it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        Ok(Pidfd { pid, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A pidfd polls readable once its process has exited (zombie or reaped).
    pub fn is_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, zero timeout.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        !(rc > 0 && pfd.revents & libc::POLLIN != 0)
    }

    /// Resolves when the process has exited.
    pub async fn exited(&self) {
        loop {
            if !self.is_alive() {
                return;
            }
            match self.fd.readable().await {
                Ok(mut guard) => {
                    if !self.is_alive() {
                        return;
                    }
                    guard.clear_ready();
                }
                Err(_) => return,
            }
        }
    }

    /// Waits at most `within` for the exit; `true` if it happened.
    pub async fn exited_within(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.exited()).await.is_ok()
    }

    /// Sends `signal` to the process itself (never to whoever has its pid later).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal with no siginfo and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// SIGKILLs the helper and its process group (helpers lead their own session, so
    /// the group is theirs: the workload and anything exec'd into the sandbox). The
    /// group is signalled only while the leader lives, when its pid can't be reused.
    pub fn kill_group(&self) -> std::io::Result<()> {
        if self.is_alive() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.signal(libc::SIGKILL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tells_a_live_process_from_an_exited_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pidfd = Pidfd::open(child.id()).expect("pidfd");
        assert!(pidfd.is_alive());
        assert!(!pidfd.exited_within(Duration::from_millis(50)).await);
        pidfd.signal(libc::SIGSTOP).unwrap();
        assert!(pidfd.is_alive(), "a stopped process is alive");
        pidfd
            .kill_group()
            .unwrap_or_else(|_| pidfd.signal(libc::SIGKILL).unwrap());
        assert!(pidfd.exited_within(Duration::from_secs(20)).await);
        assert!(!pidfd.is_alive(), "exited, even before it is reaped");
        let _ = child.wait();
        assert!(Pidfd::open(u32::MAX).is_err());
    }
}
