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
    pub uid: u32,
    pub gid: u32,
    /// Allocate a pseudo-terminal; its master comes back to the caller.
    pub tty: bool,
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
    /// Labels, passed through for inspection.
    pub labels: BTreeMap<String, String>,
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
    /// Tear down (host-side interfaces, devices back to the host, netns) and exit. The
    /// helper never exits on its own.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxResponse {
    Info(HelperInfo),
    Echo(u64),
    SetUp(SetupReport),
    Started { pid: u32 },
    Exited(ExitStatus),
    State(SandboxState),
    Done,
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
}
