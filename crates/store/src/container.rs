//! Container records: `<root>/containers/<id>/config.json` (what the user asked for)
//! and `state.json` (what happened), each written atomically.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use container_protocol::network::{Allocation, PortMap};
use container_protocol::sandbox::{InterfaceReport, NetDeviceRecord, UserSpec};
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, write_json};
use crate::names::{validate_id, NameKind};
use crate::paths::Paths;
use crate::StoreError;

pub const CONTAINER_RECORD_VERSION: u32 = 1;

/// One `--network NET[,ip=..][,ip6=..][,mac=..][,ifname=..]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// OCI `linux.netDevices` entry: keyed by the host interface name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `-u USER[:GROUP]`, names or numbers, resolved when a process starts against the
    /// container's own /etc/passwd and /etc/group. Absent: `uid` and `gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSpec>,
    /// Numeric ids, as records written before `user` hold them (and `--config` files
    /// may); 0 is not written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ProcessConfig {
    /// Who the process runs as: `user`, or else the numeric `uid:gid`.
    pub fn user(&self) -> UserSpec {
        self.user
            .clone()
            .unwrap_or_else(|| UserSpec::ids(self.uid, Some(self.gid)))
    }

    /// `user` and numeric ids together would say two things.
    pub fn check_user(&self) -> Result<(), String> {
        match &self.user {
            Some(user) if self.uid != 0 || self.gid != 0 => Err(format!(
                "user {user} and uid {}/gid {} given together: give one of them",
                self.uid, self.gid
            )),
            _ => Ok(()),
        }
    }
}

/// What the user asked for; the JSON shape `container create --config FILE` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub id: String,
    pub process: ProcessConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// No entry: the `default` network. `none` alone: loopback only.
    #[serde(default)]
    pub networks: Vec<NetworkAttachmentConfig>,
    #[serde(
        default,
        rename = "netDevices",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub net_devices: BTreeMap<String, NetDeviceConfig>,
    /// Published ports, forwarded to the first network's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMap>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub created: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a container; rewritten at every transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Why it stopped, when not by its own exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceReport>,
    #[serde(default)]
    pub net_devices: Vec<NetDeviceRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

pub fn save_config(paths: &Paths, config: &ContainerConfig) -> Result<(), StoreError> {
    let mut record = config.clone();
    record.version = CONTAINER_RECORD_VERSION;
    write_json(
        &paths.container_dir(&config.id)?.join("config.json"),
        &record,
    )
}

pub fn save_state(paths: &Paths, id: &str, state: &ContainerState) -> Result<(), StoreError> {
    write_json(&paths.container_dir(id)?.join("state.json"), state)
}

pub fn load_config(paths: &Paths, id: &str) -> Result<ContainerConfig, StoreError> {
    let path = paths.container_dir(id)?.join("config.json");
    let config: ContainerConfig = read_json(&path)?;
    crate::check_record(
        path,
        "container",
        id,
        &config.id,
        config.version,
        CONTAINER_RECORD_VERSION,
    )?;
    Ok(config)
}

/// A missing state file means the container was created and never started.
pub fn load_state(paths: &Paths, id: &str) -> Result<ContainerState, StoreError> {
    let path = paths.container_dir(id)?.join("state.json");
    if !path.exists() {
        return Ok(ContainerState::default());
    }
    read_json(&path)
}

pub fn remove_container(paths: &Paths, id: &str) -> Result<(), StoreError> {
    let dir = paths.container_dir(id)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: dir,
            step: "remove",
            source,
        }),
    }
}

/// Ids of every container directory, valid names only, sorted.
pub fn list_containers(paths: &Paths) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(paths.containers()) else {
        return vec![];
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| validate_id(NameKind::Container, n).is_ok())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_numeric_ids_still_load_and_new_ones_keep_the_user_as_given() {
        let old: ProcessConfig =
            serde_json::from_str(r#"{"args":["sh"],"uid":5,"gid":6,"tty":false}"#).unwrap();
        assert_eq!(old.user().to_string(), "5:6");
        assert!(old.check_user().is_ok());
        let root: ProcessConfig = serde_json::from_str(r#"{"args":["sh"]}"#).unwrap();
        assert_eq!(root.user(), UserSpec::root());

        let new = ProcessConfig {
            user: Some(UserSpec::parse("nobody:users").unwrap()),
            ..root.clone()
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains(r#""user":"nobody:users""#), "{json}");
        assert!(!json.contains("uid"), "{json}");
        assert_eq!(serde_json::from_str::<ProcessConfig>(&json).unwrap(), new);

        let err = serde_json::from_str::<ProcessConfig>(r#"{"args":["sh"],"user":"a:b:c"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid user"), "{err}");
        let both: ProcessConfig =
            serde_json::from_str(r#"{"args":["sh"],"user":"nobody","uid":3}"#).unwrap();
        assert!(both.check_user().unwrap_err().contains("give one of them"));
    }
}
