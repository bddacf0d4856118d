//! The apiserver's life: prepare state, reconnect to live helpers, serve, drain, stop.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use container_netlink::Netlink;
use container_protocol::HelperKind;
use container_store::Paths;
use container_supervise::table::HelperEvent;
use container_supervise::{Deadlines, HelperTable, Spawner};
use tokio::sync::{mpsc, Notify};

use crate::containers::Containers;
use crate::error::ApiError;
use crate::events::Events;
use crate::networks::Networks;
use crate::notify::sd_notify;
use crate::ops::Ops;
use crate::records::Records;
use crate::server::{self, Access};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a stopping apiserver lets operations in flight finish before it exits.
const DRAIN: Duration = Duration::from_secs(30);

pub struct Options {
    pub paths: Paths,
    pub helper_dir: PathBuf,
    pub access: Access,
    pub deadlines: Deadlines,
    pub limits: server::Limits,
    pub images: crate::images::ImageOptions,
    pub security: crate::containers::SecurityDefaults,
    /// `--cgroup-parent`, `--userns-default`, `--userns-pool` (issue 10).
    pub resources: ResourceOptions,
    /// `--serial-start`.
    pub serial_start: bool,
}

pub struct ResourceOptions {
    pub cgroup_parent: String,
    pub userns_default: container_protocol::resources::UsernsMode,
    pub userns_pool: container_idranges::Pool,
}

pub struct ApiServer {
    pub(crate) paths: Paths,
    pub(crate) networks: Arc<Networks>,
    pub(crate) containers: Arc<Containers>,
    pub(crate) volumes: Arc<crate::volumes::Volumes>,
    pub(crate) images: Arc<crate::images::Images>,
    pub(crate) ops: Arc<Ops>,
    pub(crate) events: Arc<Events>,
    pub(crate) started: SystemTime,
    pub(crate) stop: Notify,
    pub(crate) stop_helpers: AtomicBool,
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
    let signals = take_signals();
    let paths = opts.paths.clone();
    make_dir(&paths.root, 0o711)?;
    make_dir(&paths.run, 0o711)?;
    make_dir(&paths.helpers(), 0o700)?;
    let _lock = lock(&paths)?;
    for removed in container_store::remove_partial_writes(&paths) {
        tracing::info!("removed {} left by a failed write", removed.display());
    }
    let (records, unreadable) = Records::load(&paths);
    let events = Arc::new(Events::default());
    for e in unreadable {
        tracing::error!("skipping network record: {e}");
    }

    let (events_tx, mut helper_events) = mpsc::unbounded_channel::<HelperEvent>();
    let spawner = Arc::new(Spawner::new(paths.clone(), opts.helper_dir.clone()));
    let ops = Ops::new();
    let host_netlink =
        Netlink::connect().map_err(|e| ApiError::Internal(format!("netlink: {e}")))?;
    let networks = Networks::new(
        paths.clone(),
        records.clone(),
        events.clone(),
        HelperTable::new(spawner.clone(), events_tx.clone(), opts.deadlines),
        host_netlink,
        ops.clone(),
    );
    let resources = crate::resources::Settings::new(
        &paths.root,
        &opts.resources.cgroup_parent,
        opts.resources.userns_default,
        opts.resources.userns_pool,
    )?;
    let images = crate::images::Images::new(paths.clone(), ops.clone(), opts.images.clone())?;
    let volumes = crate::volumes::Volumes::open(&paths, records.clone())?;
    let containers = Containers::new(
        paths.clone(),
        records,
        events.clone(),
        HelperTable::new(spawner, events_tx, opts.deadlines),
        // The owners a container's start draws on.
        (networks.clone(), images.clone(), volumes.clone()),
        ops.clone(),
        crate::containers::Policy {
            security: opts.security,
            resources,
            serial_start: opts.serial_start,
        },
    );
    let server = Arc::new(ApiServer {
        paths: paths.clone(),
        networks: networks.clone(),
        containers: containers.clone(),
        volumes,
        images: images.clone(),
        ops: ops.clone(),
        events: events.clone(),
        started: SystemTime::now(),
        stop: Notify::new(),
        stop_helpers: AtomicBool::new(false),
    });

    // Every helper at once: a stuck one costs its deadline, not everyone's.
    let (net_adoption, sandbox_adoption) = tokio::join!(
        networks.table().adopt_all(),
        containers.sandboxes().adopt_all()
    );
    for dead in &net_adoption.dead {
        tracing::info!("network helper {dead} died while the apiserver was away");
    }
    for dead in &sandbox_adoption.dead {
        tracing::info!("sandbox helper {dead} died while the apiserver was away");
    }
    // Containers first: IPAM GC at network helper start must see the true live set.
    containers.reconcile(&sandbox_adoption).await;
    containers.gc_userns_ranges();
    networks.start_all().await;

    let listener = server::bind(&paths.apiserver_socket(), &opts.access)?;
    let accepting = tokio::spawn(server::accept_loop(
        listener,
        opts.access.clone(),
        opts.limits.clone(),
        server.clone(),
    ));
    {
        let server = server.clone();
        tokio::spawn(async move {
            while let Some(event) = helper_events.recv().await {
                let server = server.clone();
                tokio::spawn(async move { server.helper_event(event).await });
            }
        });
    }
    tokio::spawn(containers.clone().flush_unsaved_forever());
    // Once networks are up and calls are served: restarts run as ordinary starts.
    containers.restart_at_boot().await;
    tracing::info!(
        "apiserver {VERSION} ready on {} (pid {})",
        paths.apiserver_socket().display(),
        std::process::id()
    );
    sd_notify("READY=1");

    wait_for_stop(&server.stop, signals).await;
    sd_notify("STOPPING=1");
    // No new clients; those connected get their operations' answers.
    accepting.abort();
    let _ = std::fs::remove_file(paths.apiserver_socket());
    let left = ops.drain(DRAIN).await;
    // From here no helper starts. A container finishing late (its helper went down
    // with `system stop`) releases its addresses through the network helper, which may
    // be gone by then: another started for it would outlive this apiserver unasked.
    // Its reservations wait for the next apiserver's GC.
    server.containers.sandboxes().close();
    server.networks.table().close();
    if !left.is_empty() {
        tracing::warn!(
            "stopping with operations still in flight (the next start reconciles them): {}",
            left.join(", ")
        );
    }
    if server
        .stop_helpers
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        server.shutdown_helpers().await;
    }
    containers.flush_unsaved();
    tracing::info!("apiserver stopped");
    Ok(())
}

/// Returns on SIGTERM, SIGINT or a `Stop` call. SIGHUP is logged (there is no
/// configuration file to read again); SIGUSR1, SIGUSR2 and SIGALRM are ignored, so a
/// stray signal never kills the apiserver and leaves its socket behind.
/// The signals a running apiserver answers, taken over before it binds its socket or
/// adopts a helper: a signal from then on is handled (TERM and INT stop it, HUP is
/// logged, USR1, USR2 and ALRM are ignored), never the default action that kills it.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

fn take_signals() -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    for sig in [
        nix::sys::signal::Signal::SIGUSR1,
        nix::sys::signal::Signal::SIGUSR2,
        nix::sys::signal::Signal::SIGALRM,
    ] {
        // SAFETY: installing SIG_IGN has no handler to be unsafe in.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) };
    }
    StopSignals {
        term: signal(SignalKind::terminate()).ok(),
        int: signal(SignalKind::interrupt()).ok(),
        hup: signal(SignalKind::hangup()).ok(),
    }
}

/// Returns at `system stop`, SIGTERM or SIGINT (one that came early included: tokio
/// keeps it until it is read).
async fn wait_for_stop(stop: &Notify, signals: StopSignals) {
    let StopSignals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
        match s.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = next(&mut term) => {
                tracing::info!("SIGTERM: stopping; helpers keep running");
                return;
            }
            _ = next(&mut int) => {
                tracing::info!("SIGINT: stopping; helpers keep running");
                return;
            }
            _ = next(&mut hup) => {
                tracing::info!("SIGHUP: nothing to reload; going on");
            }
        }
    }
}

impl ApiServer {
    /// `system stop`: every sandbox helper, then every network helper, all in
    /// parallel and each bounded by its deadline (then killed).
    async fn shutdown_helpers(&self) {
        let sandboxes = self.containers.sandboxes().clone();
        let mut tasks = tokio::task::JoinSet::new();
        for h in sandboxes.list() {
            let table = sandboxes.clone();
            tasks.spawn(async move { table.shutdown(&h.info.id, h.shutdown_deadline()).await });
        }
        for s in sandboxes.list_stuck() {
            let table = sandboxes.clone();
            tasks.spawn(async move { table.kill(&s.id).await });
        }
        while tasks.join_next().await.is_some() {}
        let networks = self.networks.table().clone();
        for h in networks.list() {
            let table = networks.clone();
            let deadline = networks.deadlines().quick;
            tasks.spawn(async move { table.shutdown(&h.info.id, deadline).await });
        }
        for s in networks.list_stuck() {
            let table = networks.clone();
            tasks.spawn(async move { table.kill(&s.id).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// A helper died without being asked to, or a stuck one answers again. Nothing
    /// restarts a dead helper here: the operation that next needs it starts a new one.
    async fn helper_event(self: Arc<Self>, event: HelperEvent) {
        match event {
            HelperEvent::Gone(gone) => {
                tracing::warn!(
                    "helper {} {} (pid {}) exited unexpectedly",
                    gone.kind,
                    gone.id,
                    gone.pid
                );
                let table_spawner = self.networks.table().spawner();
                table_spawner.remove_leftovers(gone.kind, &gone.id);
                if gone.kind == HelperKind::Sandbox {
                    self.containers.helper_gone(&gone.id).await;
                }
            }
            HelperEvent::Adopted { kind, id } => {
                if kind == HelperKind::Sandbox {
                    self.containers.helper_adopted(&id).await;
                }
            }
        }
    }
}
