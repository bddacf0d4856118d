//! Log files that rotate: `NAME`, then `NAME.1` (newer) … `NAME.<n-1>` (oldest).
//!
//! One writer per log, which rotates by renaming: a reader that holds the old file open
//! (a `logs -f`) keeps reading it to its end, and no byte is written twice or lost. The
//! container logs (the sandbox helper's copier) and the daemons' own logs both use it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The `n`th older file of `path` (`n` ≥ 1).
pub fn older(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The files of a log that exist, oldest first, the current one last.
pub fn files(path: &Path, max_files: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|n| older(path, n))
        .filter(|p| p.exists())
        .collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Opens the current file for appending, creating it (0640) if needed.
pub fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Moves every file one step older (the oldest goes) and opens a fresh current one.
pub fn rotate(path: &Path, max_files: u32) -> io::Result<File> {
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if max_files <= 1 {
        gone(std::fs::remove_file(path))?;
        return open(path);
    }
    gone(std::fs::remove_file(older(path, max_files - 1)))?;
    for n in (1..max_files - 1).rev() {
        gone(std::fs::rename(older(path, n), older(path, n + 1)))?;
    }
    gone(std::fs::rename(path, older(path, 1)))?;
    open(path)
}

/// A log being written: the current file and how full it is.
pub struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
}

impl Rotating {
    /// Opens (or goes on with) the log at `path`.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Rotating> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            max_size,
            max_files,
            file,
            size,
        })
    }

    /// Appends `bytes`. When they do not fit, the lines that do go into this file and
    /// the rest into a fresh one, so no line that fits is cut at a rotation; a file
    /// exceeds `max_size` only if one call brings more than that with no room.
    /// True when the log rotated.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<bool> {
        use std::io::Write;
        let mut rest = bytes;
        let mut rotated = false;
        if self.size + rest.len() as u64 > self.max_size && self.size > 0 {
            let room = self.max_size.saturating_sub(self.size) as usize;
            let fits = rest[..room.min(rest.len())]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            self.file.write_all(&rest[..fits])?;
            rest = &rest[fits..];
            self.file = rotate(&self.path, self.max_files)?;
            self.size = 0;
            rotated = true;
        }
        self.file.write_all(rest)?;
        self.size += rest.len() as u64;
        Ok(rotated)
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A daemon's own log: its stderr (`fd`, 2 in the daemons) when that is the file at
/// `path`, rotated in place: after each rotation the fresh file is put on `fd`, so
/// whatever else writes there (a panic message) follows. When `fd` is something else
/// (a terminal, the journal) writes pass through and nothing rotates.
#[derive(Clone)]
pub struct SelfLog {
    fd: RawFd,
    log: Arc<Mutex<Option<Rotating>>>,
}

/// Limits of the daemons' own logs, unless `CONTAINER_DAEMON_LOG_MAX_SIZE` and
/// `CONTAINER_DAEMON_LOG_MAX_FILES` say otherwise.
pub const DAEMON_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DAEMON_LOG_MAX_FILES: u32 = 3;

impl SelfLog {
    pub fn new(fd: RawFd, path: &Path, max_size: u64, max_files: u32) -> SelfLog {
        // SAFETY: fstat of a descriptor number; a closed one just fails.
        let ours = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        let same = match (ours, std::fs::metadata(path)) {
            (Ok(st), Ok(meta)) => st.st_dev == meta.dev() && st.st_ino == meta.ino(),
            _ => false,
        };
        let log = same
            .then(|| Rotating::open(path, max_size, max_files).ok())
            .flatten();
        SelfLog {
            fd,
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// The daemon's stderr, with the limits of the environment or the defaults.
    pub fn stderr(path: &Path) -> SelfLog {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        SelfLog::new(
            2,
            path,
            env("CONTAINER_DAEMON_LOG_MAX_SIZE").unwrap_or(DAEMON_LOG_MAX_SIZE),
            env("CONTAINER_DAEMON_LOG_MAX_FILES")
                .map(|n: u64| n as u32)
                .unwrap_or(DAEMON_LOG_MAX_FILES),
        )
    }

    fn write_fd(&self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: the descriptor is the process's own stderr, open for its life.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
            match nix::unistd::write(fd, rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl io::Write for SelfLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut guard = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let Some(log) = guard.as_mut() else {
            drop(guard);
            self.write_fd(bytes)?;
            return Ok(bytes.len());
        };
        // The rotating file writes; `fd` is a second descriptor of the same file.
        if log.write(bytes)? {
            // SAFETY: `fd` is ours (the process's stderr); dup2 replaces it atomically
            // with the fresh file, and nothing holds it as an owned descriptor.
            let fd =
                unsafe { nix::unistd::dup2_raw(log.file(), self.fd) }.map_err(io::Error::from)?;
            // Still the process's stderr: not ours to close.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every daemon's tracing set-up: `CONTAINER_LOG` filters (default `info`), lines go to
/// stderr, which is rotated when it is the file at `log` (see [`SelfLog`]). `None`:
/// plain stderr (a short-lived mode whose caller reads its stderr).
pub fn init_tracing(log: Option<&Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTAINER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log {
        Some(path) => {
            let log = SelfLog::stderr(path);
            builder.with_writer(move || log.clone()).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(p: &Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn rotation_keeps_lines_whole_and_the_total_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut log = Rotating::open(&path, 1000, 3).expect("open");
        let mut all = String::new();
        for i in 0..500 {
            let line = format!("line {i:04} {}\n", "x".repeat(i % 40));
            all.push_str(&line);
            log.write(line.as_bytes()).expect("write");
        }
        let kept = files(&path, 3);
        assert_eq!(kept.len(), 3);
        let mut text = String::new();
        for f in &kept {
            assert!(size(f) <= 1000, "{} is {} bytes", f.display(), size(f));
            let t = std::fs::read_to_string(f).expect("read");
            assert!(t.ends_with('\n'), "a line was cut at a rotation");
            text.push_str(&t);
        }
        assert!(
            all.ends_with(&text),
            "the kept files are the newest output, in order"
        );
        assert!(!older(&path, 3).exists());
    }

    #[test]
    fn a_reader_of_the_old_file_reads_it_to_its_end() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut log = Rotating::open(&path, 64, 2).expect("open");
        log.write(b"first line\n").expect("write");
        let mut reader = File::open(&path).expect("reader");
        log.write(&[b'y'; 60]).expect("write");
        log.write(b"\nafter\n").expect("write");
        let mut old = String::new();
        reader.read_to_string(&mut old).expect("read");
        assert_eq!(old, "first line\n");
        assert_eq!(
            std::fs::read_to_string(&path).expect("new").lines().last(),
            Some("after")
        );
    }

    #[test]
    fn a_daemon_log_rotates_its_own_descriptor() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.log");
        let file = open(&path).expect("open");
        // A descriptor number of its own stands in for the daemon's stderr.
        let fd = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).expect("dup");
        let mut log = SelfLog::new(fd, &path, 100, 2);
        for i in 0..50 {
            writeln!(log, "event {i}").expect("write");
        }
        // Writes through the descriptor itself (a panic message) land in the fresh file.
        nix::unistd::write(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, b"raw\n")
            .expect("raw write");
        let current = std::fs::read_to_string(&path).expect("current");
        assert!(current.ends_with("event 49\nraw\n"), "{current:?}");
        assert!(size(&older(&path, 1)) <= 100);
        assert!(!older(&path, 2).exists());
        let _ = nix::unistd::close(fd);

        let elsewhere = dir.path().join("other");
        let other = open(&elsewhere).expect("other");
        let fd =
            nix::fcntl::fcntl(&other, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).expect("dup");
        let mut passthrough = SelfLog::new(fd, &path, 100, 2);
        writeln!(passthrough, "not the log file").expect("write");
        assert_eq!(
            std::fs::read_to_string(&elsewhere).expect("read"),
            "not the log file\n"
        );
        let _ = nix::unistd::close(fd);
    }
}
