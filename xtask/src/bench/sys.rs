//! The bench's small system helpers: the machine line, process memory, the PID 1 reaper,
//! the shared busybox root filesystem, timed commands, and cgroup cleanup.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// "CPU model, N cores, Linux x.y, date, load average": the first line of the report.
/// The load average says how busy the (shared) machine was when the run began.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let out = |cmd: &mut Command| {
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let kernel = out(Command::new("uname").arg("-r"));
    let date = out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let load: String = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cpu}, {cores} cores, Linux {kernel}, {date}, load average {load} at start")
}

/// Memory of one process from `/proc/<pid>/smaps_rollup`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// Proportional set size: private pages plus a share of each shared one.
    pub pss: f64,
    /// Unique set size: pages only this process maps.
    pub uss: f64,
    pub rss: f64,
    /// `Anonymous`: heap, stacks and other pages backed by no file, the process's own.
    pub anon: f64,
}

pub fn mem(pid: u32) -> Result<Mem> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb * 1024.0)
            .unwrap_or(0.0)
    };
    Ok(Mem {
        pss: field("Pss:"),
        uss: field("Private_Clean:") + field("Private_Dirty:"),
        rss: field("Rss:"),
        anon: field("Anonymous:"),
    })
}

extern "C" {
    // From the C library std already links; xtask takes no libc crate for one call.
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
}

/// As PID 1 of the bench's namespace: reaps every child and orphan until `main`
/// exits, and returns `main`'s exit code (128 + signal if killed). Without this,
/// daemons that detach (the apiserver, conmon) would linger as zombies that still
/// answer `kill(pid, 0)`.
pub fn reap_until(main: u32) -> i32 {
    loop {
        let mut status = 0i32;
        // SAFETY: waitpid writes only to `status`.
        let pid = unsafe { waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("bench-init: waitpid: {err}");
            return 1;
        }
        if pid as u32 == main {
            return if status & 0x7f == 0 {
                (status >> 8) & 0xff
            } else {
                128 + (status & 0x7f)
            };
        }
    }
}

/// cgroups the compared runtimes leave in the host's (global) cgroup tree: podman's
/// `libpod_parent` (it removes each container's cgroup, not the parent) and runc's
/// per-container ones if a run was interrupted. Removed only when empty, so nothing in
/// use is touched; a `libpod_parent` with live cgroups under it belongs to someone else.
pub fn remove_leftover_cgroups() {
    container_cgroups::remove_empty_trees(|name| {
        name == "libpod_parent" || name.starts_with("container-bench-")
    });
}

/// The busybox root filesystem every runtime runs: `bin/busybox` and its applets as
/// symlinks, with the directories the runtimes mount over. Made once per run.
pub fn rootfs(state: &Path) -> Result<PathBuf> {
    let root = state.join("rootfs");
    let busybox = root.join("bin/busybox");
    if busybox.exists() {
        return Ok(root);
    }
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::copy("/bin/busybox", &busybox).context("copy /bin/busybox (busybox-static)")?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        // The list names busybox itself: a link there would replace the binary.
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(root)
}

/// Runs `cmd` to completion, its output captured; an error carries stderr's tail.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{:?}", cmd.get_program());
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {shown}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{shown} {}: {}", out.status, tail.join(" | "));
    }
    Ok(out)
}

/// Wall time of `f` over `iterations` runs after `warmup` untimed ones, in ns. Each
/// sample is one `Instant` pair around one call, so process start and exit count.
pub fn time_loop(
    warmup: usize,
    iterations: usize,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<f64>> {
    for i in 0..warmup {
        f(i).context("warm-up")?;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        f(warmup + i)?;
        samples.push(start.elapsed().as_nanos() as f64);
    }
    Ok(samples)
}
