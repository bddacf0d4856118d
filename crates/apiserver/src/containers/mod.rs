//! Containers: the whole lifecycle, driven step by step from here (seed 002).
//!
//! * `validate`: a configuration checked whole before anything is written;
//! * `start`: the sandbox bootstrapped step by step, each step with its undo;
//! * `finish`: the exit path, and the cleanup after a sandbox that died;
//! * `control`: stop, kill, rm, wait;
//! * `exec`, `query` (ls, inspect, logs), `reconcile` (after an apiserver restart).
//!
//! An operation begun here runs to its end or to its undo whatever its client does:
//! every mutating call is registered in [`Ops`] (so GC and `check` leave what it holds
//! alone) and runs detached from the client's connection.

mod control;
mod exec;
mod finish;
mod query;
mod reconcile;
mod start;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use container_protocol::sandbox::ExitStatus;
use container_store::container::{
    load_config, load_state, save_state, ContainerConfig, ContainerState,
};
use container_store::{validate_id, NameKind, Paths};
use container_supervise::{HelperTable, SandboxProto};
use tokio::sync::watch;

use crate::claims::Claims;
use crate::error::ApiError;
use crate::keyed::KeyedLocks;
use crate::networks::Networks;
use crate::ops::Ops;

pub use exec::Execd;

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
    sandboxes: Arc<HelperTable<SandboxProto>>,
    networks: Arc<Networks>,
    ops: Arc<Ops>,
    claims: Claims,
    /// One operation per container at a time.
    locks: KeyedLocks,
    exits: Mutex<HashMap<String, ExitWatch>>,
    /// States that could not be written (a full disk): the truth until they are.
    unsaved: Mutex<HashMap<String, ContainerState>>,
    /// Serialises creation: name uniqueness.
    create: tokio::sync::Mutex<()>,
    /// How recently auto-removed containers ended, so a `wait` that arrives just after
    /// the removal (an attached `run --rm` whose workload exits at once) still learns
    /// the exit. Bounded.
    removed: Mutex<std::collections::VecDeque<(String, ExitStatus)>>,
}

/// How many auto-removed containers' exits `wait` still knows.
const REMEMBERED_EXITS: usize = 256;

impl Containers {
    pub fn new(
        paths: Paths,
        sandboxes: Arc<HelperTable<SandboxProto>>,
        networks: Arc<Networks>,
        ops: Arc<Ops>,
    ) -> Arc<Containers> {
        Arc::new(Containers {
            paths,
            sandboxes,
            networks,
            ops,
            claims: Claims::default(),
            locks: KeyedLocks::default(),
            exits: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            create: tokio::sync::Mutex::new(()),
            removed: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    pub fn sandboxes(&self) -> &Arc<HelperTable<SandboxProto>> {
        &self.sandboxes
    }

    /// The configuration and the state as they are: the state not yet written, if any,
    /// else the record.
    pub fn load(&self, id: &str) -> Result<(ContainerConfig, ContainerState), ApiError> {
        validate_id(NameKind::Container, id)?;
        let config = load_config(&self.paths, id).map_err(|e| match e {
            container_store::StoreError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ApiError::NotFound {
                    kind: "container",
                    name: id.to_string(),
                }
            }
            other => other.into(),
        })?;
        let unsaved = self.unsaved_map().get(id).cloned();
        let state = match unsaved {
            Some(s) => s,
            None => load_state(&self.paths, id)?,
        };
        Ok((config, state))
    }

    fn unsaved_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerState>> {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a state. When that fails, the state is still the truth: it is kept and
    /// written later, and the caller is told.
    fn persist(&self, id: &str, state: &ContainerState) -> Result<(), ApiError> {
        match save_state(&self.paths, id, state) {
            Ok(()) => {
                self.unsaved_map().remove(id);
                Ok(())
            }
            Err(e) => {
                self.unsaved_map().insert(id.to_string(), state.clone());
                Err(ApiError::Internal(format!(
                    "container {id}: its record could not be written ({e}); it is {} and the apiserver writes that as soon as it can",
                    state.status
                )))
            }
        }
    }

    /// Writes the states that could not be written before. Runs every few seconds.
    pub fn flush_unsaved(&self) {
        let pending: Vec<(String, ContainerState)> = self
            .unsaved_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, state) in pending {
            if !self.paths.container_dir(&id).is_ok_and(|d| d.exists()) {
                self.unsaved_map().remove(&id);
                continue;
            }
            match save_state(&self.paths, &id, &state) {
                Ok(()) => {
                    tracing::info!("container {id}: its record is written at last");
                    let mut map = self.unsaved_map();
                    if map.get(&id) == Some(&state) {
                        map.remove(&id);
                    }
                }
                Err(e) => tracing::debug!("container {id}: record still unwritten: {e}"),
            }
        }
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
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.unsaved_map().remove(id);
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

    pub fn log_path(&self, id: &str) -> Result<std::path::PathBuf, ApiError> {
        Ok(self.paths.container_dir(id)?.join("container.log"))
    }
}
