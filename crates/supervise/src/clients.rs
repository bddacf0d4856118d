//! One typed method per call of each helper's service, each bounded by a deadline: a
//! helper that is alive but does not answer (stopped, wedged) fails the call with a
//! timeout instead of hanging the apiserver. Waits for a workload have no deadline.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use container_protocol::network::{
    Allocation, Attachment, NameEntry, NetworkRequest, NetworkResponse, NetworkState,
    ReservationInfo,
};
use container_protocol::sandbox::{
    ExitStatus, InterfaceReport, ProcessSpec, SandboxRequest, SandboxResponse, SandboxSpec,
    SandboxState, SetupReport, Stdio,
};
use container_protocol::{HelperInfo, HelperKind, ProtocolError};

use crate::table::{Helper, HelperProto};

/// How long calls may take before the helper is taken for not answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Calls that answer from memory or do a few netlink requests.
    pub quick: Duration,
    /// Calls that build things (interfaces, CNI plugins run as processes).
    pub slow: Duration,
    /// What a helper's own shutdown may take (its workload's SIGKILL grace).
    pub grace: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines::from_quick(Duration::from_secs(10))
    }
}

impl Deadlines {
    pub fn from_quick(quick: Duration) -> Deadlines {
        Deadlines {
            quick,
            slow: quick * 6,
            grace: quick,
        }
    }
}

pub struct NetworkProto;
pub struct SandboxProto;

impl HelperProto for NetworkProto {
    type Req = NetworkRequest;
    type Resp = NetworkResponse;
    const KIND: HelperKind = HelperKind::Network;
    fn info_request() -> NetworkRequest {
        NetworkRequest::Info
    }
    fn shutdown_request() -> NetworkRequest {
        NetworkRequest::Shutdown
    }
    fn as_info(resp: NetworkResponse) -> Option<HelperInfo> {
        match resp {
            NetworkResponse::Info(i) => Some(i),
            _ => None,
        }
    }
}

impl HelperProto for SandboxProto {
    type Req = SandboxRequest;
    type Resp = SandboxResponse;
    const KIND: HelperKind = HelperKind::Sandbox;
    fn info_request() -> SandboxRequest {
        SandboxRequest::Info
    }
    fn shutdown_request() -> SandboxRequest {
        SandboxRequest::Shutdown
    }
    fn as_info(resp: SandboxResponse) -> Option<HelperInfo> {
        match resp {
            SandboxResponse::Info(i) => Some(i),
            _ => None,
        }
    }
}

fn unexpected(peer: &str, what: &str) -> ProtocolError {
    ProtocolError::Malformed {
        peer: peer.to_string(),
        message: format!("unexpected answer to {what}"),
    }
}

/// One call, its expected answer picked out by `$pat => $out`.
macro_rules! call {
    ($h:expr, $what:expr, $deadline:expr, $req:expr, $fds:expr, $pat:pat => $out:expr) => {{
        let (resp, _) = $h.client.call_within($what, $deadline, $req, $fds).await?;
        match resp {
            $pat => Ok($out),
            #[allow(unreachable_patterns)]
            _ => Err(unexpected($h.peer(), $what)),
        }
    }};
}

impl Helper<NetworkProto> {
    pub async fn echo(&self, n: u64) -> Result<u64, ProtocolError> {
        call!(self, "echo", self.deadlines.quick, NetworkRequest::Echo(n), vec![], NetworkResponse::Echo(m) => m)
    }

    /// Creates whatever of the network-wide resources is missing (idempotent).
    pub async fn setup(&self) -> Result<(), ProtocolError> {
        call!(self, "set up", self.deadlines.slow, NetworkRequest::Setup, vec![], NetworkResponse::Done => ())
    }

    pub async fn allocate(&self, att: Attachment) -> Result<Allocation, ProtocolError> {
        call!(self, "allocate", self.deadlines.slow, NetworkRequest::Allocate(att), vec![], NetworkResponse::Allocated(a) => a)
    }

    pub async fn release(
        &self,
        container_id: &str,
        ifname: &str,
        netns: Option<String>,
    ) -> Result<Vec<IpAddr>, ProtocolError> {
        let req = NetworkRequest::Release {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            netns,
        };
        call!(self, "release", self.deadlines.slow, req, vec![], NetworkResponse::Released(ips) => ips)
    }

    /// Releases what no live attachment holds; `live` must include the attachments
    /// being made (see the apiserver's GC gate).
    pub async fn gc(
        &self,
        live: Vec<(String, String)>,
    ) -> Result<Vec<ReservationInfo>, ProtocolError> {
        let req = NetworkRequest::Gc { live };
        call!(self, "gc", self.deadlines.slow, req, vec![], NetworkResponse::Collected(list) => list)
    }

    /// Puts back the reservation of a live attachment whose file is gone.
    pub async fn restore(
        &self,
        container_id: &str,
        ifname: &str,
        ips: Vec<IpAddr>,
    ) -> Result<Vec<IpAddr>, ProtocolError> {
        let req = NetworkRequest::Restore {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            ips,
        };
        call!(self, "restore", self.deadlines.quick, req, vec![], NetworkResponse::Released(ips) => ips)
    }

    pub async fn state(&self) -> Result<NetworkState, ProtocolError> {
        call!(self, "state", self.deadlines.quick, NetworkRequest::State, vec![], NetworkResponse::State(s) => s)
    }

    /// Replaces the table of names the network's name server answers.
    pub async fn names(&self, entries: Vec<NameEntry>) -> Result<(), ProtocolError> {
        call!(self, "names", self.deadlines.quick, NetworkRequest::Names(entries), vec![], NetworkResponse::Done => ())
    }

    pub async fn names_of(
        &self,
        container_id: String,
        entries: Vec<NameEntry>,
    ) -> Result<(), ProtocolError> {
        let request = NetworkRequest::NamesOf {
            container_id,
            entries,
        };
        call!(self, "names", self.deadlines.quick, request, vec![], NetworkResponse::Done => ())
    }

    pub async fn teardown(&self) -> Result<(), ProtocolError> {
        call!(self, "tear down", self.deadlines.slow, NetworkRequest::Teardown, vec![], NetworkResponse::Done => ())
    }
}

impl Helper<SandboxProto> {
    pub async fn echo(&self, n: u64) -> Result<u64, ProtocolError> {
        call!(self, "echo", self.deadlines.quick, SandboxRequest::Echo(n), vec![], SandboxResponse::Echo(m) => m)
    }

    pub async fn setup(&self, spec: SandboxSpec) -> Result<SetupReport, ProtocolError> {
        let req = SandboxRequest::Setup(Box::new(spec));
        call!(self, "set up", self.deadlines.slow, req, vec![], SandboxResponse::SetUp(r) => r)
    }

    /// One more interface in the set-up sandbox (`network connect`).
    pub async fn attach(
        &self,
        allocation: Allocation,
        default_route: bool,
    ) -> Result<InterfaceReport, ProtocolError> {
        let req = SandboxRequest::Attach {
            allocation: Box::new(allocation),
            default_route,
        };
        call!(self, "attach", self.deadlines.slow, req, vec![], SandboxResponse::Attached(r) => r)
    }

    /// Binds the container's netns at its mount path, if it is not yet; the path.
    pub async fn bind_netns(&self) -> Result<String, ProtocolError> {
        call!(self, "bind netns", self.deadlines.quick, SandboxRequest::BindNetns, vec![], SandboxResponse::NetnsBound(p) => p)
    }

    /// Removes an interface from the sandbox (`network disconnect`); idempotent.
    pub async fn detach(&self, network: &str, ifname: &str) -> Result<(), ProtocolError> {
        let req = SandboxRequest::Detach {
            network: network.to_string(),
            ifname: ifname.to_string(),
        };
        call!(self, "detach", self.deadlines.slow, req, vec![], SandboxResponse::Done => ())
    }

    /// Starts the workload; for a terminal the reply carries its master.
    pub async fn start(
        &self,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Vec<OwnedFd>), ProtocolError> {
        let req = SandboxRequest::Start { stdio };
        match self
            .client
            .call_within("start", self.deadlines.slow, req, fds)
            .await?
        {
            (SandboxResponse::Started { pid }, fds) => Ok((pid, fds)),
            _ => Err(unexpected(self.peer(), "start")),
        }
    }

    /// Resolves when the workload exits: no deadline, a workload runs as long as it runs.
    pub async fn wait(&self) -> Result<ExitStatus, ProtocolError> {
        match self.client.call(SandboxRequest::Wait).await? {
            SandboxResponse::Exited(s) => Ok(s),
            _ => Err(unexpected(self.peer(), "wait")),
        }
    }

    pub async fn kill(&self, signal: i32) -> Result<(), ProtocolError> {
        call!(self, "kill", self.deadlines.quick, SandboxRequest::Kill { signal }, vec![], SandboxResponse::Done => ())
    }

    /// `signal`, then SIGKILL after `timeout_secs`; answers once the workload is gone.
    pub async fn stop(&self, signal: i32, timeout_secs: u64) -> Result<ExitStatus, ProtocolError> {
        let deadline =
            Duration::from_secs(timeout_secs) + self.deadlines.grace + self.deadlines.quick;
        let req = SandboxRequest::Stop {
            signal,
            timeout_secs,
        };
        call!(self, "stop", deadline, req, vec![], SandboxResponse::Exited(s) => s)
    }

    /// Starts a process in the container; `exec_wait` collects its exit.
    pub async fn exec(
        &self,
        process: ProcessSpec,
        stdio: Stdio,
        fds: Vec<OwnedFd>,
    ) -> Result<(u32, Vec<OwnedFd>), ProtocolError> {
        let req = SandboxRequest::Exec { process, stdio };
        match self
            .client
            .call_within("exec", self.deadlines.slow, req, fds)
            .await?
        {
            (SandboxResponse::Started { pid }, fds) => Ok((pid, fds)),
            _ => Err(unexpected(self.peer(), "exec")),
        }
    }

    /// Resolves when an exec'd process exits: no deadline.
    pub async fn exec_wait(&self, pid: u32) -> Result<ExitStatus, ProtocolError> {
        match self.client.call(SandboxRequest::ExecWait { pid }).await? {
            SandboxResponse::Exited(s) => Ok(s),
            _ => Err(unexpected(self.peer(), "exec wait")),
        }
    }

    pub async fn exec_resize(&self, pid: u32, rows: u16, cols: u16) -> Result<(), ProtocolError> {
        let req = SandboxRequest::ExecResize { pid, rows, cols };
        call!(self, "resize", self.deadlines.quick, req, vec![], SandboxResponse::Done => ())
    }

    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), ProtocolError> {
        let req = SandboxRequest::Resize { rows, cols };
        call!(self, "resize", self.deadlines.quick, req, vec![], SandboxResponse::Done => ())
    }

    pub async fn state(&self) -> Result<SandboxState, ProtocolError> {
        call!(self, "state", self.deadlines.quick, SandboxRequest::State, vec![], SandboxResponse::State(s) => s)
    }

    /// The shutdown's own deadline: the workload's kill grace and a quick answer.
    pub fn shutdown_deadline(&self) -> Duration {
        self.deadlines.grace + self.deadlines.quick
    }
}
