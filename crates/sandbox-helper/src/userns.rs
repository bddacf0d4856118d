//! `--userns=auto`: the container's user namespace, made when the helper starts.
//!
//! It must exist before the workload's child does (its root filesystem is an idmapped
//! mount through it, made by that child), and it cannot be made by the helper itself
//! (`unshare(CLONE_NEWUSER)` would move the helper into it) nor by a child forked
//! later (that child would be PID 1 of the container's pid namespace). So the helper
//! makes it at start, single-threaded and before its `unshare(CLONE_NEWPID)`: a child
//! unshares it and waits; the helper writes `uid_map` and `gid_map` (`0 START SIZE`),
//! keeps `/proc/<child>/ns/user` open, and lets the child go. The descriptor keeps the
//! namespace alive for the helper's life.
//!
//! The container's other namespaces (net, uts, ipc, pid, mount) stay owned by the
//! host's user namespace: the helper and the network plugins configure them as root,
//! and the workload enters its user namespace only after its mounts and hostname
//! (`resources::plan_userns`). Root inside has no privilege over them: it can't mount,
//! change the hostname or reconfigure interfaces, and binding ports below 1024 is let
//! through by the netns's `ip_unprivileged_port_start` (0, as Docker sets it).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use container_protocol::resources::IdRange;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};

#[derive(Debug, thiserror::Error)]
#[error("user namespace {start}:{size}: {step}: {source}")]
pub struct UsernsError {
    start: u32,
    size: u32,
    step: &'static str,
    source: std::io::Error,
}

/// `--userns START:SIZE` on the helper's command line, taken out of `argv`.
pub fn take_arg(argv: &mut Vec<String>) -> Result<Option<IdRange>, String> {
    let Some(i) = argv.iter().position(|a| a == "--userns") else {
        return Ok(None);
    };
    let value = argv
        .get(i + 1)
        .cloned()
        .ok_or("--userns needs START:SIZE")?;
    argv.drain(i..i + 2);
    let (start, size) = value
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("invalid --userns {value:?}: expected START:SIZE"))?;
    let range = IdRange { start, size };
    if size == 0 || range.end() > u64::from(u32::MAX) {
        return Err(format!(
            "invalid --userns {value:?}: the range leaves the id space"
        ));
    }
    Ok(Some(range))
}

/// Makes the user namespace mapping `0..size` onto `range`. Call it while the process
/// has one thread and before `unshare(CLONE_NEWPID)` (see the module comment).
pub fn create(range: IdRange) -> Result<OwnedFd, UsernsError> {
    let fail = |step: &'static str| {
        move |source: std::io::Error| UsernsError {
            start: range.start,
            size: range.size,
            step,
            source,
        }
    };
    let (ready_r, ready_w) = pipe().map_err(|e| fail("pipe")(e.into()))?;
    let (hold_r, hold_w) = pipe().map_err(|e| fail("pipe")(e.into()))?;
    // SAFETY: single-threaded here (see above); the child makes raw calls only.
    let child = match unsafe { fork() }.map_err(|e| fail("fork")(e.into()))? {
        ForkResult::Child => unsafe {
            drop(ready_r);
            drop(hold_w);
            let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                1
            } else {
                0
            };
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(hold_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        },
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(hold_r);
    let result = (|| {
        let mut ok = [0u8; 1];
        let n = nix::unistd::read(&ready_r, &mut ok)
            .map_err(|e| fail("wait for the child")(e.into()))?;
        if n != 1 || ok[0] != 1 {
            return Err(fail("unshare(CLONE_NEWUSER)")(std::io::Error::other(
                "the kernel refused a new user namespace",
            )));
        }
        let map = format!("0 {} {}\n", range.start, range.size);
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{child}/{file}"), &map).map_err(fail(
                if file == "uid_map" {
                    "write uid_map"
                } else {
                    "write gid_map"
                },
            ))?;
        }
        File::open(format!("/proc/{child}/ns/user"))
            .map(OwnedFd::from)
            .map_err(fail("open the namespace"))
    })();
    drop(hold_w);
    let _ = waitpid(child, None);
    result
}

/// Hands the generated /etc files to the container's root, so it may edit them as
/// it may in Docker.
pub fn chown_to_root(range: IdRange, files: &[&std::path::Path]) -> std::io::Result<()> {
    for f in files {
        std::os::unix::fs::chown(f, Some(range.start), Some(range.start))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_argument_is_taken_out() {
        let mut argv: Vec<String> = ["--id", "x", "--userns", "100000:65536", "--root", "r"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = take_arg(&mut argv).unwrap().unwrap();
        assert_eq!((r.start, r.size), (100_000, 65_536));
        assert_eq!(argv, ["--id", "x", "--root", "r"]);
        for bad in ["x", "1:", "4294967295:2", "5:0"] {
            let mut argv = vec!["--userns".to_string(), bad.to_string()];
            assert!(take_arg(&mut argv).is_err(), "{bad}");
        }
    }
}
