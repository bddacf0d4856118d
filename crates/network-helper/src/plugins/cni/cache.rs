//! The last ADD result per attachment, on disk, so a DEL after a helper restart still
//! gets its `prevResult` (and the netns, if the caller no longer knows it).
//!
//! Layout: `<root>/networks/<network>.cni/<container-id>/<ifname>.json`. One directory
//! per container keeps the two names apart whatever characters the id holds.

use std::path::{Path, PathBuf};

use container_store::Paths;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::PluginError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub netns: Option<String>,
    pub result: Value,
    /// The capability values ADD was given (`ips`, `portMappings`): DEL and CHECK get
    /// them again, as libcni's cache gives them.
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(paths: &Paths, network: &str) -> Cache {
        Cache {
            dir: paths.networks().join(format!("{network}.cni")),
        }
    }

    fn file(&self, container_id: &str, ifname: &str) -> Result<PathBuf, PluginError> {
        // Both end up in a path: refuse `..`, `/` and friends.
        container_ipam::validate_container_id(container_id)?;
        container_ipam::validate_ifname(ifname)?;
        Ok(self.dir.join(container_id).join(format!("{ifname}.json")))
    }

    pub fn save(&self, record: &Record) -> Result<(), PluginError> {
        let path = self.file(&record.container_id, &record.ifname)?;
        let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        bytes.push(b'\n');
        container_store::write_atomic(&path, &bytes, 0o600)?;
        Ok(())
    }

    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, PluginError> {
        let path = self.file(container_id, ifname)?;
        read(&path)
    }

    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), PluginError> {
        let path = self.file(container_id, ifname)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(PluginError::Io {
                    path,
                    step: "remove",
                    source,
                })
            }
        }
        // The container's directory goes with its last interface; non-empty is fine.
        if let Some(parent) = path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }

    /// Every record on disk. Unreadable ones are logged and skipped: they name nothing
    /// we could DEL anyway.
    pub fn list(&self) -> Result<Vec<Record>, PluginError> {
        let mut out = Vec::new();
        for container in read_dir(&self.dir)? {
            if !container.is_dir() {
                continue;
            }
            for file in read_dir(&container)? {
                if file.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match read(&file) {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable CNI result cache"),
                }
            }
        }
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok(out)
    }

    pub fn remove_all(&self) -> Result<(), PluginError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PluginError::Io {
                path: self.dir.clone(),
                step: "remove",
                source,
            }),
        }
    }
}

fn read(path: &Path) -> Result<Option<Record>, PluginError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PluginError::Io {
                path: path.to_path_buf(),
                step: "parse",
                source: std::io::Error::other(e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PluginError::Io {
            path: path.to_path_buf(),
            step: "read",
            source,
        }),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    // Temporary files of an interrupted atomic write start with a dot.
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            paths.sort();
            Ok(paths)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(PluginError::Io {
            path: dir.to_path_buf(),
            step: "list",
            source,
        }),
    }
}
