//! The apiserver's service: the only one clients talk to.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::container::ContainerConfig;
use crate::helper::HelperKind;
use crate::network::ReservationInfo;
use crate::sandbox::{ExitStatus, Stdio};

pub const SERVICE: &str = "apiserver";

#[derive(Debug, Serialize, Deserialize)]
pub enum ApiRequest {
    Echo(u64),
    Status,
    /// Stop the apiserver. With `helpers`, shut every helper down first (a user's
    /// `system stop`); without, helpers keep running (a supervisor's restart).
    Stop {
        helpers: bool,
    },

    NetworkCreate(NetworkCreate),
    NetworkList,
    /// Replies `Json` with an array of objects: config and live state.
    NetworkInspect(Vec<String>),
    NetworkRemove(Vec<String>),
    NetworkPrune,
    /// IPAM GC now: on one network, or all.
    NetworkGc(Option<String>),
    /// Attach a container to one more network, live if it runs.
    NetworkConnect(NetworkConnect),
    /// Take a container off a network; `force` lets a running one lose its last.
    NetworkDisconnect {
        network: String,
        container: String,
        force: bool,
    },

    /// Built by the CLI; the apiserver validates all of it.
    ContainerCreate {
        config: Box<ContainerConfig>,
    },
    /// Bootstrap and start. With `Stdio::Inherit` the call carries stdin, stdout and
    /// stderr; with `Stdio::Tty` the reply carries the pty master.
    ContainerStart {
        id: String,
        stdio: Stdio,
    },
    /// Create and start as one operation (`run`): a client gone half way leaves no
    /// created container behind, and a failed start removes what was created. Replies
    /// `Started`; with `Stdio::Tty` the reply carries the pty master.
    ContainerRun {
        config: Box<ContainerConfig>,
        stdio: Stdio,
    },
    /// Resolves when the container next stops (at once if it is stopped, or if it was
    /// removed by `--rm` a moment ago).
    ContainerWait {
        id: String,
    },
    ContainerKill {
        id: String,
        signal: i32,
    },
    ContainerStop {
        id: String,
        signal: i32,
        timeout_secs: u64,
    },
    ContainerRemove {
        id: String,
        force: bool,
        /// `rm -v`: its anonymous volumes too.
        #[serde(default)]
        volumes: bool,
    },
    ContainerList {
        all: bool,
    },
    /// Replies `Json` with an array of container records.
    ContainerInspect(Vec<String>),
    /// Replies `Log` with the log's files as descriptors, oldest first.
    ContainerLogs {
        id: String,
    },
    /// With `tty`, replies `Started` with the pty master; `ContainerExecWait` then
    /// collects the exit. Otherwise the call carries stdin, stdout, stderr and replies
    /// `Exited`.
    ContainerExec {
        id: String,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
    },
    ContainerExecWait {
        id: String,
        pid: u32,
    },
    ContainerExecResize {
        id: String,
        pid: u32,
        rows: u16,
        cols: u16,
    },
    ContainerResize {
        id: String,
        rows: u16,
        cols: u16,
    },
    /// `system check`: list leaked or inconsistent resources; repair with `fix`.
    Check {
        fix: bool,
    },
    /// One reading of each running container's cgroup and interfaces (`stats`); none
    /// named: every running container.
    ContainerStats(Vec<String>),
    /// Pull an image. The call carries one descriptor: a pipe the apiserver writes
    /// JSON-lines progress events into (`container_image::progress::Event`). Replies
    /// `Image` with the image's record (JSON).
    ImagePull(ImagePull),
    /// Load images from an archive: the call carries its descriptor (a file or pipe
    /// with a tar; a directory with an OCI layout) and a progress pipe. Replies `Json`
    /// with what was loaded.
    ImageLoad {
        directory: bool,
    },
    /// Save images into the descriptor the call carries (docker-archive with an OCI
    /// layout inside).
    ImageSave(Vec<String>),
    /// Replies `Json`: every image with its tags.
    ImageList,
    /// Replies `Json`: an array of image records.
    ImageInspect(Vec<String>),
    ImageTag {
        source: String,
        target: String,
    },
    /// Replies `Names`: what was untagged and deleted.
    ImageRemove {
        names: Vec<String>,
        force: bool,
    },
    /// Replies `Json`: what was removed and reclaimed.
    ImagePrune {
        all: bool,
    },
    /// `registry login`: checks the credentials against the registry. Replies `Done`.
    RegistryLogin {
        registry: String,
        username: String,
        password: String,
        insecure: bool,
    },
    /// `system prune`: stopped containers (none with a restart pending), unused
    /// networks, dangling images (every unused one with `all`), unused volumes with
    /// `volumes`. Replies `Json`: what was removed, and what could not be.
    SystemPrune {
        all: bool,
        volumes: bool,
    },
    /// `system df`: replies `Json`.
    DiskUsage,
    /// `system check --digests`: also hash every blob of the image store.
    CheckDeep {
        fix: bool,
    },
    /// Replies `Json` with the volume's record.
    VolumeCreate(crate::volume::VolumeCreate),
    /// Replies `Json`: every volume, with the containers using it.
    VolumeList,
    /// Replies `Json`: an array of volume records, with mountpoint and users.
    VolumeInspect(Vec<String>),
    /// Replies `Names`. Refused for a volume a container uses, unless `force`, which
    /// removes those containers first (Podman's `volume rm -f`).
    VolumeRemove {
        names: Vec<String>,
        force: bool,
    },
    /// Replies `Json`: what was removed and reclaimed. Anonymous volumes no container
    /// uses; with `all`, every volume no container uses.
    VolumePrune {
        all: bool,
    },
    /// Lifecycle events as JSON lines, written to the one descriptor the call carries:
    /// those kept from `since` (seconds since the epoch), then live ones, until `until`
    /// or until the caller goes. Replies `Done` at `until`.
    Events {
        since: Option<u64>,
        until: Option<u64>,
        filters: Vec<EventFilter>,
    },
}

/// What kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Container,
    Network,
    Image,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Container => "container",
            EventType::Network => "network",
            EventType::Image => "image",
        }
    }
}

impl std::str::FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<EventType, String> {
        match s {
            "container" => Ok(EventType::Container),
            "network" => Ok(EventType::Network),
            "image" => Ok(EventType::Image),
            other => Err(format!(
                "unknown event type {other:?}: use container, network or image"
            )),
        }
    }
}

/// One condition an event must meet (several of one key: any; of different keys: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventFilter {
    Type(EventType),
    /// The object's id or name.
    Object(String),
    /// The action: create, start, die, oom, destroy, connect, disconnect, pull, …
    Action(String),
}

/// One lifecycle event, as `container events` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing, without gaps, for the life of one apiserver.
    pub seq: u64,
    /// Nanoseconds since the epoch.
    pub time_nano: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub action: String,
    pub id: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Event {
    /// Whether the event meets every kind of condition in `filters`.
    pub fn matches(&self, filters: &[EventFilter]) -> bool {
        // Per key: no condition of that key, or one of them holds.
        let key = |of: fn(&EventFilter) -> bool, holds: &dyn Fn(&EventFilter) -> bool| {
            let mut of_key = filters.iter().filter(|f| of(f)).peekable();
            of_key.peek().is_none() || of_key.any(holds)
        };
        key(
            |f| matches!(f, EventFilter::Type(_)),
            &|f| matches!(f, EventFilter::Type(t) if *t == self.kind),
        ) && key(|f| matches!(f, EventFilter::Object(_)), &|f| match f {
            // An id, a prefix of one of at least 4 characters, or a name.
            EventFilter::Object(o) => {
                *o == self.id
                    || (o.len() >= 4 && self.id.starts_with(o.as_str()))
                    || self.attributes.get("name") == Some(o)
            }
            _ => false,
        }) && key(
            |f| matches!(f, EventFilter::Action(_)),
            &|f| matches!(f, EventFilter::Action(a) if *a == self.action),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagePull {
    pub reference: String,
    /// `os/arch[/variant]`; none: this host's.
    pub platform: Option<String>,
    /// `--tls-verify=false`.
    pub insecure: bool,
    /// From the user's Docker config, read by the CLI.
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ApiResponse {
    Echo(u64),
    Status(SystemStatus),
    Done,
    Json(String),
    Networks(Vec<NetworkSummary>),
    Names(Vec<String>),
    Collected(Vec<(String, ReservationInfo)>),
    Created {
        id: String,
    },
    Started {
        id: String,
        pid: u32,
    },
    Exited(ExitStatus),
    /// Shared: the apiserver keeps each container's summary ready, and lists them
    /// without copying (issue 16).
    Containers(Vec<std::sync::Arc<ContainerSummary>>),
    Log {
        running: bool,
    },
    Findings(Vec<Finding>),
    Stats(Vec<ContainerStats>),
}

/// One reading of a container (`stats`): counters, from which the CLI makes rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    pub id: String,
    /// When it was read, nanoseconds since the Unix epoch.
    pub read_at_ns: u64,
    /// CPU time used since the container started, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    /// The container's limit, or the host's memory when it has none.
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    pub plugin: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub subnet_v6: Option<String>,
    pub gateway_v6: Option<String>,
    pub internal: bool,
    pub labels: Vec<(String, String)>,
    pub options: Vec<(String, String)>,
    /// `--disable-dns`: no name server on the network.
    #[serde(default)]
    pub disable_dns: bool,
    /// `--ipv6`: dual stack; without `subnet_v6`, a free ULA /64 is picked.
    #[serde(default)]
    pub ipv6: bool,
}

/// `network connect [--ip IP] [--ip6 IP] [--mac MAC] [--alias NAME]… NET CONTAINER`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkConnect {
    pub network: String,
    pub container: String,
    pub ip: Option<std::net::Ipv4Addr>,
    pub ip6: Option<std::net::Ipv6Addr>,
    pub mac: Option<crate::container::MacAddr>,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkSummary {
    pub name: String,
    pub plugin: String,
    pub subnet: Option<String>,
    pub subnet_v6: Option<String>,
    pub internal: bool,
    pub builtin: bool,
    pub helper_pid: Option<u32>,
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSummary {
    pub id: String,
    pub command: String,
    pub status: crate::container::Status,
    pub exit_code: Option<i32>,
    pub created: u64,
    pub networks: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub pid: Option<u32>,
    /// starting, healthy or unhealthy, for a running container with a health check.
    #[serde(default)]
    pub health: Option<String>,
}

/// What sort of resource a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    Container,
    /// A helper that is alive but does not answer, or belongs to nothing.
    Helper,
    DuplicateAddress,
    Network,
    /// A reservation no live attachment holds.
    Reservation,
    /// A live attachment whose reservation is gone from disk.
    MissingReservation,
    IpamDir,
    /// Image store: a reference, an image, a layer or a blob.
    Image,
    Link,
    Netns,
    HelperFile,
    NftChain,
    /// A cgroup under the runtime's parent that no running container owns.
    Cgroup,
    /// A user-namespace range reserved for a container that does not run.
    UsernsRange,
    /// A volume: a half-made one, a broken one, or one a container names and lacks.
    Volume,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Container => "container",
            FindingKind::Helper => "helper",
            FindingKind::DuplicateAddress => "duplicate-address",
            FindingKind::Network => "network",
            FindingKind::Reservation => "reservation",
            FindingKind::MissingReservation => "missing-reservation",
            FindingKind::IpamDir => "ipam-dir",
            FindingKind::Image => "image",
            FindingKind::Link => "link",
            FindingKind::Netns => "netns",
            FindingKind::HelperFile => "helper-file",
            FindingKind::NftChain => "nft-chain",
            FindingKind::Cgroup => "cgroup",
            FindingKind::UsernsRange => "userns-range",
            FindingKind::Volume => "volume",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One leaked or inconsistent resource found by `system check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub object: String,
    pub detail: String,
    pub fixed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemStatus {
    pub version: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub uptime_secs: u64,
    pub root: String,
    pub run_dir: String,
    pub helpers: Vec<HelperStatus>,
    /// Operations in flight ("start c1", "network rm n1"), which run to their end
    /// whatever their clients do.
    pub operations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperStatus {
    pub kind: HelperKind,
    pub id: String,
    pub pid: u32,
    pub started: u64,
}
