//! Persisted state of `container`: where it lives and how it is written.

mod atomic;
pub mod container;
pub mod logfile;
pub mod names;
pub mod network;
pub mod paths;

use std::path::PathBuf;

pub use atomic::{is_temp_file, read_json, write_atomic, write_json, write_replace};
pub use names::{validate_id, NameKind};
pub use network::NetworkConfig;
pub use paths::Paths;

/// Seconds since the Unix epoch, as every record stores times.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes what failed or interrupted writes left behind: a container directory with
/// no `config.json` (a create that failed after making it) and temporary files beside
/// container and network records. Returns what was removed, for the log. Run at apiserver start, before anything
/// reads the records.
pub fn remove_partial_writes(paths: &Paths) -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(paths.networks()) {
        for e in entries.flatten() {
            if is_temp_file(&e.file_name().to_string_lossy())
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed.push(e.path());
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(paths.containers()) else {
        return removed;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if is_temp_file(&name) {
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
            continue;
        }
        if !path.is_dir() || validate_id(NameKind::Container, &name).is_err() {
            continue;
        }
        if !path.join("config.json").exists() {
            if std::fs::remove_dir_all(&path).is_ok() {
                removed.push(path);
            }
            continue;
        }
        if let Ok(files) = std::fs::read_dir(&path) {
            for f in files.flatten() {
                if is_temp_file(&f.file_name().to_string_lossy())
                    && std::fs::remove_file(f.path()).is_ok()
                {
                    removed.push(f.path());
                }
            }
        }
    }
    removed
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {kind} name {name:?}: {why}")]
    InvalidName {
        kind: NameKind,
        name: String,
        why: String,
    },
    #[error("{}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },
}

impl StoreError {
    pub fn kind(&self) -> container_protocol::ErrorKind {
        use container_protocol::ErrorKind as K;
        match self {
            StoreError::InvalidName { .. } => K::Invalid,
            StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                K::NotFound
            }
            StoreError::Io { .. } | StoreError::Json { .. } => K::Internal,
        }
    }
}

/// A record read from disk belongs where it was found and is not from a newer build.
fn check_record(
    path: PathBuf,
    kind: &str,
    name: &str,
    id: &str,
    version: u32,
    supported: u32,
) -> Result<(), StoreError> {
    let message = if id != name {
        format!("file is for {kind} {id:?}, not {name:?}")
    } else if version > supported {
        format!("record version {version} is newer than this build understands ({supported})")
    } else {
        return Ok(());
    };
    Err(StoreError::Json { path, message })
}
