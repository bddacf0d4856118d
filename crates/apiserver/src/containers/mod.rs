//! Containers: the whole lifecycle, driven step by step from here (seed 002).
//!
//! * `validate`: a configuration checked whole before anything is written;
//! * `start`: the sandbox bootstrapped step by step, each step with its undo;
//! * `finish`: the exit path, and the cleanup after a sandbox that died;
//! * `control`: stop, kill, rm, wait;
//! * `connect`: `network connect` and `disconnect`, live or on the record;
//! * `exec`, `query` (ls, inspect, logs), `reconcile` (after an apiserver restart).
//!
//! An operation begun here runs to its end or to its undo whatever its client does:
//! every mutating call is registered in [`Ops`] (so GC and `check` leave what it holds
//! alone) and runs detached from the client's connection.

mod confine;
mod connect;
mod control;
mod exec;
mod finish;
mod health;
mod query;
mod reconcile;
mod restart;
mod security;
mod start;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use container_protocol::sandbox::ExitStatus;
use container_store::container::{ContainerConfig, ContainerState};
use container_store::{validate_id, NameKind, Paths};
use container_supervise::{HelperTable, SandboxProto};
use tokio::sync::watch;

use crate::claims::Claims;
use crate::error::ApiError;
use crate::events::Events;
use crate::keyed::KeyedLocks;
use crate::networks::Networks;
use crate::ops::Ops;
use crate::records::Records;

pub use exec::Execd;
pub use security::SecurityDefaults;

/// How a container's run ended, as its waiters learn it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    /// Why the stopped state could not be written, if it could not.
    pub unsaved: Option<String>,
}

/// Exit notifications: a sequence number and the last end, so a waiter that subscribed
/// before a start sees the exit that follows it.
type ExitWatch = watch::Sender<(u64, Option<Finished>)>;

pub struct Containers {
    paths: Paths,
    records: Arc<Records>,
    events: Arc<Events>,
    sandboxes: Arc<HelperTable<SandboxProto>>,
    networks: Arc<Networks>,
    images: Arc<crate::images::Images>,
    volumes: Arc<crate::volumes::Volumes>,
    ops: Arc<Ops>,
    claims: Claims,
    /// One operation per container at a time.
    locks: KeyedLocks,
    exits: Mutex<HashMap<String, ExitWatch>>,
    /// Serialises creation: name uniqueness.
    create: tokio::sync::Mutex<()>,
    /// How recently auto-removed containers ended, so a `wait` that arrives just after
    /// the removal (an attached `run --rm` whose workload exits at once) still learns
    /// the exit. Bounded.
    removed: Mutex<std::collections::VecDeque<(String, ExitStatus)>>,
    /// Containers a user is stopping or killing: their exit is the user's, and no
    /// restart policy undoes it.
    user_stops: Mutex<std::collections::HashSet<String>>,
    /// Runs killed for being unhealthy with `--health-on-failure=restart`.
    health_restarts: Mutex<std::collections::HashSet<String>>,
    /// Health of running containers with a check.
    health: health::HealthTable,
    /// Defaults for what a container's confinement leaves unsaid.
    security: SecurityDefaults,
    /// Seccomp programs, each compiled once.
    seccomp: container_seccomp::Cache,
    /// cgroup parent, user-namespace default and ranges (issue 10).
    pub(crate) resources: crate::resources::Settings,
    /// `--serial-start`: a start's steps one after another (a benchmark's baseline).
    serial_start: bool,
}

/// The apiserver-wide settings a container's confinement starts from.
pub struct Policy {
    pub security: SecurityDefaults,
    pub resources: crate::resources::Settings,
    pub serial_start: bool,
}

/// How many auto-removed containers' exits `wait` still knows.
const REMEMBERED_EXITS: usize = 256;

impl Containers {
    pub fn new(
        paths: Paths,
        records: Arc<Records>,
        events: Arc<Events>,
        sandboxes: Arc<HelperTable<SandboxProto>>,
        (networks, images, volumes): (
            Arc<Networks>,
            Arc<crate::images::Images>,
            Arc<crate::volumes::Volumes>,
        ),
        ops: Arc<Ops>,
        policy: Policy,
    ) -> Arc<Containers> {
        Arc::new(Containers {
            paths,
            records,
            events,
            sandboxes,
            networks,
            images,
            volumes,
            ops,
            claims: Claims::default(),
            locks: KeyedLocks::default(),
            exits: Mutex::new(HashMap::new()),
            create: tokio::sync::Mutex::new(()),
            removed: Mutex::new(std::collections::VecDeque::new()),
            user_stops: Mutex::new(Default::default()),
            health_restarts: Mutex::new(Default::default()),
            health: Default::default(),
            security: policy.security,
            seccomp: container_seccomp::Cache::default(),
            resources: policy.resources,
            serial_start: policy.serial_start,
        })
    }

    pub fn sandboxes(&self) -> &Arc<HelperTable<SandboxProto>> {
        &self.sandboxes
    }

    pub fn records(&self) -> &Arc<Records> {
        &self.records
    }

    /// The configuration and the state as the apiserver knows them (written or not).
    pub fn load(&self, id: &str) -> Result<(ContainerConfig, ContainerState), ApiError> {
        validate_id(NameKind::Container, id)?;
        match self.records.container(id) {
            Some(r) => Ok(((*r.config).clone(), (*r.state).clone())),
            None => match self.records.unreadable(id) {
                Some(e) => Err(e.into()),
                None => Err(ApiError::NotFound {
                    kind: "container",
                    name: id.to_string(),
                }),
            },
        }
    }

    /// Writes a state. When that fails, the state is still the truth: it is kept and
    /// written later, and the caller is told.
    fn persist(&self, id: &str, state: &ContainerState) -> Result<(), ApiError> {
        self.records.set_state(id, state.clone()).map_err(|e| {
            ApiError::Internal(format!(
                "container {id}: its record could not be written ({e}); it is {} and the apiserver writes that as soon as it can",
                state.status
            ))
        })
    }

    /// Writes the states that could not be written before. Runs every few seconds.
    pub fn flush_unsaved(&self) {
        self.records.flush();
    }

    pub async fn flush_unsaved_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.flush_unsaved();
        }
    }

    fn exit_watch(&self, id: &str) -> ExitWatch {
        let mut map = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| watch::Sender::new((0, None)))
            .clone()
    }

    /// Drops a removed container's entries, so the tables do not grow with every
    /// container ever run. A waiter still subscribed keeps its receiver.
    fn forget(&self, id: &str) {
        self.locks.forget(id);
        self.health.forget(id);
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn remember_removed(&self, id: &str, status: ExitStatus) {
        let mut r = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(i, _)| i != id);
        if r.len() >= REMEMBERED_EXITS {
            r.pop_front();
        }
        r.push_back((id.to_string(), status));
    }

    fn removed_exit(&self, id: &str) -> Option<ExitStatus> {
        self.removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|(_, s)| *s)
    }

    /// Sends the container's names on every network `config` joins (names.rs in
    /// networks/); `leaving`: none, although its record still says running.
    async fn sync_names_of(&self, config: &ContainerConfig, leaving: bool) {
        for att in &config.networks {
            self.networks
                .sync_names(&att.network, &config.id, leaving)
                .await;
        }
    }

    /// Marks the next exit of `id` as the user's doing.
    fn mark_user_stop(&self, id: &str) {
        self.user_stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    fn take_user_stop(&self, id: &str) -> bool {
        self.user_stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    fn publish(&self, action: &str, id: &str, attributes: &[(&str, String)]) {
        // A container's name is its id; the attribute says so for filters and readers
        // that look for Docker's `name`.
        let mut attrs = vec![("name", id.to_string())];
        attrs.extend(attributes.iter().cloned());
        self.events.publish(
            container_protocol::api::EventType::Container,
            action,
            id,
            &attrs,
        );
    }

    /// A removed container's anonymous volumes (`rm -v`, `--rm`), as Docker's.
    async fn remove_anonymous_volumes(&self, config: &ContainerConfig) {
        if config
            .mounts
            .iter()
            .any(|m| m.anonymous && m.kind == container_protocol::volume::MountKind::Volume)
        {
            self.volumes.remove_anonymous(config).await;
        }
    }

    pub fn log_path(&self, id: &str) -> Result<std::path::PathBuf, ApiError> {
        Ok(self.paths.container_dir(id)?.join("container.log"))
    }
}
