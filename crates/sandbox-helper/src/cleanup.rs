//! `container-sandbox-helper cleanup --root R --run-dir D --id ID`: what a sandbox that
//! died without tearing down left on the host, removed by the sandbox's own code, as
//! containerd's shim has `delete`. The caller (the apiserver) knows only the record; the
//! rules of what a sandbox leaves (veth host names, the netns mount, the helper's files,
//! how a returned device is found) stay here.
//!
//! What to clean comes as one JSON object on stdin ([`Remains`]), never on the command
//! line, and is checked whole before anything changes: every name must be an interface
//! name, the id a container id, and unknown keys are refused. The answer is one JSON
//! object on stdout ([`Report`]); the exit is 0 when nothing failed.
//!
//! Idempotent: what is already gone is skipped, so a cleanup can run again.

use std::path::PathBuf;
use std::time::Duration;

use container_netlink::{NetNs, Netlink};
use container_protocol::sandbox::NetDeviceRecord;
use container_protocol::{ErrorKind, HelperKind};
use container_store::Paths;
use serde::{Deserialize, Serialize};

use crate::interfaces::veth_host_name;

/// At most this much JSON on stdin.
pub const INPUT_LIMIT: usize = 1 << 20;
/// More interfaces or devices than any container has.
const MAX_ENTRIES: usize = 256;
/// A physical device comes back from a dead namespace asynchronously: look this often.
const RESTORE_TRIES: u32 = 20;
const RESTORE_PAUSE: Duration = Duration::from_millis(100);

/// What the record says the sandbox had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remains {
    /// Interface names inside the container: the host ends of their veths are named
    /// from them and the container id.
    #[serde(default)]
    pub ifnames: Vec<String>,
    /// Devices moved into the container, to be given back.
    #[serde(default)]
    pub net_devices: Vec<NetDeviceRecord>,
}

/// What the cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Host objects removed: links, the netns mount, files.
    pub removed: Vec<String>,
    /// Net devices restored on the host (host names).
    pub restored: Vec<String>,
    /// Net devices that did not come back (a virtual device dies with its namespace).
    pub missing: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cleanup input: {0}")]
    Input(String),
    #[error("container {id}: its sandbox helper is running (its bootstrap socket {} answers): shut it down instead", socket.display())]
    Running { id: String, socket: PathBuf },
    #[error("cleanup: {0}")]
    Netlink(#[from] container_netlink::Error),
}

impl CleanupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CleanupError::Input(_) => ErrorKind::Invalid,
            CleanupError::Running { .. } => ErrorKind::Conflict,
            CleanupError::Netlink(_) => ErrorKind::Internal,
        }
    }
}

/// Parses and checks the input, all of it, before anything is done.
pub fn parse(id: &str, input: &[u8]) -> Result<Remains, CleanupError> {
    let bad = |m: String| CleanupError::Input(m);
    container_store::names::validate_id(container_store::names::NameKind::Container, id)
        .map_err(|e| bad(e.to_string()))?;
    if input.len() > INPUT_LIMIT {
        return Err(bad(format!("more than {INPUT_LIMIT} bytes")));
    }
    let remains: Remains = serde_json::from_slice(input).map_err(|e| bad(e.to_string()))?;
    if remains.ifnames.len() > MAX_ENTRIES || remains.net_devices.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "more than {MAX_ENTRIES} interfaces or devices"
        )));
    }
    let ifname = |what: &str, name: &str| {
        container_netlink::valid_ifname(name).map_err(|e| bad(format!("{what} {name:?}: {e}")))
    };
    for name in &remains.ifnames {
        ifname("interface", name)?;
    }
    for d in &remains.net_devices {
        ifname("net device", &d.host_name)?;
        ifname("net device container name", &d.container_name)?;
    }
    Ok(remains)
}

/// Refuses to clean up under a live helper: it owns these objects.
pub fn check_dead(paths: &Paths, id: &str) -> Result<(), CleanupError> {
    let socket = paths
        .helper_file(HelperKind::Sandbox, id, "sock")
        .map_err(|e| CleanupError::Input(e.to_string()))?;
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(CleanupError::Running {
            id: id.to_string(),
            socket,
        });
    }
    Ok(())
}

/// Removes what container `id`'s dead sandbox left: the host veth ends, the netns
/// mount (which frees the namespace and what is left in it), the helper's socket and
/// pid files; then restores the net devices the kernel handed back. Keeps going past
/// failures and reports them.
pub async fn run(paths: &Paths, id: &str, remains: &Remains) -> Result<Report, CleanupError> {
    let host = Netlink::connect()?;
    let mut report = Report::default();
    for ifname in &remains.ifnames {
        let name = veth_host_name(id, ifname);
        match host.delete_link_by_name(&name).await {
            Ok(true) => report.removed.push(format!("link {name}")),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("delete link {name}: {e}")),
        }
    }
    let input = |e: container_store::StoreError| CleanupError::Input(e.to_string());
    let netns = paths.netns(id).map_err(input)?;
    // A mount, or the empty file a helper that died while binding left.
    if std::fs::symlink_metadata(&netns).is_ok() {
        match NetNs::remove_bound(&netns) {
            Ok(()) => report.removed.push(format!("netns {}", netns.display())),
            Err(e) => report
                .errors
                .push(format!("remove {}: {e}", netns.display())),
        }
    }
    for ext in ["sock", "pid"] {
        let file = paths
            .helper_file(HelperKind::Sandbox, id, ext)
            .map_err(input)?;
        match std::fs::remove_file(&file) {
            Ok(()) => report.removed.push(file.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report
                .errors
                .push(format!("remove {}: {e}", file.display())),
        }
    }
    if !remains.net_devices.is_empty() {
        restore_devices(&host, &remains.net_devices, &mut report).await;
    }
    Ok(report)
}

/// The kernel returns a physical device from a dead namespace asynchronously, so look
/// for the devices a few times before giving up on the missing ones (virtual devices
/// never come back: the kernel destroyed them).
async fn restore_devices(host: &Netlink, records: &[NetDeviceRecord], report: &mut Report) {
    let mut pending: Vec<NetDeviceRecord> = records.to_vec();
    for attempt in 0..RESTORE_TRIES {
        match crate::netdev::restore_returned(host, &pending).await {
            Ok(restored) => {
                pending.retain(|r| !restored.contains(&r.host_name));
                report.restored.extend(restored);
            }
            Err(e) if attempt + 1 == RESTORE_TRIES => {
                report.errors.push(format!("restore net devices: {e}"))
            }
            Err(e) => tracing::warn!("restore net devices: {e}"),
        }
        // Back under its host name with its MAC (restored now, or given back by the
        // helper before it died): done.
        let mut still = Vec::new();
        for r in pending {
            let home = host.link_by_name(&r.host_name).await.ok().flatten();
            if !home.is_some_and(|l| r.mac.is_none() || l.mac == r.mac) {
                still.push(r);
            }
        }
        pending = still;
        if pending.is_empty() {
            return;
        }
        tokio::time::sleep(RESTORE_PAUSE).await;
    }
    report
        .missing
        .extend(pending.into_iter().map(|r| r.host_name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked_whole_and_strictly() {
        let ok = parse("c1", br#"{"ifnames":["eth0"],"net_devices":[]}"#).unwrap();
        assert_eq!(ok.ifnames, ["eth0"]);
        assert_eq!(parse("c1", b"{}").unwrap(), Remains::default());
        for (id, input, want) in [
            ("c1", &b"{\"ifnames\":[\"eth0\"],\"netdevices\":[]}"[..], "unknown field `netdevices`"),
            ("c1", b"{\"ifnames\":[\"../../x\"]}", "interface \"../../x\""),
            ("c1", b"{\"ifnames\":[\"a-very-long-interface-name\"]}", "interface"),
            ("c1", b"not json", "expected"),
            ("../etc", b"{}", "invalid"),
            (
                "c1",
                b"{\"net_devices\":[{\"host_name\":\"eth0 x\",\"container_name\":\"d0\",\"mac\":null,\"mtu\":1500,\"addresses\":[]}]}",
                "net device \"eth0 x\"",
            ),
        ] {
            let err = parse(id, input).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid);
            assert!(err.to_string().contains(want), "{id} {input:?}: {err}");
        }
    }
}
