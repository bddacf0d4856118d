//! Helper processes: spawning, adopting after a restart, and noticing death.
//!
//! A helper is reached only through endpoints it vended. When one dies, its endpoints
//! close, the table entry goes, and a `HelperGone` event tells the orchestrator, which
//! decides what to do; nothing here starts a helper again.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use container_protocol::bootstrap::{
    bootstrap_client, bootstrap_connect, create_endpoint, BootstrapClient,
};
use container_protocol::helper::peer_name;
use container_protocol::helper_server::BOOTSTRAP_FD_ENV;
use container_protocol::network::{NetworkRequest, NetworkResponse};
use container_protocol::sandbox::{SandboxRequest, SandboxResponse};
use container_protocol::{Client, HelperInfo, HelperKind, ProtocolError};
use container_store::Paths;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// What differs between helper kinds, as far as their lifecycle goes.
pub trait HelperProto: Send + Sync + 'static {
    type Req: Serialize + Send + 'static;
    type Resp: DeserializeOwned + Send + 'static;
    const KIND: HelperKind;
    fn info_request() -> Self::Req;
    fn shutdown_request() -> Self::Req;
    fn as_info(resp: Self::Resp) -> Option<HelperInfo>;
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

pub type NetworkClient = Client<NetworkRequest, NetworkResponse>;
pub type SandboxClient = Client<SandboxRequest, SandboxResponse>;

/// A live helper as the apiserver holds it: its identity and one endpoint.
pub struct Helper<P: HelperProto> {
    pub info: HelperInfo,
    pub client: Client<P::Req, P::Resp>,
}

impl<P: HelperProto> Clone for Helper<P> {
    fn clone(&self) -> Self {
        Helper {
            info: self.info.clone(),
            client: self.client.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HelperGone {
    pub kind: HelperKind,
    pub id: String,
    pub pid: u32,
}

/// Finds helper binaries: the apiserver's own directory first (a build tree or an
/// install prefix), then the libexec directory.
pub fn default_helper_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/libexec/container"))
}

const LIBEXEC: &str = "/usr/libexec/container";

pub struct Spawner {
    paths: Paths,
    helper_dir: PathBuf,
}

impl Spawner {
    pub fn new(paths: Paths, helper_dir: PathBuf) -> Self {
        Spawner { paths, helper_dir }
    }

    fn binary(&self, kind: HelperKind) -> PathBuf {
        let local = self.helper_dir.join(kind.binary());
        if local.exists() {
            return local;
        }
        Path::new(LIBEXEC).join(kind.binary())
    }

    /// Starts a helper with one end of a socketpair as its bootstrap channel (fd 3) in
    /// its own session, so a terminal's signals and the apiserver's exit leave it alone.
    pub async fn spawn(
        &self,
        kind: HelperKind,
        id: &str,
        extra_args: &[String],
    ) -> Result<(BootstrapClient, u32), ApiError> {
        let peer = peer_name(kind, id);
        let dir = self.paths.helper_dir(kind.as_str());
        // Root-only: the bootstrap sockets inside hand out endpoints to anyone who connects.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(ApiError::io(format!("{peer}: create {}", dir.display())))?;
        let log_path = self.paths.helper_file(kind.as_str(), id, "log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(ApiError::io(format!(
                "{peer}: open log {}",
                log_path.display()
            )))?;
        let log2 = log
            .try_clone()
            .map_err(ApiError::io(format!("{peer}: log")))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ApiError::io(format!("{peer}: socketpair"))(e.into()))?;
        let theirs_raw = theirs.as_raw_fd();
        let binary = self.binary(kind);
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.arg("--root")
            .arg(&self.paths.root)
            .arg("--run-dir")
            .arg(&self.paths.run)
            .arg("--id")
            .arg(id)
            .args(extra_args)
            .env(BOOTSTRAP_FD_ENV, "3")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(false);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if theirs_raw == 3 {
                    let flags = nix::fcntl::FdFlag::empty();
                    nix::fcntl::fcntl(
                        std::os::fd::BorrowedFd::borrow_raw(3),
                        nix::fcntl::FcntlArg::F_SETFD(flags),
                    )
                    .map_err(std::io::Error::from)?;
                } else if libc_dup2(theirs_raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(ApiError::io(format!("{peer}: spawn {}", binary.display())))?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        // Reap it whenever it exits; its death is noticed through its endpoints.
        let reap_peer = peer.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => tracing::info!("{reap_peer} (pid {pid}) exited: {status}"),
                Err(e) => tracing::warn!("{reap_peer} (pid {pid}): wait: {e}"),
            }
        });
        let stream = container_protocol::bootstrap::into_tokio(ours)
            .map_err(ApiError::io(format!("{peer}: bootstrap socket")))?;
        match bootstrap_client(stream, &peer).await {
            Ok(b) => Ok((b, pid)),
            Err(e) => Err(ApiError::Invalid(format!(
                "{e} during start{}",
                log_tail(&log_path)
            ))),
        }
    }

    pub fn socket(&self, kind: HelperKind, id: &str) -> PathBuf {
        self.paths.helper_file(kind.as_str(), id, "sock")
    }

    /// Ids of helpers of `kind` that left a bootstrap socket (alive or not).
    pub fn listed(&self, kind: HelperKind) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.paths.helper_dir(kind.as_str())) else {
            return vec![];
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".sock").map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// Removes a helper's log, once nothing it logged can matter (its object is gone).
    pub fn remove_log(&self, kind: HelperKind, id: &str) {
        let _ = std::fs::remove_file(self.paths.helper_file(kind.as_str(), id, "log"));
    }

    /// Removes what a dead helper left behind under the run directory.
    pub fn remove_leftovers(&self, kind: HelperKind, id: &str) {
        for ext in ["sock", "pid"] {
            let _ = std::fs::remove_file(self.paths.helper_file(kind.as_str(), id, ext));
        }
    }
}

fn libc_dup2(old: i32, new: i32) -> i32 {
    // nix's dup2 wants owned descriptors; between fork and exec a raw call is simplest.
    unsafe { nix::libc::dup2(old, new) }
}

/// Last lines of a helper's log, to explain a helper that died while starting.
pub fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut tail: Vec<&str> = lines.into_iter().rev().collect();
    tail.retain(|l| !l.trim().is_empty());
    format!("; its log ({}) ends: {}", path.display(), tail.join(" | "))
}

/// The live helpers of one kind.
pub struct HelperTable<P: HelperProto> {
    helpers: Mutex<BTreeMap<String, Helper<P>>>,
    events: mpsc::UnboundedSender<HelperGone>,
}

impl<P: HelperProto> HelperTable<P> {
    pub fn new(events: mpsc::UnboundedSender<HelperGone>) -> Arc<Self> {
        Arc::new(HelperTable {
            helpers: Mutex::new(BTreeMap::new()),
            events,
        })
    }

    pub fn get(&self, id: &str) -> Option<Helper<P>> {
        self.helpers.lock().ok()?.get(id).cloned()
    }

    pub fn list(&self) -> Vec<Helper<P>> {
        self.helpers
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Opens an endpoint through `bootstrap`, learns who answers, and watches it.
    pub async fn register(
        self: &Arc<Self>,
        id: &str,
        bootstrap: &BootstrapClient,
    ) -> Result<Helper<P>, ApiError> {
        let client: Client<P::Req, P::Resp> = create_endpoint(bootstrap, P::KIND.service()).await?;
        let info = client
            .call(P::info_request())
            .await
            .map_err(ApiError::from)
            .and_then(|r| {
                P::as_info(r).ok_or_else(|| {
                    ApiError::Invalid(format!("{}: unexpected answer to info", client.peer()))
                })
            })?;
        if info.kind != P::KIND || info.id != id {
            return Err(ApiError::Invalid(format!(
                "{}: answers as helper {} {}",
                client.peer(),
                info.kind,
                info.id
            )));
        }
        let helper = Helper { info, client };
        if let Ok(mut h) = self.helpers.lock() {
            h.insert(id.to_string(), helper.clone());
        }
        let table = Arc::downgrade(self);
        let watched = helper.clone();
        tokio::spawn(async move {
            watched.client.closed().await;
            let Some(table) = table.upgrade() else { return };
            let removed = table
                .helpers
                .lock()
                .map(|mut h| match h.get(&watched.info.id) {
                    Some(cur) if cur.info.pid == watched.info.pid => {
                        h.remove(&watched.info.id);
                        true
                    }
                    _ => false,
                })
                .unwrap_or(false);
            if removed {
                tracing::warn!(
                    "{} (pid {}) is gone",
                    watched.client.peer(),
                    watched.info.pid
                );
                let _ = table.events.send(HelperGone {
                    kind: P::KIND,
                    id: watched.info.id.clone(),
                    pid: watched.info.pid,
                });
            }
        });
        Ok(helper)
    }

    /// Forgets a helper we shut down on purpose, so its closing is not reported as death.
    pub fn forget(&self, id: &str) -> Option<Helper<P>> {
        self.helpers.lock().ok()?.remove(id)
    }

    /// Starts a new helper and registers it.
    pub async fn start(
        self: &Arc<Self>,
        spawner: &Spawner,
        id: &str,
        extra_args: &[String],
    ) -> Result<Helper<P>, ApiError> {
        let (bootstrap, _pid) = spawner.spawn(P::KIND, id, extra_args).await?;
        self.register(id, &bootstrap).await
    }

    /// Reaches every helper of this kind that is still alive after an apiserver restart,
    /// through its bootstrap socket; cleans up after the dead ones. Returns the ids of
    /// the dead.
    pub async fn adopt_all(self: &Arc<Self>, spawner: &Spawner) -> Vec<String> {
        let mut dead = Vec::new();
        for id in spawner.listed(P::KIND) {
            let peer = peer_name(P::KIND, &id);
            let result = match bootstrap_connect(&spawner.socket(P::KIND, &id), &peer).await {
                Ok(b) => self.register(&id, &b).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(h) => tracing::info!("reconnected to {peer} (pid {})", h.info.pid),
                Err(e) => {
                    tracing::warn!("{peer} is not alive ({e}); cleaning up after it");
                    spawner.remove_leftovers(P::KIND, &id);
                    dead.push(id);
                }
            }
        }
        dead
    }

    /// Asks a helper to exit and waits until its endpoint closes. `true` when it
    /// answered (it tore down what it owns); `false` when it was already gone or died
    /// on the way, so what it owns may be left for the caller to clean.
    pub async fn shutdown(&self, id: &str) -> Result<bool, ApiError> {
        let Some(helper) = self.forget(id) else {
            return Ok(false);
        };
        let clean = match helper.client.call(P::shutdown_request()).await {
            Ok(_) => true,
            Err(ProtocolError::Gone { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        helper.client.closed().await;
        Ok(clean)
    }
}
