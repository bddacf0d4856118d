//! Starting a helper: its own session, its bootstrap socket inherited as fd 3, its
//! output in its log, its process known by a pidfd from the first instant.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use container_protocol::bootstrap::{bootstrap_client, BootstrapClient};
use container_protocol::helper::peer_name;
use container_protocol::helper_server::BOOTSTRAP_FD_ENV;
use container_protocol::HelperKind;
use container_store::Paths;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::launch::{self, Launch};
use crate::pidfd::Pidfd;
use crate::table::SuperviseError;

/// Finds helper binaries: the apiserver's own directory first (a build tree or an
/// install prefix), then the libexec directory.
pub fn default_helper_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(LIBEXEC))
}

const LIBEXEC: &str = "/usr/libexec/container";

pub struct Spawner {
    paths: Paths,
    helper_dir: PathBuf,
}

/// A helper just started: its bootstrap channel and its process.
pub struct Spawned {
    pub bootstrap: BootstrapClient,
    pub pidfd: Arc<Pidfd>,
}

impl Spawner {
    pub fn new(paths: Paths, helper_dir: PathBuf) -> Self {
        Spawner { paths, helper_dir }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The binary of a helper kind: beside the caller's own, or the libexec one.
    pub fn binary(&self, kind: HelperKind) -> PathBuf {
        let local = self.helper_dir.join(kind.binary());
        if local.exists() {
            return local;
        }
        Path::new(LIBEXEC).join(kind.binary())
    }

    /// Starts a helper with one end of a socketpair as its bootstrap channel (fd 3) in
    /// its own session, so a terminal's signals and the apiserver's exit leave it alone.
    pub async fn spawn(
        &self,
        kind: HelperKind,
        id: &str,
        extra_args: &[String],
    ) -> Result<Spawned, SuperviseError> {
        let peer = peer_name(kind, id);
        let io = |step: &'static str| {
            let peer = peer.clone();
            move |source: std::io::Error| SuperviseError::Io { peer, step, source }
        };
        let dir = self.paths.helper_dir(kind);
        // Root-only: the bootstrap sockets inside hand out endpoints to anyone who connects.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io("create helper directory"))?;
        let log_path = self.paths.helper_file(kind, id, "log")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open log"))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| io("socketpair")(e.into()))?;
        let binary = self.binary(kind);
        let mut args: Vec<OsString> = vec![
            "--root".into(),
            self.paths.root.clone().into(),
            "--run-dir".into(),
            self.paths.run.clone().into(),
            "--id".into(),
            id.into(),
        ];
        args.extend(extra_args.iter().map(OsString::from));
        let pid = Launch {
            program: &binary,
            args: &args,
            env: (BOOTSTRAP_FD_ENV, "3"),
            output: log.as_fd(),
            fd3: theirs.as_fd(),
        }
        .spawn()
        .map_err(io("spawn"))?;
        drop((theirs, log));
        // Our unreaped child: its pid can't be reused before this open.
        let pidfd = match Pidfd::open(pid) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                // Unwatchable, so it must not live: still our unreaped child, its pid is
                // safe to kill and to wait for.
                launch::kill_and_reap(pid);
                return Err(io("open pidfd")(e));
            }
        };
        let reaper = pidfd.clone();
        // Reap it whenever it exits; its death is noticed through its pidfd and endpoints.
        let reap_peer = peer.clone();
        tokio::spawn(async move {
            match launch::reap(&reaper).await {
                Ok(status) => tracing::info!("{reap_peer} (pid {pid}) exited: {status}"),
                Err(e) => tracing::warn!("{reap_peer} (pid {pid}): wait: {e}"),
            }
        });
        let stream =
            container_protocol::bootstrap::into_tokio(ours).map_err(io("bootstrap socket"))?;
        match bootstrap_client(stream, &peer).await {
            Ok(bootstrap) => Ok(Spawned { bootstrap, pidfd }),
            Err(e) => {
                // Whatever it is doing, it is not serving: make sure it is gone.
                let _ = pidfd.kill_group();
                pidfd.exited_within(std::time::Duration::from_secs(5)).await;
                Err(SuperviseError::Start {
                    peer,
                    source: Box::new(e),
                    log: log_summary(&log_path),
                })
            }
        }
    }

    pub fn socket(&self, kind: HelperKind, id: &str) -> Result<PathBuf, SuperviseError> {
        Ok(self.paths.helper_file(kind, id, "sock")?)
    }

    /// The pid a helper recorded for itself, if its pid file is there and readable.
    pub fn recorded_pid(&self, kind: HelperKind, id: &str) -> Option<u32> {
        let path = self.paths.helper_file(kind, id, "pid").ok()?;
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Ids of helpers of `kind` that left a bootstrap socket or pid file (alive or not).
    pub fn listed(&self, kind: HelperKind) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.paths.helper_dir(kind)) else {
            return vec![];
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                n.strip_suffix(".sock")
                    .or_else(|| n.strip_suffix(".pid"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Removes a helper's log, once nothing it logged can matter (its object is gone).
    pub fn remove_log(&self, kind: HelperKind, id: &str) {
        if let Ok(path) = self.paths.helper_file(kind, id, "log") {
            let _ = std::fs::remove_file(&path);
            // And what the helper rotated: `<id>.log.1`, `.2`, …
            let mut n = 1;
            while std::fs::remove_file(container_store::logfile::older(&path, n)).is_ok() {
                n += 1;
            }
        }
    }

    /// Removes what a dead helper left behind under the run directory. Only ever called
    /// once its process is known to be gone.
    pub fn remove_leftovers(&self, kind: HelperKind, id: &str) {
        for ext in ["sock", "pid"] {
            if let Ok(path) = self.paths.helper_file(kind, id, ext) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Live helper processes of `kind` for this run directory, found by their command
    /// line: a helper whose apiserver died between spawning it and its first words has
    /// written no pid file yet, and must still be found (and adopted or stopped), never
    /// left running unseen.
    pub fn live_processes(&self, kind: HelperKind) -> Vec<(String, u32)> {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        let mut found = Vec::new();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let id = args
                .windows(2)
                .find(|w| w[0] == b"--id")
                .and_then(|w| std::str::from_utf8(w[1]).ok());
            if let Some(id) = id {
                if self.is_helper_process(kind, id, pid) {
                    found.push((id.to_string(), pid));
                }
            }
        }
        found
    }

    /// Whether process `pid` is this helper (its binary, with `--id <id>` and our run
    /// directory), so a reused pid is never taken for a live helper.
    pub fn is_helper_process(&self, kind: HelperKind, id: &str, pid: u32) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let has_pair = |flag: &str, value: &[u8]| {
            args.windows(2)
                .any(|w| w[0] == flag.as_bytes() && w[1] == value)
        };
        args.first()
            .is_some_and(|a0| a0.ends_with(kind.binary().as_bytes()))
            && has_pair("--id", id.as_bytes())
            && has_pair("--run-dir", self.paths.run.as_os_str().as_encoded_bytes())
    }
}

/// What a helper's log says about why it failed: its error lines, not a backtrace's
/// frames. Empty when the log says nothing useful.
pub fn log_summary(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let frame = |l: &str| {
        let t = l.trim_start();
        t.is_empty()
            || t.to_ascii_lowercase().starts_with("stack backtrace:")
            || t.starts_with("note: ")
            // Frames are indented: "   3: name" and "             at file:line".
            || (l.starts_with(' ')
                && (t.starts_with("at ")
                    || t
                        .split_once(": ")
                        .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))))
    };
    let lines: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
    let tail: Vec<&str> = lines.iter().rev().take(3).rev().copied().collect();
    if tail.is_empty() {
        return String::new();
    }
    format!("; its log ({}) ends: {}", path.display(), tail.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_summary_skips_backtrace_frames() {
        let dir = std::env::temp_dir().join(format!("supervise-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("h.log");
        std::fs::write(
            &log,
            "INFO ready\nthread 'main' panicked at src/x.rs:3:5:\nboom\nstack backtrace:\n   0: std::panicking\n             at /rustc/abc/library/std/src/panicking.rs:689:5\n   1: main\nnote: Some details are omitted\n",
        )
        .unwrap();
        let s = log_summary(&log);
        assert!(
            s.ends_with("INFO ready | thread 'main' panicked at src/x.rs:3:5: | boom"),
            "{s}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
