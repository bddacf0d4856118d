//! Container records: `<root>/containers/<id>/config.json` (what the user asked for)
//! and `state.json` (what happened), each written atomically.

use container_protocol::network::Allocation;
use container_protocol::sandbox::{InterfaceReport, NetDeviceRecord};
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, write_json, write_json_replace};
use crate::names::{validate_id, NameKind};
use crate::paths::Paths;
use crate::StoreError;

/// 2: `security` (issue 10). A version-1 record without a rootfs ran on the host's
/// files, which now needs `--host-rootfs`: it loads with that set.
pub const CONTAINER_RECORD_VERSION: u32 = 2;

/// The configuration travels typed from the CLI to the apiserver, so its types live
/// with the protocol; the record on disk is the same shape, in JSON.
pub use container_protocol::container::{
    ContainerConfig, LogConfig, MacAddr, NetDeviceConfig, NetworkAttachmentConfig, ProcessConfig,
    Status,
};

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
    /// The container's cgroup while it runs, relative to each hierarchy's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The host ids its user namespace maps onto while it runs (`--userns=auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<container_protocol::resources::IdRange>,
    /// The last run ended with the OOM killer killing a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    /// Restarts by the restart policy since the user last started it.
    #[serde(default)]
    pub restart_count: u32,
    /// The last run was ended by the user (`stop`, `kill`): no policy restarts it.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The policy decided on a restart that has not happened yet (it waits out its
    /// back-off): an apiserver that starts meanwhile carries it out.
    #[serde(default)]
    pub restart_pending: bool,
    /// Consecutive runs shorter than the back-off reset time: the next delay is
    /// 100 ms doubled this many times (at most a minute).
    #[serde(default)]
    pub restart_backoff: u32,
    /// A `network connect` or `disconnect` of the running container under way:
    /// written before its first effect, cleared with its last. An apiserver that finds
    /// one at start undoes a connect and finishes a disconnect (docs/crash-safety.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
}

/// A change of a running container's networks that is under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    pub change: NetworkChange,
    pub network: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkChange {
    Connect,
    Disconnect,
}

/// Fsynced, so that a container outlives a power cut; except one removed when it
/// ends (`--rm`), which should not outlive it anyway (the rename still keeps it whole).
pub fn save_config(paths: &Paths, config: &ContainerConfig) -> Result<(), StoreError> {
    let mut record = config.clone();
    record.version = CONTAINER_RECORD_VERSION;
    let path = paths.container_dir(&config.id)?.join("config.json");
    if config.auto_remove {
        write_json_replace(&path, &record)
    } else {
        write_json(&path, &record)
    }
}

/// Atomic (a reader sees the old state or the new one, whoever was killed), not
/// fsynced: a state says what runs and what it holds, and after a power cut nothing
/// runs and the kernel holds nothing (links, namespaces, rules, cgroups go with the
/// boot), whichever version the disk kept; the apiserver's start reconciles either
/// (a missing file reads as `created`). The config, which says the container exists,
/// is fsynced. Four states per `run`, two fsyncs each, were milliseconds apiece on a
/// busy disk.
pub fn save_state(paths: &Paths, id: &str, state: &ContainerState) -> Result<(), StoreError> {
    write_json_replace(&paths.container_dir(id)?.join("state.json"), state)
}

pub fn load_config(paths: &Paths, id: &str) -> Result<ContainerConfig, StoreError> {
    let path = paths.container_dir(id)?.join("config.json");
    let mut config: ContainerConfig = read_json(&path)?;
    if config.version < 2 && config.rootfs.is_none() {
        config.security.host_rootfs = true;
    }
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
    use container_protocol::sandbox::UserSpec;

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
        assert_eq!(serde_json::from_str::<ProcessConfig>(&json).unwrap(), new);

        let err = serde_json::from_str::<ProcessConfig>(r#"{"args":["sh"],"user":"a:b:c"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid user"), "{err}");
        let both: ProcessConfig =
            serde_json::from_str(r#"{"args":["sh"],"user":"nobody","uid":3}"#).unwrap();
        assert!(both.check_user().unwrap_err().contains("give one of them"));
    }

    /// Records written before the configuration travelled typed left empty fields out.
    #[test]
    fn records_that_leave_empty_fields_out_still_load() {
        let old = r#"{"version": 1, "id": "c1", "process": {"args": ["sleep", "1"]},
            "hostname": "c1", "dns": [], "networks": [{"network": "default", "ifname": "eth0"}],
            "auto_remove": false, "labels": {}, "created": 5}"#;
        let config: ContainerConfig = serde_json::from_str(old).expect("an old record");
        assert_eq!(config.rootfs, None);
        assert!(config.net_devices.is_empty() && config.ports.is_empty());
        assert_eq!(config.networks[0].ifname.as_deref(), Some("eth0"));
    }
}
