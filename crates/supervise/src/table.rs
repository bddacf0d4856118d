//! The live helpers of one kind. A helper is reached only through endpoints it vended;
//! it is known to be gone only when its process is (its pidfd says so), and only then
//! is anything cleaned up after it. Nothing here starts a helper unless asked to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use container_protocol::bootstrap::{bootstrap_connect, create_endpoint, BootstrapClient};
use container_protocol::helper::peer_name;
use container_protocol::{Client, ErrorKind, HelperInfo, HelperKind, ProtocolError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::clients::Deadlines;
use crate::pidfd::Pidfd;
use crate::spawn::Spawner;

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Store(#[from] container_store::StoreError),
    #[error("{peer}: {step}: {source}")]
    Io {
        peer: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer} did not start: {source}{log}")]
    Start {
        peer: String,
        #[source]
        source: Box<ProtocolError>,
        log: String,
    },
    #[error("{peer} (pid {pid}) is alive but does not answer")]
    Unresponsive { peer: String, pid: u32 },
    #[error("{peer} is already running (pid {pid})")]
    AlreadyRunning { peer: String, pid: u32 },
    #[error("{peer}: not started, the apiserver is stopping")]
    Closed { peer: String },
    #[error("{peer}: answers as helper {kind} {id}")]
    Impostor {
        peer: String,
        kind: HelperKind,
        id: String,
    },
}

impl SuperviseError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SuperviseError::Protocol(e) => e.kind(),
            SuperviseError::Store(e) => e.kind(),
            SuperviseError::Start { .. } => ErrorKind::Gone,
            SuperviseError::Unresponsive { .. } | SuperviseError::Closed { .. } => {
                ErrorKind::Unavailable
            }
            SuperviseError::AlreadyRunning { .. } => ErrorKind::Conflict,
            SuperviseError::Io { .. } | SuperviseError::Impostor { .. } => ErrorKind::Internal,
        }
    }
}

/// What differs between helper kinds, as far as their lifecycle goes.
pub trait HelperProto: Send + Sync + 'static {
    type Req: Serialize + Send + 'static;
    type Resp: DeserializeOwned + Send + 'static;
    const KIND: HelperKind;
    fn info_request() -> Self::Req;
    fn shutdown_request() -> Self::Req;
    fn as_info(resp: Self::Resp) -> Option<HelperInfo>;
}

/// A live helper as the apiserver holds it: its identity, its process and one endpoint.
pub struct Helper<P: HelperProto> {
    pub info: HelperInfo,
    pub client: Client<P::Req, P::Resp>,
    pub pidfd: Arc<Pidfd>,
    pub deadlines: Deadlines,
}

impl<P: HelperProto> Clone for Helper<P> {
    fn clone(&self) -> Self {
        Helper {
            info: self.info.clone(),
            client: self.client.clone(),
            pidfd: self.pidfd.clone(),
            deadlines: self.deadlines,
        }
    }
}

impl<P: HelperProto> Helper<P> {
    pub fn peer(&self) -> &str {
        self.client.peer()
    }
}

#[derive(Debug, Clone)]
pub struct HelperGone {
    pub kind: HelperKind,
    pub id: String,
    pub pid: u32,
}

/// What the orchestrator hears from a table, to decide what to do.
#[derive(Debug, Clone)]
pub enum HelperEvent {
    /// The helper's process is gone, and it was not asked to go.
    Gone(HelperGone),
    /// A helper that did not answer at adoption answers now.
    Adopted { kind: HelperKind, id: String },
}

/// A helper whose process lives but which did not answer when it was adopted: it is
/// neither used nor cleaned up after, and a new one is never started in its place.
#[derive(Debug, Clone)]
pub struct Stuck {
    pub id: String,
    pub pidfd: Arc<Pidfd>,
}

/// What adopting every helper of a kind found.
#[derive(Debug, Default)]
pub struct Adoption {
    pub adopted: Vec<String>,
    /// Their processes were gone: their leftovers are removed.
    pub dead: Vec<String>,
    /// Alive but not answering: retried until they answer or die.
    pub stuck: Vec<String>,
}

/// How long a helper that closed its endpoints may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

pub struct HelperTable<P: HelperProto> {
    spawner: Arc<Spawner>,
    helpers: Mutex<BTreeMap<String, Helper<P>>>,
    stuck: Mutex<BTreeMap<String, Stuck>>,
    events: mpsc::UnboundedSender<HelperEvent>,
    deadlines: Deadlines,
    /// Set by a stopping apiserver: a task still finishing (a container's release of
    /// its addresses) must not start a helper that would outlive it.
    closed: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data behind the lock: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<P: HelperProto> HelperTable<P> {
    pub fn new(
        spawner: Arc<Spawner>,
        events: mpsc::UnboundedSender<HelperEvent>,
        deadlines: Deadlines,
    ) -> Arc<Self> {
        Arc::new(HelperTable {
            spawner,
            helpers: Mutex::new(BTreeMap::new()),
            stuck: Mutex::new(BTreeMap::new()),
            events,
            deadlines,
            closed: Default::default(),
        })
    }

    pub fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    pub fn get(&self, id: &str) -> Option<Helper<P>> {
        lock(&self.helpers)
            .get(id)
            .filter(|h| !h.client.is_closed())
            .cloned()
    }

    pub fn list(&self) -> Vec<Helper<P>> {
        lock(&self.helpers).values().cloned().collect()
    }

    pub fn stuck(&self, id: &str) -> Option<Stuck> {
        lock(&self.stuck).get(id).cloned()
    }

    pub fn list_stuck(&self) -> Vec<Stuck> {
        lock(&self.stuck).values().cloned().collect()
    }

    /// A live process for `id` that this table does not serve from: a stuck helper, or
    /// one whose pid file names a live helper process we never reached.
    fn live_unserved(&self, id: &str) -> Option<u32> {
        if let Some(s) = self.stuck(id) {
            return Some(s.pidfd.pid());
        }
        let pid = self.spawner.recorded_pid(P::KIND, id)?;
        let alive = Pidfd::open(pid).is_ok_and(|p| p.is_alive());
        (alive && self.spawner.is_helper_process(P::KIND, id, pid)).then_some(pid)
    }

    /// Opens an endpoint through `bootstrap`, learns who answers, and watches it.
    pub async fn register(
        self: &Arc<Self>,
        id: &str,
        bootstrap: &BootstrapClient,
        pidfd: Option<Arc<Pidfd>>,
    ) -> Result<Helper<P>, SuperviseError> {
        let quick = self.deadlines.quick;
        let client: Client<P::Req, P::Resp> =
            tokio::time::timeout(quick, create_endpoint(bootstrap, P::KIND.service()))
                .await
                .map_err(|_| ProtocolError::Timeout {
                    peer: bootstrap.peer().to_string(),
                    what: "create endpoint".into(),
                    secs: quick.as_secs(),
                })??;
        let (resp, _) = client
            .call_within("info", quick, P::info_request(), vec![])
            .await?;
        let info = P::as_info(resp).ok_or_else(|| ProtocolError::Malformed {
            peer: client.peer().to_string(),
            message: "unexpected answer to info".into(),
        })?;
        if info.kind != P::KIND || info.id != id {
            return Err(SuperviseError::Impostor {
                peer: client.peer().to_string(),
                kind: info.kind,
                id: info.id,
            });
        }
        let pidfd = match pidfd {
            Some(p) => p,
            None => Arc::new(Pidfd::open(info.pid).map_err(|source| SuperviseError::Io {
                peer: client.peer().to_string(),
                step: "open pidfd",
                source,
            })?),
        };
        let helper = Helper {
            info,
            client,
            pidfd,
            deadlines: self.deadlines,
        };
        lock(&self.helpers).insert(id.to_string(), helper.clone());
        let table = Arc::downgrade(self);
        let watched = helper.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = watched.client.closed() => {}
                _ = watched.pidfd.exited() => {}
            }
            // Boxed: what follows (a grace timer among it) would otherwise stay in
            // the state of a task that waits out each helper's whole life.
            Box::pin(Self::after_gone(table, watched)).await;
        });
        Ok(helper)
    }

    /// A watched helper closed its endpoints or exited: makes sure it is gone, then
    /// takes it out of the table and says so.
    async fn after_gone(table: std::sync::Weak<Self>, watched: Helper<P>) {
        // Endpoints close when a helper exits; one that closed them and lives on
        // is wedged: it goes, so nothing is cleaned up under a live process.
        if !watched.pidfd.exited_within(EXIT_GRACE).await {
            tracing::warn!(
                "{} closed its endpoints but did not exit; killing it",
                watched.peer()
            );
            let _ = watched.pidfd.kill_group();
            watched.pidfd.exited().await;
        }
        let Some(table) = table.upgrade() else {
            return;
        };
        let removed = {
            let mut h = lock(&table.helpers);
            match h.get(&watched.info.id) {
                Some(cur) if cur.info.pid == watched.info.pid => {
                    h.remove(&watched.info.id);
                    true
                }
                _ => false,
            }
        };
        if removed {
            tracing::warn!("{} (pid {}) is gone", watched.peer(), watched.info.pid);
            let _ = table.events.send(HelperEvent::Gone(HelperGone {
                kind: P::KIND,
                id: watched.info.id.clone(),
                pid: watched.info.pid,
            }));
        }
    }

    /// Starts no helper from now on (the apiserver is stopping).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets a helper we shut down on purpose, so its exit is not reported as death.
    pub fn forget(&self, id: &str) -> Option<Helper<P>> {
        lock(&self.helpers).remove(id)
    }

    /// Starts a new helper and registers it. Refused while a helper for `id` lives,
    /// answering or not: there is never a second one.
    pub async fn start(
        self: &Arc<Self>,
        id: &str,
        extra_args: &[String],
    ) -> Result<Helper<P>, SuperviseError> {
        let peer = peer_name(P::KIND, id);
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SuperviseError::Closed { peer });
        }
        if let Some(h) = self.get(id) {
            return Err(SuperviseError::AlreadyRunning {
                peer,
                pid: h.info.pid,
            });
        }
        if let Some(pid) = self.live_unserved(id) {
            return Err(SuperviseError::Unresponsive { peer, pid });
        }
        let spawned = self.spawner.spawn(P::KIND, id, extra_args).await?;
        let pidfd = spawned.pidfd;
        let pid = pidfd.pid();
        let log = || {
            self.spawner
                .paths()
                .helper_file(P::KIND, id, "log")
                .map(|p| crate::spawn::log_summary(&p))
                .unwrap_or_default()
        };
        match self.register(id, &spawned.bootstrap, Some(pidfd)).await {
            Ok(h) => Ok(h),
            Err(SuperviseError::Protocol(e)) => {
                // It died or wedged before answering: make sure it is gone, then say why.
                if let Ok(p) = Pidfd::open(pid) {
                    let _ = p.kill_group();
                    p.exited_within(EXIT_GRACE).await;
                }
                Err(SuperviseError::Start {
                    peer,
                    source: Box::new(e),
                    log: log(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Reaches every helper of this kind left from before an apiserver restart, all at
    /// once (a stuck one must not delay the others). The dead are cleaned up after; the
    /// stuck are kept, retried, and cleaned up after only once their process is gone.
    pub async fn adopt_all(self: &Arc<Self>) -> Adoption {
        let mut tasks = tokio::task::JoinSet::new();
        let running: BTreeMap<String, u32> =
            self.spawner.live_processes(P::KIND).into_iter().collect();
        let mut ids = self.spawner.listed(P::KIND);
        ids.extend(running.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            let table = self.clone();
            let pid = running.get(&id).copied();
            tasks.spawn(async move {
                let outcome = table.adopt_one(&id, pid).await;
                (id, outcome)
            });
        }
        let mut report = Adoption::default();
        while let Some(done) = tasks.join_next().await {
            let Ok((id, outcome)) = done else { continue };
            match outcome {
                AdoptOutcome::Adopted => report.adopted.push(id),
                AdoptOutcome::Dead => report.dead.push(id),
                AdoptOutcome::Stuck => report.stuck.push(id),
            }
        }
        report.adopted.sort();
        report.dead.sort();
        report.stuck.sort();
        report
    }

    /// `seen`: the pid of a live process found for `id` by its command line.
    async fn adopt_one(self: &Arc<Self>, id: &str, seen: Option<u32>) -> AdoptOutcome {
        let peer = peer_name(P::KIND, id);
        let process = self
            .spawner
            .recorded_pid(P::KIND, id)
            .or(seen)
            .filter(|pid| self.spawner.is_helper_process(P::KIND, id, *pid))
            .and_then(|pid| Pidfd::open(pid).ok())
            .filter(|p| p.is_alive());
        let Some(pidfd) = process else {
            // No process: whatever answers on its socket (nothing can) is not it.
            tracing::warn!("{peer} is not alive; cleaning up after it");
            self.spawner.remove_leftovers(P::KIND, id);
            return AdoptOutcome::Dead;
        };
        match self.try_reach(id).await {
            Ok(h) => {
                tracing::info!("reconnected to {peer} (pid {})", h.info.pid);
                AdoptOutcome::Adopted
            }
            Err(e) => {
                tracing::warn!(
                    "{peer} (pid {}) is alive but does not answer ({e}); retrying",
                    pidfd.pid()
                );
                self.hold_stuck(id, pidfd);
                AdoptOutcome::Stuck
            }
        }
    }

    async fn try_reach(self: &Arc<Self>, id: &str) -> Result<Helper<P>, SuperviseError> {
        let peer = peer_name(P::KIND, id);
        let socket = self.spawner.socket(P::KIND, id)?;
        let quick = self.deadlines.quick;
        let bootstrap = tokio::time::timeout(quick, bootstrap_connect(&socket, &peer))
            .await
            .map_err(|_| ProtocolError::Timeout {
                peer: peer.clone(),
                what: "hello".into(),
                secs: quick.as_secs(),
            })??;
        self.register(id, &bootstrap, None).await
    }

    /// Keeps a live helper that does not answer: tries it again every second until it
    /// answers (then it is adopted) or its process exits (then it is cleaned up after).
    fn hold_stuck(self: &Arc<Self>, id: &str, pidfd: Pidfd) {
        let pidfd = Arc::new(pidfd);
        lock(&self.stuck).insert(
            id.to_string(),
            Stuck {
                id: id.to_string(),
                pidfd: pidfd.clone(),
            },
        );
        let table = Arc::downgrade(self);
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = pidfd.exited() => {
                        let Some(table) = table.upgrade() else { return };
                        if lock(&table.stuck).remove(&id).is_some() {
                            table.spawner.remove_leftovers(P::KIND, &id);
                            let _ = table.events.send(HelperEvent::Gone(HelperGone {
                                kind: P::KIND,
                                id: id.clone(),
                                pid: pidfd.pid(),
                            }));
                        }
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let Some(table) = table.upgrade() else { return };
                if table.stuck(&id).is_none() {
                    return; // killed or taken over meanwhile
                }
                if table.try_reach(&id).await.is_ok() && lock(&table.stuck).remove(&id).is_some() {
                    tracing::info!("{} answers again", peer_name(P::KIND, &id));
                    let _ = table.events.send(HelperEvent::Adopted {
                        kind: P::KIND,
                        id: id.clone(),
                    });
                    return;
                }
            }
        });
    }

    /// Tries a stuck helper now rather than at its next retry: `true` if it answers (it
    /// is adopted, and the orchestrator hears so).
    pub async fn reach_stuck(self: &Arc<Self>, id: &str) -> bool {
        if self.stuck(id).is_none() {
            return false;
        }
        if self.try_reach(id).await.is_ok() && lock(&self.stuck).remove(id).is_some() {
            tracing::info!("{} answers again", peer_name(P::KIND, id));
            let _ = self.events.send(HelperEvent::Adopted {
                kind: P::KIND,
                id: id.to_string(),
            });
            return true;
        }
        false
    }

    /// Asks a helper to exit and waits until its process is gone; kills it when it does
    /// not answer in time. `true` when it answered (it tore down what it owns); `false`
    /// when it was gone, stuck or killed, so what it owns may be left for the caller.
    /// Either way no process is left when this returns.
    pub async fn shutdown(&self, id: &str, deadline: Duration) -> bool {
        let Some(helper) = self.forget(id) else {
            self.kill_stuck(id).await;
            return false;
        };
        let answered = helper
            .client
            .call_within("shut down", deadline, P::shutdown_request(), vec![])
            .await;
        let clean = match answered {
            Ok(_) => true,
            Err(e) => {
                if !e.is_gone() {
                    tracing::warn!("{}: {e}; killing it", helper.peer());
                }
                false
            }
        };
        let exited = helper.pidfd.exited_within(EXIT_GRACE).await;
        if !exited {
            let _ = helper.pidfd.kill_group();
            helper.pidfd.exited().await;
        }
        // Gone: its endpoints say so as soon as their readers see the close.
        let _ = tokio::time::timeout(EXIT_GRACE, helper.client.closed()).await;
        clean && exited
    }

    /// Kills a helper at once (its whole process group) and waits for it to be gone.
    /// `true` if there was one.
    pub async fn kill(&self, id: &str) -> bool {
        if let Some(helper) = self.forget(id) {
            let _ = helper.pidfd.kill_group();
            helper.pidfd.exited().await;
            return true;
        }
        self.kill_stuck(id).await
    }

    async fn kill_stuck(&self, id: &str) -> bool {
        let Some(stuck) = lock(&self.stuck).remove(id) else {
            return false;
        };
        let _ = stuck.pidfd.kill_group();
        stuck.pidfd.exited().await;
        self.spawner.remove_leftovers(P::KIND, id);
        true
    }
}

enum AdoptOutcome {
    Adopted,
    Dead,
    Stuck,
}
