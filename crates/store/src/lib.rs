//! Persisted state of `container`: where it lives and how it is written.

mod atomic;
pub mod container;
pub mod names;
pub mod network;
pub mod paths;

use std::path::PathBuf;

pub use atomic::{read_json, write_atomic, write_json};
pub use names::{validate_id, NameKind};
pub use network::NetworkConfig;
pub use paths::Paths;

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
