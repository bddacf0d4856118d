//! The sandbox helper's calls.
//!
//! Calls that change the sandbox (setup, start, shutdown) take `ops` in turn; the
//! state itself sits behind a plain mutex that is never held across an await. The
//! workload is reaped by a task of its own, which publishes the exit on `exit` for
//! every `Wait`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use container_protocol::sandbox::{
    ExitStatus, InterfaceReport, ProcessSpec, SandboxRequest, SandboxResponse, SandboxSpec,
    SandboxState, SetupReport, Stdio,
};
use container_protocol::{ErrorKind, HelperInfo, RemoteError, Service};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::{watch, Notify};

use crate::etc::EtcFiles;
use crate::launch;
use crate::namespaces::Namespaces;
use crate::network::Network;
use crate::plan::{self, Entry, Filesystem, LaunchSpec};
use crate::process;
use crate::resources::{self, ContainerCgroup, DeviceNode};
use crate::rootfs;
use crate::users;

/// How long shutdown waits for a SIGKILLed workload before going on without it.
const KILL_GRACE: Duration = Duration::from_secs(10);

enum Workload {
    NotStarted,
    /// Start failed. The child that failed was PID 1 of the container's pid namespace,
    /// which the kernel closes when it exits: nothing can start in it again.
    Failed(String),
    Running(u32),
    Exited(ExitStatus),
}

struct State {
    /// Gone after teardown.
    ns: Option<Namespaces>,
    spec: Option<Arc<SandboxSpec>>,
    etc: Option<EtcFiles>,
    network: Option<Network>,
    report: Option<SetupReport>,
    workload: Workload,
    pid: Option<u32>,
    /// The helper's copy of the workload's pty master, for `Resize`.
    master: Option<OwnedFd>,
    /// The container's cgroup (issue 10), made at setup, removed at teardown.
    cgroup: Option<Arc<ContainerCgroup>>,
    /// Device nodes for the workload's /dev (`--device`, `--privileged`).
    devices: Vec<DeviceNode>,
    torn_down: bool,
}

pub struct SandboxHelper {
    pub info: HelperInfo,
    pub shutdown: Arc<Notify>,
    /// `--root`: the generated /etc files go under `<root>/containers/<id>/etc`.
    root: PathBuf,
    /// Hidden from a workload that sees the host's files (see `WorkloadFs::masked`).
    masked: Vec<PathBuf>,
    /// Processes exec'd: their exit (for `ExecWait`) and, with a terminal, a copy of
    /// their pty master (for `ExecResize`).
    execs: Mutex<HashMap<u32, TerminalExec>>,
    ops: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// `Some` once the workload has exited; `wait` calls watch it.
    pub exit: watch::Sender<Option<ExitStatus>>,
    /// `--userns=auto`: the range and the namespace made at start (see `userns`).
    userns: Option<(container_protocol::resources::IdRange, OwnedFd)>,
}

type CallResult = Result<(SandboxResponse, Vec<OwnedFd>), RemoteError>;

/// An exec'd process: its exit, once known, and a copy of its pty master if it has one.
type TerminalExec = (watch::Receiver<Option<ExitStatus>>, Option<OwnedFd>);

impl SandboxHelper {
    /// Directories to hide from workloads that run without a rootfs.
    pub fn with_masked(mut self, dirs: Vec<PathBuf>) -> Self {
        self.masked = dirs;
        self
    }

    /// The user namespace made at start (`--userns`).
    pub fn with_userns(
        mut self,
        userns: Option<(container_protocol::resources::IdRange, OwnedFd)>,
    ) -> Self {
        self.userns = userns;
        self
    }

    pub fn new(info: HelperInfo, shutdown: Arc<Notify>, root: PathBuf, ns: Namespaces) -> Self {
        SandboxHelper {
            info,
            shutdown,
            root,
            masked: Vec::new(),
            execs: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                ns: Some(ns),
                spec: None,
                etc: None,
                network: None,
                report: None,
                workload: Workload::NotStarted,
                pid: None,
                master: None,
                cgroup: None,
                devices: Vec::new(),
                torn_down: false,
            }),
            exit: watch::Sender::new(None),
            userns: None,
        }
    }

    fn id(&self) -> &str {
        &self.info.id
    }

    /// `exec "x": No such file or directory`, logged with the container and step; the
    /// apiserver puts the container and its own step in front for the user.
    fn err(&self, step: &str, message: impl std::fmt::Display) -> RemoteError {
        tracing::warn!("container {}: {step}: {message}", self.id());
        RemoteError::internal(message.to_string())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait(&self) -> Result<ExitStatus, RemoteError> {
        let mut rx = self.exit.subscribe();
        let status = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RemoteError::internal("sandbox is shutting down"))?;
        status.ok_or_else(|| RemoteError::internal("no exit status"))
    }

    async fn setup(&self, spec: SandboxSpec) -> Result<SetupReport, RemoteError> {
        let _op = self.ops.lock().await;
        let step = "setup";
        if spec.id != self.id() {
            return Err(self.err(step, format!("spec is for container {:?}", spec.id)));
        }
        let (netns, netns_path) = {
            let st = self.state();
            if st.torn_down {
                return Err(self
                    .err(step, "the sandbox is shut down")
                    .with_kind(ErrorKind::Conflict));
            }
            if st.spec.is_some() {
                return Err(self
                    .err(step, "already set up")
                    .with_kind(ErrorKind::Conflict));
            }
            let ns = st
                .ns
                .as_ref()
                .ok_or_else(|| self.err(step, "no namespaces"))?;
            let net = ns.net.try_clone().map_err(|e| self.err(step, e))?;
            (net, ns.netns_path())
        };
        let mut network = Network::build(&netns, &spec.allocations, &spec.net_devices)
            .await
            .map_err(|e| self.err(step, e))?;
        let confined = self
            .write_etc(&spec, &network)
            .and_then(|etc| Ok((self.confine(&spec, &etc)?, etc)));
        let ((cgroup, devices), etc) = match confined {
            Ok(done) => done,
            Err(e) => {
                for undo in network.teardown().await {
                    tracing::warn!("container {}: setup rollback: {undo}", self.id());
                }
                return Err(self.err(step, e));
            }
        };
        let report = SetupReport {
            netns_path,
            interfaces: network.interfaces.clone(),
            net_devices: network.devices.clone(),
        };
        let mut st = self.state();
        st.spec = Some(Arc::new(spec));
        st.cgroup = cgroup.map(Arc::new);
        st.devices = devices;
        st.etc = Some(etc);
        st.network = Some(network);
        st.report = Some(report.clone());
        Ok(report)
    }

    /// The user namespace the apiserver reserved must be the one made at start; the
    /// devices are looked up; the cgroup is made with its limits (issue 10).
    fn confine(
        &self,
        spec: &SandboxSpec,
        etc: &EtcFiles,
    ) -> Result<(Option<ContainerCgroup>, Vec<DeviceNode>), String> {
        let range = self.userns.as_ref().map(|(r, _)| *r);
        if spec.userns != range {
            return Err(format!(
                "the sandbox was started with user namespace {range:?}, the spec asks for {:?}",
                spec.userns
            ));
        }
        if let Some(range) = range {
            let files: Vec<&Path> = etc.mounts().iter().map(|(f, _)| *f).collect();
            crate::userns::chown_to_root(range, &files)
                .map_err(|e| format!("hand /etc files to the container's root: {e}"))?;
        }
        let (rules, nodes) = resources::devices(spec, range)?;
        let cgroup = match &spec.cgroup {
            Some(rel) => Some(ContainerCgroup::create(rel, spec, rules)?),
            None => None,
        };
        Ok((cgroup, nodes))
    }

    /// The cgroup, rlimits, OOM score and user namespace every process of the
    /// container gets; `workload` adds its device nodes and netns sysctls.
    fn launch_resources(
        &self,
        spec: &SandboxSpec,
        cgroup: Option<&ContainerCgroup>,
        userns: Option<resources::Userns>,
        devices: Vec<DeviceNode>,
        workload: bool,
    ) -> Result<resources::Launch, String> {
        let cgroup = match cgroup {
            Some(cg) => resources::Launch::cgroup_of(cg)
                .map_err(|e| format!("duplicate cgroup descriptors: {e}"))?,
            None => Vec::new(),
        };
        let sysctls = if workload && userns.is_some() {
            // Root of a user namespace has no privilege over the host-owned netns:
            // let it bind low ports, as Docker lets every container.
            vec![(
                "sys/net/ipv4/ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
        } else {
            Vec::new()
        };
        let proc = resources::open_proc().map_err(|e| format!("open /proc: {e}"))?;
        Ok(resources::Launch {
            cgroup,
            rlimits: spec.resources.ulimits.clone(),
            oom_score_adj: spec.resources.oom_score_adj,
            proc: Some(proc),
            sysctls,
            devices,
            userns,
        })
    }

    /// One more interface while the sandbox runs (`network connect`): realised by the
    /// strategy `setup` uses, then the report, the spec's allocations (for `exec` and
    /// the name servers) and the bound /etc files follow.
    async fn attach(
        &self,
        alloc: container_protocol::network::Allocation,
        default_route: bool,
    ) -> Result<InterfaceReport, RemoteError> {
        let _op = self.ops.lock().await;
        let step = "attach";
        let (netns, mut network) = {
            let mut st = self.state();
            if st.torn_down || st.spec.is_none() {
                return Err(self
                    .err(step, "the sandbox is not set up")
                    .with_kind(ErrorKind::Conflict));
            }
            let ns = st
                .ns
                .as_ref()
                .ok_or_else(|| self.err(step, "no namespaces"))?;
            let net = ns.net.try_clone().map_err(|e| self.err(step, e))?;
            let Some(network) = st.network.take() else {
                return Err(self.err(step, "the sandbox has no network"));
            };
            (net, network)
        };
        let attached = network.attach(&netns, &alloc, default_route).await;
        let mut st = self.state();
        st.network = Some(network);
        let report = attached.map_err(|e| self.err(step, e))?;
        if let Some(r) = st.report.as_mut() {
            r.interfaces.push(report.clone());
        }
        if let Some(spec) = st.spec.as_mut() {
            Arc::make_mut(spec).allocations.push(alloc);
        }
        self.refresh_etc(&st);
        Ok(report)
    }

    /// The interface of `network` named `ifname` goes (`network disconnect`).
    async fn detach(&self, network_id: &str, ifname: &str) -> Result<(), RemoteError> {
        let _op = self.ops.lock().await;
        let step = "detach";
        let Some(mut network) = self.state().network.take() else {
            return Ok(());
        };
        let detached = network.detach(network_id, ifname).await;
        let mut st = self.state();
        st.network = Some(network);
        detached.map_err(|e| self.err(step, e))?;
        if let Some(r) = st.report.as_mut() {
            r.interfaces
                .retain(|i| !(i.network == network_id && i.ifname == ifname));
        }
        if let Some(spec) = st.spec.as_mut() {
            Arc::make_mut(spec)
                .allocations
                .retain(|a| !(a.network == network_id && a.ifname == ifname));
        }
        self.refresh_etc(&st);
        Ok(())
    }

    /// /etc/hosts and resolv.conf as the interfaces are now. A failure is logged: the
    /// interface itself is there (or gone) either way.
    fn refresh_etc(&self, st: &State) {
        let (Some(spec), Some(etc), Some(network)) = (&st.spec, &st.etc, &st.network) else {
            return;
        };
        let own: Vec<_> = network
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
            .collect();
        let (dns, search) = servers(spec);
        if let Err(e) =
            crate::etc::rewrite_in_place(etc, &spec.hostname, &own, &spec.hosts, &dns, &search)
        {
            tracing::warn!("container {}: {e}", self.id());
        }
    }

    fn write_etc(&self, spec: &SandboxSpec, network: &Network) -> Result<EtcFiles, String> {
        let dir = container_store::Paths::new(&self.root, "")
            .container_dir(&spec.id)
            .map_err(|e| format!("write /etc files: {e}"))?
            .join("etc");
        let own: Vec<_> = network
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
            .collect();
        // Explicit servers win; then what the networks offer; then the host's.
        let (dns, search) = servers(spec);
        crate::etc::write(&dir, &spec.hostname, &own, &spec.hosts, &dns, &search)
            .map_err(|e| format!("write /etc files: {e}"))
    }

    fn start(self: &Arc<Self>, stdio: Stdio, fds: Vec<OwnedFd>) -> CallResult {
        let step = "start";
        let mut st = self.state();
        let (Some(spec), Some(etc), Some(ns)) = (st.spec.clone(), st.etc.as_ref(), &st.ns) else {
            return Err(self.err(step, "not set up"));
        };
        match &st.workload {
            Workload::NotStarted => {}
            Workload::Failed(e) => {
                return Err(self
                    .err(step, format!("an earlier start failed ({e})"))
                    .with_kind(ErrorKind::Conflict))
            }
            Workload::Running(_) | Workload::Exited(_) => {
                return Err(self
                    .err(step, "already started")
                    .with_kind(ErrorKind::Conflict))
            }
        }
        let p = &spec.process;
        // The container's files: a root filesystem, or the host's own.
        // An image: overlayfs, mounted, prepared and its user resolved in a namespace
        // of a thread's own; the workload's child moves that mount into its own.
        // Under `--userns=auto` the child mounts the overlay anew from idmapped layers
        // (`idmap`): the prepared mount is let go before (two overlays on one upper
        // directory at once are undefined), and neither is volatile, since the kernel
        // refuses a second mount of directories a volatile one used.
        let own_ids = self.userns.is_some();
        let image = match &spec.overlay {
            Some(ov) => {
                let ov = container_protocol::sandbox::OverlaySpec {
                    volatile: ov.volatile && !own_ids,
                    ..ov.clone()
                };
                Some(
                    crate::overlay::prepare(&ov, etc, &p.user, &spec.mounts)
                        .map_err(|e| self.err(step, &e).with_kind(e.kind))?,
                )
            }
            None => None,
        };
        let (image_user, image_tree) = match image {
            Some(crate::overlay::Prepared { user, tree }) => (Some(user), Some(tree)),
            None => (None, None),
        };
        let image_tree = image_tree.filter(|_| !own_ids);
        let (rootfs, root) = match &spec.rootfs {
            _ if spec.overlay.is_some() => (
                None,
                container_rootfs::Root::open(Path::new("/"))
                    .map_err(|e| self.err(step, &e).with_kind(e.kind()))?,
            ),
            Some(r) => {
                let path = std::fs::canonicalize(r)
                    .map_err(|e| self.err(step, format!("rootfs {r}: {e}")))?;
                let root = container_rootfs::Root::open(&path)
                    .map_err(|e| self.err(step, format!("rootfs {e}")).with_kind(e.kind()))?;
                rootfs::prepare(&root, etc, &spec.mounts)
                    .map_err(|e| self.err(step, format!("rootfs {e}")).with_kind(e.kind()))?;
                (Some(path), root)
            }
            None => (
                None,
                container_rootfs::Root::open(Path::new("/"))
                    .map_err(|e| self.err(step, &e).with_kind(e.kind()))?,
            ),
        };
        let user = match image_user {
            Some(u) => u,
            None => users::resolve(&root, &p.user)
                .map_err(|e| self.err(step, &e).with_kind(e.kind()))?,
        };
        let fs = match (rootfs.as_deref(), &spec.overlay) {
            (_, Some(ov)) => Filesystem::Overlay {
                spec: ov,
                tree: image_tree.as_ref(),
                etc,
                mounts: &spec.mounts,
            },
            (Some(path), _) => Filesystem::Rootfs {
                path,
                etc,
                mounts: &spec.mounts,
            },
            _ => Filesystem::Host {
                etc,
                masked: &self.masked,
            },
        };
        let userns = match &self.userns {
            Some((range, fd)) => Some(resources::Userns {
                fd: fd
                    .try_clone()
                    .map_err(|e| self.err(step, format!("duplicate user namespace: {e}")))?,
                range: *range,
            }),
            None => None,
        };
        let cgroup = st.cgroup.clone();
        let launched = self
            .launch_resources(&spec, cgroup.as_deref(), userns, st.devices.clone(), true)
            .map_err(|e| self.err(step, e))?;
        let launch_spec = LaunchSpec {
            resources: &launched,
            entry: Entry::Workload {
                net: &ns.net,
                uts: &ns.uts,
                ipc: &ns.ipc,
                fs,
            },
            args: &p.args,
            env: &[&p.env],
            cwd: p.cwd.as_deref(),
            hostname: &spec.hostname,
            user: &user,
            tty: stdio == Stdio::Tty,
            confinement: &spec.confinement,
        };
        let mut wiring = launch::wire(stdio, fds, spec.log_path.as_ref(), spec.log, None)
            .map_err(|e| self.err(step, e))?;
        let master = wiring.master.take();
        let launch = plan::launch(&launch_spec, wiring).map_err(|e| self.err(step, e))?;
        let mut child = match process::spawn(launch) {
            Ok(child) => child,
            Err(e) => {
                st.workload = Workload::Failed(e.to_string());
                return Err(self.err(step, &e).with_kind(e.kind()));
            }
        };
        let pid = child.id().unwrap_or(0);
        st.workload = Workload::Running(pid);
        st.pid = Some(pid);
        let mut reply_fds = vec![];
        if let Some(master) = master {
            match master.try_clone() {
                Ok(copy) => st.master = Some(copy),
                Err(e) => tracing::warn!("container {}: keep pty for resize: {e}", self.id()),
            }
            reply_fds.push(master);
        }
        drop(st);
        tracing::info!("container {}: workload started (pid {pid})", self.id());
        let helper = self.clone();
        let log_path = PathBuf::from(&spec.log_path);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => {
                    crate::logs::drained(&log_path);
                    let mut status = launch::exit_status(s);
                    if let Some(cg) = cgroup.clone() {
                        status.oom_killed = cg.cgroup.oom_kills() > 0;
                        // Whatever is still in the cgroup goes with the workload: a
                        // daemon that left the process tree does not outlive it. Inline:
                        // after unshare(CLONE_NEWPID) this process cannot make threads,
                        // and members leave the cgroup as they die, before being reaped.
                        if let Err(e) = cg.kill() {
                            tracing::warn!("container {}: {e}", helper.id());
                        }
                    }
                    status
                }
                Err(e) => {
                    tracing::error!("container {}: wait for pid {pid}: {e}", helper.id());
                    ExitStatus::new(255, None)
                }
            };
            tracing::info!(
                "container {}: workload (pid {pid}) exited with {}",
                helper.id(),
                status.code
            );
            {
                let mut st = helper.state();
                st.workload = Workload::Exited(status);
                st.master = None;
            }
            helper.exit.send_replace(Some(status));
        });
        container_protocol::fault::point("sandbox-helper:after-start");
        Ok((SandboxResponse::Started { pid }, reply_fds))
    }

    /// The workload's pid, or why there is none.
    fn running(&self, step: &str) -> Result<u32, RemoteError> {
        match &self.state().workload {
            Workload::Running(pid) => Ok(*pid),
            Workload::NotStarted => {
                Err(self.err(step, "not started").with_kind(ErrorKind::Conflict))
            }
            Workload::Failed(_) => Err(self
                .err(step, "not running (its start failed)")
                .with_kind(ErrorKind::Conflict)),
            Workload::Exited(s) => Err(self
                .err(step, format!("not running (exited {})", s.code))
                .with_kind(ErrorKind::Conflict)),
        }
    }

    fn signal(&self, step: &str, pid: u32, signal: i32) -> Result<(), RemoteError> {
        let sig = Signal::try_from(signal)
            .map_err(|_| self.err(step, format!("{signal} is not a signal")))?;
        match kill(Pid::from_raw(pid as i32), sig) {
            // Exited but not reaped yet: the reaper is about to report it.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(self.err(step, format!("send {sig} to pid {pid}: {}", e.desc()))),
        }
    }

    async fn stop(&self, signal: i32, timeout_secs: u64) -> Result<ExitStatus, RemoteError> {
        let step = "stop";
        let pid = match &self.state().workload {
            Workload::Exited(s) => return Ok(*s),
            Workload::Running(pid) => *pid,
            _ => return Err(self.err(step, "not running").with_kind(ErrorKind::Conflict)),
        };
        self.signal(step, pid, signal)?;
        let grace = Duration::from_secs(timeout_secs);
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        tracing::info!(
            "container {}: still running {timeout_secs}s after signal {signal}; SIGKILL",
            self.id()
        );
        self.signal(step, pid, libc::SIGKILL)?;
        self.wait().await
    }

    async fn exec(&self, mut process: ProcessSpec, stdio: Stdio, fds: Vec<OwnedFd>) -> CallResult {
        let step = "exec";
        process.tty = stdio == Stdio::Tty;
        let pid = self.running(step)?;
        let Some(spec) = self.state().spec.clone() else {
            return Err(self.err(step, "not set up"));
        };
        let root = workload_root(pid).map_err(|e| self.err(step, &e).with_kind(e.kind()))?;
        // Resolved again: the container's user database is the one it has now.
        let user = users::resolve(&root, &process.user)
            .map_err(|e| self.err(step, &e).with_kind(e.kind()))?;
        // With a rootfs the container has its own devpts: take the terminal from it.
        let devpts = (spec.rootfs.is_some() || spec.overlay.is_some()).then_some(&root);
        let mut wiring = launch::wire(stdio, fds, spec.log_path.as_ref(), spec.log, devpts)
            .map_err(|e| self.err(step, e))?;
        let wiring_master = wiring.master.take();
        let cgroup = self.state().cgroup.clone();
        let userns = match &self.userns {
            Some((range, _)) => Some(resources::Userns {
                fd: std::fs::File::open(format!("/proc/{pid}/ns/user"))
                    .map(OwnedFd::from)
                    .map_err(|e| {
                        self.err(step, format!("open the user namespace of pid {pid}: {e}"))
                    })?,
                range: *range,
            }),
            None => None,
        };
        let launched = self
            .launch_resources(&spec, cgroup.as_deref(), userns, Vec::new(), false)
            .map_err(|e| self.err(step, e))?;
        let launch = plan::launch(
            &LaunchSpec {
                resources: &launched,
                entry: Entry::Join { pid },
                args: &process.args,
                env: &[&spec.process.env, &process.env],
                cwd: process.cwd.as_deref(),
                hostname: &spec.hostname,
                user: &user,
                tty: process.tty,
                confinement: &spec.confinement,
            },
            wiring,
        )
        .map_err(|e| self.err(step, e))?;
        let mut child = process::spawn(launch).map_err(|e| {
            if self.running(step).is_err() {
                // Forking into a pid namespace whose init is gone fails with ENOMEM.
                self.err(step, "the container stopped")
                    .with_kind(ErrorKind::Conflict)
            } else {
                self.err(step, &e).with_kind(e.kind())
            }
        })?;
        // The reply comes at once (`ExecWait` collects the exit), so a caller can tell a
        // long-running process from a helper that does not answer.
        let exec_pid = child.id().unwrap_or(0);
        let copy = match &wiring_master {
            Some(master) => Some(
                master
                    .try_clone()
                    .map_err(|e| self.err(step, format!("duplicate pty master: {e}")))?,
            ),
            None => None,
        };
        let (tx, rx) = watch::channel(None);
        let log_path = PathBuf::from(&spec.log_path);
        tokio::spawn(async move {
            let status = child.wait().await.ok().map(launch::exit_status);
            crate::logs::drained(&log_path);
            let _ = tx.send(Some(status.unwrap_or(ExitStatus::new(137, None))));
        });
        self.execs
            .lock()
            .map_err(|_| self.err(step, "exec table poisoned"))?
            .insert(exec_pid, (rx, copy));
        Ok((
            SandboxResponse::Started { pid: exec_pid },
            wiring_master.into_iter().collect(),
        ))
    }

    async fn exec_wait(&self, pid: u32) -> Result<ExitStatus, RemoteError> {
        let step = "exec wait";
        let mut rx = self
            .execs
            .lock()
            .map_err(|_| self.err(step, "exec table poisoned"))?
            .get(&pid)
            .map(|(rx, _)| rx.clone())
            .ok_or_else(|| self.err(step, format!("no exec with pid {pid}")))?;
        let status = rx
            .wait_for(Option::is_some)
            .await
            .map(|s| *s)
            .map_err(|_| self.err(step, "exec abandoned"))?;
        if let Ok(mut execs) = self.execs.lock() {
            execs.remove(&pid);
        }
        status.ok_or_else(|| self.err(step, "no exit status"))
    }

    fn exec_resize(&self, pid: u32, rows: u16, cols: u16) -> Result<(), RemoteError> {
        let execs = self
            .execs
            .lock()
            .map_err(|_| self.err("resize", "exec table poisoned"))?;
        let master = execs
            .get(&pid)
            .ok_or_else(|| self.err("resize", format!("no exec with pid {pid}")))?
            .1
            .as_ref()
            .ok_or_else(|| self.err("resize", format!("exec {pid} has no terminal")))?;
        crate::pty::resize(master, rows, cols).map_err(|e| self.err("resize", e))
    }

    fn resize(&self, rows: u16, cols: u16) -> Result<(), RemoteError> {
        let st = self.state();
        let master = st
            .master
            .as_ref()
            .ok_or_else(|| self.err("resize", "the workload has no terminal"))?;
        crate::pty::resize(master, rows, cols).map_err(|e| self.err("resize", e))
    }

    /// Binds the netns (`BindNetns`); the report says the new path from now on.
    fn bind_netns(&self) -> Result<String, RemoteError> {
        let step = "bind netns";
        let mut st = self.state();
        if st.torn_down {
            return Err(self
                .err(step, "the sandbox is shut down")
                .with_kind(ErrorKind::Conflict));
        }
        let ns = st
            .ns
            .as_mut()
            .ok_or_else(|| self.err(step, "no namespaces"))?;
        let path = ns.bind().map_err(|e| self.err(step, e))?;
        if let Some(r) = st.report.as_mut() {
            r.netns_path = path.clone();
        }
        Ok(path)
    }

    fn snapshot(&self) -> SandboxState {
        let st = self.state();
        SandboxState {
            pid: st.pid,
            exit: match &st.workload {
                Workload::Exited(s) => Some(*s),
                _ => None,
            },
            setup: st.report.clone(),
        }
    }

    /// Kills the workload, removes host-side interfaces, gives devices back and removes
    /// the netns mount. Runs once; keeps going past failures and logs them.
    pub async fn teardown(&self) {
        let _op = self.ops.lock().await;
        if self.state().torn_down {
            return;
        }
        let id = self.id().to_string();
        if let Ok(pid) = self.running("shutdown") {
            if let Err(e) = self.signal("shutdown", pid, libc::SIGKILL) {
                tracing::warn!("{e}");
            }
            if tokio::time::timeout(KILL_GRACE, self.wait()).await.is_err() {
                tracing::warn!("container {id}: shutdown: pid {pid} survived SIGKILL");
            }
        }
        let (network, ns, cgroup) = {
            let mut st = self.state();
            st.torn_down = true;
            st.master = None;
            (st.network.take(), st.ns.take(), st.cgroup.take())
        };
        // The whole cgroup, whatever left the workload's process tree (issue 10).
        // (Inline: see the workload's reaper.)
        if let Some(cg) = cgroup {
            if let Err(e) = cg.remove() {
                tracing::warn!("container {id}: shutdown: {e}");
            }
        }
        let mut network = network;
        if let Some(network) = network.as_mut() {
            for e in network.give_back_devices().await {
                tracing::warn!("container {id}: shutdown: {e}");
            }
        }
        container_protocol::fault::point("sandbox-helper:during-shutdown");
        let netns_gone = match ns {
            Some(ns) => match ns.remove_netns() {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("container {id}: shutdown: {e}");
                    false
                }
            },
            None => false,
        };
        if let Some(mut network) = network {
            // The namespace stays (its mount could not be removed): take the host ends
            // away explicitly. Otherwise the veth pairs go with the namespace once the
            // last reference to it (this network's netlink socket inside) is dropped.
            if !netns_gone {
                for e in network.remove_interfaces().await {
                    tracing::warn!("container {id}: shutdown: {e}");
                }
            }
        }
        tracing::info!("container {id}: torn down");
    }

    async fn dispatch(self: Arc<Self>, req: SandboxRequest, fds: Vec<OwnedFd>) -> CallResult {
        let plain = |r: Result<SandboxResponse, RemoteError>| r.map(|r| (r, vec![]));
        match req {
            SandboxRequest::Info => plain(Ok(SandboxResponse::Info(self.info.clone()))),
            SandboxRequest::Echo(n) => plain(Ok(SandboxResponse::Echo(n))),
            SandboxRequest::Setup(spec) => {
                plain(self.setup(*spec).await.map(SandboxResponse::SetUp))
            }
            SandboxRequest::Start { stdio } => {
                let _op = self.ops.lock().await;
                self.start(stdio, fds)
            }
            SandboxRequest::Wait => plain(self.wait().await.map(SandboxResponse::Exited)),
            SandboxRequest::Kill { signal } => {
                let pid = self.running("kill")?;
                self.signal("kill", pid, signal)?;
                plain(Ok(SandboxResponse::Done))
            }
            SandboxRequest::Stop {
                signal,
                timeout_secs,
            } => plain(
                self.stop(signal, timeout_secs)
                    .await
                    .map(SandboxResponse::Exited),
            ),
            SandboxRequest::Exec { process, stdio } => self.exec(process, stdio, fds).await,
            SandboxRequest::ExecWait { pid } => {
                plain(self.exec_wait(pid).await.map(SandboxResponse::Exited))
            }
            SandboxRequest::ExecResize { pid, rows, cols } => {
                self.exec_resize(pid, rows, cols)?;
                plain(Ok(SandboxResponse::Done))
            }
            SandboxRequest::Resize { rows, cols } => {
                self.resize(rows, cols)?;
                plain(Ok(SandboxResponse::Done))
            }
            SandboxRequest::State => plain(Ok(SandboxResponse::State(self.snapshot()))),
            SandboxRequest::Attach {
                allocation,
                default_route,
            } => plain(
                self.attach(*allocation, default_route)
                    .await
                    .map(SandboxResponse::Attached),
            ),
            SandboxRequest::Detach { network, ifname } => {
                self.detach(&network, &ifname).await?;
                plain(Ok(SandboxResponse::Done))
            }
            SandboxRequest::BindNetns => plain(self.bind_netns().map(SandboxResponse::NetnsBound)),
            SandboxRequest::Shutdown => {
                self.teardown().await;
                // Exit only after this reply is written. On this current-thread runtime
                // the spawned task runs only once the call's task yields, and the call's
                // task writes its small reply with one non-blocking sendmsg before that;
                // a reply that could not go out at once is lost, which the apiserver
                // reads as the helper gone: shut down either way. No sleep: a waiting
                // apiserver (run --rm, rm -f) paid for it on every container.
                let shutdown = self.shutdown.clone();
                tokio::spawn(async move { shutdown.notify_one() });
                plain(Ok(SandboxResponse::Done))
            }
        }
    }
}

/// The running workload's root directory, held by descriptor: what the container's
/// paths are looked up in.
fn workload_root(pid: u32) -> Result<container_rootfs::Root, container_rootfs::Error> {
    let path = PathBuf::from(format!("/proc/{pid}/root"));
    container_rootfs::Root::open(&path)
}

impl Service for SandboxHelper {
    type Req = SandboxRequest;
    type Resp = SandboxResponse;
    const NAME: &'static str = container_protocol::sandbox::SERVICE;

    /// Waits are the caller's own; everything else finishes even if the caller goes.
    fn ends_with_caller(req: &SandboxRequest) -> bool {
        matches!(req, SandboxRequest::Wait | SandboxRequest::ExecWait { .. })
    }

    async fn handle(
        self: Arc<Self>,
        req: SandboxRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(SandboxResponse, Vec<OwnedFd>), RemoteError> {
        self.dispatch(req, fds).await
    }
}

/// The container's name servers: `--dns` wins; then the networks' own (whose names live
/// under the runtime's search domain); else none, and the host's are copied.
pub(crate) fn servers(spec: &SandboxSpec) -> (Vec<std::net::IpAddr>, Vec<&'static str>) {
    if !spec.dns.is_empty() {
        return (spec.dns.clone(), Vec::new());
    }
    let mut dns = Vec::new();
    for ip in spec.allocations.iter().flat_map(|a| a.dns.iter()) {
        if !dns.contains(ip) {
            dns.push(*ip);
        }
    }
    // A CNI result's servers are someone else's, with their own domains.
    let ours = spec.allocations.iter().any(|a| {
        !a.dns.is_empty() && a.plugin() == container_protocol::network::PluginKind::Bridge
    });
    let search = if !ours {
        Vec::new()
    } else {
        vec![container_protocol::network::DNS_DOMAIN]
    };
    (dns, search)
}
