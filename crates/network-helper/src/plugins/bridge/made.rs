//! What a bridge network's setup made on the host when its bridge is named by
//! `--opt bridge=`, which may be a user's link: `<root>/networks/<id>.bridge`, where a
//! restarted helper finds it again. Teardown removes exactly that. (A derived `cbr-…`
//! bridge needs no record: it is always the runtime's, and its addresses go with it.)

use std::path::PathBuf;

use container_store::Paths;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::PluginError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    /// Setup created the bridge link itself.
    #[serde(default)]
    pub bridge: bool,
    /// Gateway addresses setup added to a bridge that was there before it.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

fn path(paths: &Paths, network: &str) -> PathBuf {
    paths.networks().join(format!("{network}.bridge"))
}

impl Made {
    /// The record, empty when there is none.
    pub fn load(paths: &Paths, network: &str) -> Result<Made, PluginError> {
        let path = path(paths, network);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PluginError::Io {
                path,
                step: "read the record of what setup made",
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Made::default()),
            Err(source) => Err(PluginError::Io {
                path,
                step: "read the record of what setup made",
                source,
            }),
        }
    }

    /// Written before the change it describes, so a crash in between still leaves the
    /// change known.
    pub fn save(&self, paths: &Paths, network: &str) -> Result<(), PluginError> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        container_store::write_atomic(&path(paths, network), &bytes, 0o644)?;
        Ok(())
    }

    pub fn remove(paths: &Paths, network: &str) -> Result<(), PluginError> {
        let path = path(paths, network);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PluginError::Io {
                path,
                step: "remove the record of what setup made",
                source: e,
            }),
            _ => Ok(()),
        }
    }
}
