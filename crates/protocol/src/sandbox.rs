//! The sandbox helper's service (one helper per container).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::helper::HelperInfo;
use crate::network::Allocation;

pub const SERVICE: &str = "sandbox-helper";

/// The workload process (and, with a different `args`, an exec'd one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Resolved by the sandbox against the container's own /etc/passwd and /etc/group.
    pub user: UserSpec,
    /// Allocate a pseudo-terminal; its master comes back to the caller.
    pub tty: bool,
}

/// `USER[:GROUP]` as `-u` takes it: each a name or a number. Names are looked up in
/// the container's own /etc/passwd and /etc/group when a process starts; a number that
/// is not there is used as it is. Written as the string it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserSpec {
    pub user: Ident,
    /// Given explicitly: the primary group, and no supplementary groups from
    /// /etc/group (as runc and Docker do).
    pub group: Option<Ident>,
}

/// A user or group: a number, or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Id(u32),
    Name(String),
}

impl UserSpec {
    /// Root, the default.
    pub fn root() -> UserSpec {
        UserSpec::ids(0, Some(0))
    }

    pub fn ids(uid: u32, gid: Option<u32>) -> UserSpec {
        UserSpec {
            user: Ident::Id(uid),
            group: gid.map(Ident::Id),
        }
    }

    /// Parses `USER[:GROUP]`, saying what is wrong with it.
    pub fn parse(spec: &str) -> Result<UserSpec, UserSpecError> {
        let bad = |why: &str| UserSpecError {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let ident = |s: &str, what: &str| -> Result<Ident, UserSpecError> {
            if s.is_empty() {
                return Err(bad(&format!("empty {what}")));
            }
            if s.bytes().all(|b| b.is_ascii_digit()) {
                return s
                    .parse()
                    .map(Ident::Id)
                    .map_err(|_| bad(&format!("{what} id {s} is out of range")));
            }
            if s.len() > 256
                || s.chars()
                    .any(|c| c == ':' || c.is_whitespace() || c.is_control())
            {
                return Err(bad(&format!("{what} name {s:?} is not a valid name")));
            }
            Ok(Ident::Name(s.to_string()))
        };
        Ok(UserSpec {
            user: ident(user, "user")?,
            group: group.map(|g| ident(g, "group")).transpose()?,
        })
    }
}

/// Why a `USER[:GROUP]` is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid user {spec:?}: {why} (expected USER[:GROUP], names or numbers)")]
pub struct UserSpecError {
    pub spec: String,
    pub why: String,
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ident::Id(n) => write!(f, "{n}"),
            Ident::Name(s) => f.write_str(s),
        }
    }
}

impl std::fmt::Display for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

impl TryFrom<String> for UserSpec {
    type Error = UserSpecError;
    fn try_from(s: String) -> Result<UserSpec, UserSpecError> {
        UserSpec::parse(&s)
    }
}

impl From<UserSpec> for String {
    fn from(u: UserSpec) -> String {
        u.to_string()
    }
}

/// A host network device to move into the container (OCI `linux.netDevices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceSpec {
    /// Name in the host namespace.
    pub host_name: String,
    /// Name inside the container (default: the host name; may end in `%d`).
    pub name: Option<String>,
}

/// What the runtime learned about a moved device, so it can be given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceRecord {
    pub host_name: String,
    pub container_name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub id: String,
    pub hostname: String,
    /// Root filesystem to pivot into; none: the host's files in a private mount namespace.
    pub rootfs: Option<String>,
    pub dns: Vec<IpAddr>,
    /// Extra /etc/hosts lines (ip, names).
    pub hosts: Vec<(IpAddr, String)>,
    pub allocations: Vec<Allocation>,
    pub net_devices: Vec<NetDeviceSpec>,
    pub process: ProcessSpec,
    /// Where a detached workload's stdout/stderr go.
    pub log_path: String,
    /// When and how far `log_path` is rotated.
    #[serde(default)]
    pub log: crate::container::LogConfig,
    /// Labels, passed through for inspection.
    pub labels: BTreeMap<String, String>,
    /// Applied to the workload and to every `exec` alike.
    pub confinement: crate::security::Confinement,
    /// cgroup limits, devices and rlimits, as they apply (issue 10).
    #[serde(default)]
    pub resources: crate::resources::ResourceConfig,
    /// The container's cgroup, relative to every hierarchy's root
    /// (`<cgroup-parent>/<id>`). None: no cgroup of its own.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The cgroup lines of the mount table the helper shares with the apiserver, read
    /// once by the apiserver (`Layout::mount_lines`). None: the helper reads the table.
    #[serde(default)]
    pub cgroup_mounts: Option<String>,
    /// `--userns=auto`: the host ids the container's `0..size` map onto.
    #[serde(default)]
    pub userns: Option<crate::resources::IdRange>,
    /// `--privileged`: every host device, no device rules.
    #[serde(default)]
    pub all_devices: bool,
    /// An image's root filesystem: overlayfs mounted by the sandbox in the workload's
    /// own mount namespace (so nothing stays mounted on the host). Instead of `rootfs`.
    #[serde(default)]
    pub overlay: Option<OverlaySpec>,
    /// Binds, volumes and tmpfs mounts, parents before children (issue 12).
    #[serde(default)]
    pub mounts: Vec<crate::volume::SandboxMount>,
}

/// The layers (read-only, top first) and the container's own writable directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// The directory the layer names are relative to (the overlay's mount options
    /// must fit in a page, so they are short names under it).
    pub layers_dir: String,
    /// `<chain-hex>/diff`, top layer first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
    /// Where it is mounted (an empty directory of the container's).
    pub target: String,
    /// Mounted `volatile`: no sync of the upper directory's filesystem at unmount.
    /// For a container removed when it ends (`--rm`), whose changes go with it: the
    /// sync a writable overlay's last unmount does is of the whole host filesystem
    /// under `upper`, everyone's dirty data included.
    #[serde(default)]
    pub volatile: bool,
}

/// A Linux interface realised inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub network: String,
    pub plugin: crate::network::PluginKind,
    pub ifname: String,
    /// The host-side peer (veth) if any: removed at shutdown.
    pub host_ifname: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupReport {
    pub netns_path: String,
    pub interfaces: Vec<InterfaceReport>,
    pub net_devices: Vec<NetDeviceRecord>,
}

/// How the workload's stdio is wired at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdio {
    /// stdout/stderr to the container log, stdin from /dev/null.
    Log,
    /// The call carries three descriptors: stdin, stdout, stderr.
    Inherit,
    /// A pty: the reply carries its master.
    Tty,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxRequest {
    Info,
    Echo(u64),
    /// Build namespaces' contents: interfaces, devices, /etc files.
    Setup(Box<SandboxSpec>),
    Start {
        stdio: Stdio,
    },
    /// Resolves when the workload has exited; pending until then.
    Wait,
    Kill {
        signal: i32,
    },
    /// `signal`, then SIGKILL after `timeout_secs` if the workload still runs.
    Stop {
        signal: i32,
        timeout_secs: u64,
    },
    /// Run a further process in the container's namespaces. The reply (`Started`) comes
    /// at once, carrying the pty master with `Tty`; `ExecWait` collects the exit.
    Exec {
        process: ProcessSpec,
        stdio: Stdio,
    },
    ExecWait {
        pid: u32,
    },
    ExecResize {
        pid: u32,
        rows: u16,
        cols: u16,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    State,
    /// Realise one more allocation as an interface of the set-up sandbox, by the same
    /// strategy as `Setup` (`network connect`). `default_route`: the container has no
    /// other addressed interface. Replies `Attached`.
    Attach {
        allocation: Box<Allocation>,
        default_route: bool,
    },
    /// Remove the interface of `network` named `ifname` (`network disconnect`).
    /// Idempotent: an interface the sandbox does not have is fine.
    Detach {
        network: String,
        ifname: String,
    },
    /// Tear down (host-side interfaces, devices back to the host, netns) and exit. The
    /// helper never exits on its own.
    Shutdown,
    // New variants go last: a helper outlives an upgrade of the apiserver, and bincode
    // names a variant by its index.
    /// Bind the netns at its mount path if only the helper's descriptor holds it (a
    /// CNI network connected to a container that had none). Idempotent. Replies
    /// `NetnsBound` with the path.
    BindNetns,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxResponse {
    Info(HelperInfo),
    Echo(u64),
    SetUp(SetupReport),
    Attached(InterfaceReport),
    Started { pid: u32 },
    Exited(ExitStatus),
    State(SandboxState),
    Done,
    NetnsBound(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub pid: Option<u32>,
    pub exit: Option<ExitStatus>,
    pub setup: Option<SetupReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number when killed by a signal (as shells report it).
    pub code: i32,
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitStatus {
    /// An exit without an OOM kill.
    pub fn new(code: i32, signal: Option<i32>) -> ExitStatus {
        ExitStatus {
            code,
            signal,
            oom_killed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_specs_parse_names_and_numbers_and_print_back() {
        for (text, user, group) in [
            ("nobody", Ident::Name("nobody".into()), None),
            ("1000", Ident::Id(1000), None),
            ("1000:50", Ident::Id(1000), Some(Ident::Id(50))),
            (
                "www-data:adm",
                Ident::Name("www-data".into()),
                Some(Ident::Name("adm".into())),
            ),
        ] {
            let spec = UserSpec::parse(text).unwrap();
            assert_eq!((spec.user.clone(), spec.group.clone()), (user, group));
            assert_eq!(spec.to_string(), text);
        }
        for bad in ["", ":", "a:", ":b", "a:b:c", "a b", "99999999999", "x\n"] {
            let err = UserSpec::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid user"), "{bad:?}: {err}");
        }
    }
}
