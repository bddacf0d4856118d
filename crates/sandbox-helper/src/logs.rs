//! A detached workload's output, kept as Docker's `local` driver keeps it: bounded and
//! rotated. The workload writes its stdout and stderr into one pipe (so they stay in
//! the order it wrote them), and a task of this helper copies the pipe into the
//! container's rotating log (`container_store::logfile`). The log is never held in
//! memory: one read's worth (64 KiB) at a time.
//!
//! One writer per log file in this process, however many processes (`exec`) write to
//! it, so rotations never race. A full disk or a failed write drops output, never the
//! workload: the copier keeps reading so the workload does not block.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use container_protocol::container::{LogConfig, MIN_LOG_SIZE};
use container_store::logfile::Rotating;
use nix::fcntl::OFlag;
use tokio::net::unix::pipe::Receiver;

struct Log {
    writer: Mutex<Rotating>,
    /// Read ends being copied, for [`drained`].
    pipes: Mutex<Vec<Arc<Receiver>>>,
}

static LOGS: LazyLock<Mutex<HashMap<PathBuf, Arc<Log>>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_for(path: &Path, config: LogConfig) -> Result<Arc<Log>, String> {
    let mut logs = lock(&LOGS);
    if let Some(log) = logs.get(path) {
        return Ok(log.clone());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let writer = Rotating::open(path, config.max_size, config.max_files)
        .map_err(|e| format!("open log {}: {e}", path.display()))?;
    let log = Arc::new(Log {
        writer: Mutex::new(writer),
        pipes: Mutex::new(Vec::new()),
    });
    logs.insert(path.to_path_buf(), log.clone());
    Ok(log)
}

/// A pipe whose other end is copied into the log at `path`: give it to a workload as
/// its stdout and stderr.
pub fn pipe_into(path: &Path, config: LogConfig) -> Result<OwnedFd, String> {
    let log = log_for(path, config)?;
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("log pipe: {}", e.desc()))?;
    // Non-blocking (tokio sets it), so `drained` can empty it without waiting.
    let read = Arc::new(Receiver::from_owned_fd(read).map_err(|e| format!("log pipe: {e}"))?);
    lock(&log.pipes).push(read.clone());
    // A task, not a thread: after unshare(CLONE_NEWPID) this process cannot make threads.
    tokio::spawn(async move { copy(log, read).await });
    Ok(write)
}

/// Copies one pipe into its log until every writer has closed it.
async fn copy(log: Arc<Log>, pipe: Arc<Receiver>) {
    let mut buf = vec![0u8; MIN_LOG_SIZE as usize];
    loop {
        if let Err(e) = pipe.readable().await {
            tracing::warn!("log copier: {e}");
            break;
        }
        // Read and write under the writer's lock, with no await between: `drained`
        // then sees the bytes either still in the pipe or already in the file.
        let mut writer = lock(&log.writer);
        match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write(&mut writer, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("log copier: read: {e}");
                break;
            }
        }
    }
    lock(&log.pipes).retain(|p| !Arc::ptr_eq(p, &pipe));
}

fn write(writer: &mut Rotating, bytes: &[u8]) {
    if let Err(e) = writer.write(bytes) {
        tracing::warn!("log: {} bytes of output lost: {e}", bytes.len());
    }
}

/// Waits until everything written so far into the pipes of the log at `path` is in the
/// file. Called when a process exits, before its exit is told: whoever reads the log
/// next then reads all it wrote.
pub fn drained(path: &Path) {
    let Some(log) = lock(&LOGS).get(path).cloned() else {
        return;
    };
    let mut writer = lock(&log.writer);
    let pipes = lock(&log.pipes).clone();
    let mut buf = vec![0u8; MIN_LOG_SIZE as usize];
    for pipe in pipes {
        // Straight from the descriptor: tokio's `try_read` would trust a readiness it
        // may not have learnt yet.
        while let Ok(n @ 1..) = nix::unistd::read(pipe.as_fd(), &mut buf) {
            write(&mut writer, &buf[..n]);
        }
    }
}
