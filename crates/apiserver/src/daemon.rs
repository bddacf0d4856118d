//! The apiserver's life: prepare state, reconnect to live helpers, serve, stop.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use container_netlink::Netlink;
use container_protocol::api::{ApiRequest, ApiResponse, HelperStatus, SystemStatus};
use container_protocol::sandbox::SandboxResponse;
use container_protocol::{RemoteError, Service};
use container_store::Paths;
use std::os::fd::OwnedFd;

use crate::containers::ContainerLocks;
use tokio::sync::{mpsc, Notify};

use crate::error::ApiError;
use crate::helpers::{HelperGone, HelperTable, NetworkProto, SandboxProto, Spawner};
use crate::notify::sd_notify;
use crate::server::{self, Access};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Options {
    pub paths: Paths,
    pub helper_dir: PathBuf,
    pub access: Access,
}

pub struct ApiServer {
    pub paths: Paths,
    pub spawner: Spawner,
    pub networks: Arc<HelperTable<NetworkProto>>,
    pub sandboxes: Arc<HelperTable<SandboxProto>>,
    /// One long-lived netlink connection in the host namespace.
    pub host_netlink: Netlink,
    /// Serialises explicit starts of network helpers (one helper per network).
    pub network_starts: tokio::sync::Mutex<()>,
    /// Serialises network create/remove so name and subnet checks stay true.
    pub network_ops: tokio::sync::Mutex<()>,
    /// Serialises container creation (name uniqueness, net device ownership).
    pub container_ops: tokio::sync::Mutex<()>,
    pub containers: ContainerLocks,
    started: SystemTime,
    stop: Notify,
    stop_helpers: AtomicBool,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn make_dir(path: &std::path::Path, mode: u32) -> Result<(), ApiError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(ApiError::io(format!("create {}", path.display())))
}

/// Holds `<run>/apiserver.lock` for the life of the process: one apiserver per tree.
fn lock(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, ApiError> {
    let path = paths.apiserver_lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ApiError::io(format!("open {}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        ApiError::Conflict(format!(
            "another apiserver holds {} (run dir {})",
            path.display(),
            paths.run.display()
        ))
    })
}

pub async fn run(opts: Options) -> Result<(), ApiError> {
    let paths = opts.paths.clone();
    make_dir(&paths.root, 0o711)?;
    make_dir(&paths.run, 0o711)?;
    make_dir(&paths.helpers(), 0o700)?;
    let _lock = lock(&paths)?;

    let (events_tx, mut events) = mpsc::unbounded_channel::<HelperGone>();
    let server = Arc::new(ApiServer {
        paths: paths.clone(),
        spawner: Spawner::new(paths.clone(), opts.helper_dir.clone()),
        networks: HelperTable::new(events_tx.clone()),
        sandboxes: HelperTable::new(events_tx),
        host_netlink: Netlink::connect().map_err(|e| ApiError::Invalid(format!("netlink: {e}")))?,
        network_starts: tokio::sync::Mutex::new(()),
        network_ops: tokio::sync::Mutex::new(()),
        container_ops: tokio::sync::Mutex::new(()),
        containers: ContainerLocks::default(),
        started: SystemTime::now(),
        stop: Notify::new(),
        stop_helpers: AtomicBool::new(false),
    });

    for dead in server.networks.adopt_all(&server.spawner).await {
        tracing::info!("network helper {dead} died while the apiserver was away");
    }
    let dead_sandboxes = server.sandboxes.adopt_all(&server.spawner).await;
    for dead in &dead_sandboxes {
        tracing::info!("sandbox helper {dead} died while the apiserver was away");
    }
    // Containers first: IPAM GC at network helper start must see the true live set.
    server.reconcile_containers(&dead_sandboxes).await;
    server.start_networks().await;

    let listener = server::bind(&paths.apiserver_socket(), &opts.access)?;
    tokio::spawn(server::accept_loop(
        listener,
        opts.access.clone(),
        server.clone(),
    ));
    let watcher = server.clone();
    tokio::spawn(async move {
        while let Some(gone) = events.recv().await {
            watcher.clone().helper_gone(gone).await;
        }
    });
    tracing::info!(
        "apiserver {VERSION} ready on {} (pid {})",
        paths.apiserver_socket().display(),
        std::process::id()
    );
    sd_notify("READY=1");

    wait_for_stop(&server.stop).await;
    sd_notify("STOPPING=1");
    let _ = std::fs::remove_file(paths.apiserver_socket());
    if server.stop_helpers.load(Ordering::SeqCst) {
        server.shutdown_helpers().await;
    }
    tracing::info!("apiserver stopped");
    Ok(())
}

async fn wait_for_stop(stop: &Notify) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = stop.notified() => {}
        _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
            tracing::info!("SIGTERM: stopping; helpers keep running");
        }
        _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
            tracing::info!("SIGINT: stopping; helpers keep running");
        }
    }
}

impl ApiServer {
    fn status(&self) -> SystemStatus {
        let mut helpers: Vec<HelperStatus> = self
            .networks
            .list()
            .into_iter()
            .map(|h| h.info)
            .chain(self.sandboxes.list().into_iter().map(|h| h.info))
            .map(|i| HelperStatus {
                kind: i.kind,
                id: i.id,
                pid: i.pid,
                started: i.started,
            })
            .collect();
        helpers.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        SystemStatus {
            version: VERSION.to_string(),
            pid: std::process::id(),
            started,
            uptime_secs: self.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
            root: self.paths.root.display().to_string(),
            run_dir: self.paths.run.display().to_string(),
            helpers,
        }
    }

    async fn shutdown_helpers(&self) {
        for h in self.sandboxes.list() {
            if let Err(e) = self.sandboxes.shutdown(&h.info.id).await {
                tracing::warn!("shutting down {}: {e}", h.client.peer());
            }
        }
        for h in self.networks.list() {
            if let Err(e) = self.networks.shutdown(&h.info.id).await {
                tracing::warn!("shutting down {}: {e}", h.client.peer());
            }
        }
    }

    /// A helper died without being asked to. Nothing restarts it here: the operation
    /// that next needs it starts a new one explicitly.
    async fn helper_gone(self: Arc<Self>, gone: HelperGone) {
        tracing::warn!(
            "helper {} {} (pid {}) exited unexpectedly",
            gone.kind,
            gone.id,
            gone.pid
        );
        self.spawner.remove_leftovers(gone.kind, &gone.id);
    }

    async fn dispatch(
        self: Arc<Self>,
        req: ApiRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(ApiResponse, Vec<OwnedFd>), ApiError> {
        let reply = match req {
            ApiRequest::Echo(n) => ApiResponse::Echo(n),
            ApiRequest::Status => ApiResponse::Status(self.status()),
            ApiRequest::Stop { helpers } => {
                self.stop_helpers.store(helpers, Ordering::SeqCst);
                self.stop.notify_one();
                ApiResponse::Done
            }
            ApiRequest::NetworkCreate(req) => {
                let config = self.network_create(req).await?;
                ApiResponse::Names(vec![config.id])
            }
            ApiRequest::NetworkList => ApiResponse::Networks(self.network_list().await),
            ApiRequest::NetworkInspect(names) => {
                ApiResponse::Json(self.network_inspect(names).await?)
            }
            ApiRequest::NetworkRemove(names) => {
                ApiResponse::Names(self.network_remove(names).await?)
            }
            ApiRequest::NetworkPrune => ApiResponse::Names(self.network_prune().await?),
            ApiRequest::NetworkGc(name) => ApiResponse::Collected(self.network_gc(name).await?),
            ApiRequest::ContainerCreate { config } => ApiResponse::Created {
                id: self.container_create(&config).await?,
            },
            ApiRequest::ContainerStart { id, stdio } => {
                let (pid, fds) = self.container_start(&id, stdio, fds).await?;
                return Ok((ApiResponse::Started { id, pid }, fds));
            }
            ApiRequest::ContainerWait { id } => {
                ApiResponse::Exited(self.container_wait(&id).await?)
            }
            ApiRequest::ContainerKill { id, signal } => {
                self.container_kill(&id, signal).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerStop {
                id,
                signal,
                timeout_secs,
            } => {
                self.container_stop(&id, signal, timeout_secs).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerRemove { id, force } => {
                self.container_remove(&id, force).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerList { all } => ApiResponse::Containers(self.container_list(all)),
            ApiRequest::ContainerInspect(ids) => ApiResponse::Json(self.container_inspect(ids)?),
            ApiRequest::ContainerLogs { id } => {
                let (running, fd) = self.container_logs(&id)?;
                return Ok((ApiResponse::Log { running }, vec![fd]));
            }
            ApiRequest::ContainerExec { id, args, env, tty } => {
                let (reply, fds) = self.container_exec(&id, args, env, tty, fds).await?;
                let reply = match reply {
                    SandboxResponse::Started { pid } => ApiResponse::Started { id, pid },
                    SandboxResponse::Exited(s) => ApiResponse::Exited(s),
                    _ => return Err(ApiError::Invalid("unexpected answer to exec".into())),
                };
                return Ok((reply, fds));
            }
            ApiRequest::ContainerExecWait { id, pid } => {
                ApiResponse::Exited(self.container_exec_wait(&id, pid).await?)
            }
            ApiRequest::ContainerExecResize {
                id,
                pid,
                rows,
                cols,
            } => {
                self.container_exec_resize(&id, pid, rows, cols).await?;
                ApiResponse::Done
            }
            ApiRequest::ContainerResize { id, rows, cols } => {
                self.container_resize(&id, rows, cols).await?;
                ApiResponse::Done
            }
            ApiRequest::Check { fix } => ApiResponse::Findings(self.check(fix).await?),
        };
        Ok((reply, vec![]))
    }
}

impl Service for ApiServer {
    type Req = ApiRequest;
    type Resp = ApiResponse;
    const NAME: &'static str = container_protocol::api::SERVICE;

    async fn handle(
        self: Arc<Self>,
        req: ApiRequest,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(ApiResponse, Vec<std::os::fd::OwnedFd>), RemoteError> {
        self.dispatch(req, fds).await.map_err(RemoteError::from)
    }
}
