//! Network records: `<root>/networks/<name>.json`, versioned.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use container_protocol::network::PluginKind;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, write_json};
use crate::paths::Paths;
use crate::StoreError;

pub const NETWORK_RECORD_VERSION: u32 = 1;
pub const DEFAULT_PLUGIN: PluginKind = PluginKind::Bridge;
pub const DEFAULT_NETWORK: &str = "default";

fn default_plugin() -> PluginKind {
    DEFAULT_PLUGIN
}

/// A configured network (seed 001's "Network"). Files written before `plugin` existed
/// have none: they load as the default plugin, `bridge`. A plugin name this build does
/// not know makes the record unreadable, with an error naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    #[serde(default)]
    pub version: u32,
    pub id: String,
    #[serde(default = "default_plugin")]
    pub plugin: PluginKind,
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub subnet_v6: Option<Ipv6Net>,
    #[serde(default)]
    pub gateway_v6: Option<Ipv6Addr>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created: u64,
    /// `network create --disable-dns`: no name server on this network.
    #[serde(default)]
    pub disable_dns: bool,
    /// Built in (`default`): cannot be removed.
    #[serde(default)]
    pub builtin: bool,
    /// `network rm` began: written before anything is torn down, so a removal cut short
    /// (a crash, a kill) is finished at the next apiserver start, not left half done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
}

pub fn save_network(paths: &Paths, config: &NetworkConfig) -> Result<(), StoreError> {
    let mut record = config.clone();
    record.version = NETWORK_RECORD_VERSION;
    write_json(&paths.network_config(&config.id)?, &record)
}

pub fn load_network(paths: &Paths, name: &str) -> Result<NetworkConfig, StoreError> {
    let path = paths.network_config(name)?;
    let config: NetworkConfig = read_json(&path)?;
    check_loaded(path, name, config)
}

fn check_loaded(
    path: PathBuf,
    name: &str,
    config: NetworkConfig,
) -> Result<NetworkConfig, StoreError> {
    crate::check_record(
        path,
        "network",
        name,
        &config.id,
        config.version,
        NETWORK_RECORD_VERSION,
    )?;
    Ok(config)
}

pub fn remove_network(paths: &Paths, name: &str) -> Result<(), StoreError> {
    let path = paths.network_config(name)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path,
            step: "remove",
            source,
        }),
    }
}

/// Loads every network record. A corrupt or unreadable file is returned as an error
/// beside the others, so the caller can report it by name and go on.
pub fn load_networks(paths: &Paths) -> (Vec<NetworkConfig>, Vec<StoreError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let dir = paths.networks();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (ok, bad),
        Err(source) => {
            bad.push(StoreError::Io {
                path: dir,
                step: "list",
                source,
            });
            return (ok, bad);
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for file in names {
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        match load_network(paths, name) {
            Ok(c) => ok.push(c),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}
