//! The apiserver's view of its records, in memory: `ls`, `inspect`, `network ls` and
//! every check an operation makes are answered from here, not from the disk. The view
//! is read from the disk at start, and kept true by the operations that change records:
//! each write goes to the disk first (atomically) and then here. A state write the disk
//! refuses (a full disk) still lands here, marked unsaved, and is written as soon as the
//! disk allows. `system check` reads the disk again and compares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use container_protocol::api::ContainerSummary;
use container_store::container::{
    list_containers, load_config, load_state, remove_container, save_config, save_state,
    ContainerConfig, ContainerState,
};
use container_store::network::{load_networks, remove_network, save_network};
use container_store::{NetworkConfig, Paths, StoreError};

/// A container as the apiserver knows it.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub config: Arc<ContainerConfig>,
    /// Shared, so that a look at every record (a name check, `ls`) copies none: a
    /// change replaces it whole.
    pub state: Arc<ContainerState>,
    /// What `ls` shows of it (health aside), made again at each change: `ls` with
    /// 1,000 containers copies none of them.
    pub summary: Arc<ContainerSummary>,
    /// The state differs from what the disk holds (its write failed).
    pub unsaved: bool,
}

impl ContainerRecord {
    fn new(config: Arc<ContainerConfig>, state: Arc<ContainerState>) -> ContainerRecord {
        let summary = Arc::new(summary(&config, &state));
        ContainerRecord {
            config,
            state,
            summary,
            unsaved: false,
        }
    }
}

fn summary(config: &ContainerConfig, state: &ContainerState) -> ContainerSummary {
    ContainerSummary {
        id: config.id.clone(),
        command: config.process.args.join(" "),
        status: state.status,
        exit_code: state.exit_code,
        created: config.created,
        networks: config.networks.iter().map(|n| n.network.clone()).collect(),
        addresses: state
            .allocations
            .iter()
            .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
            .collect(),
        pid: state.pid,
        health: None,
    }
}

/// The containers by id, and the ids of those with a network alias: who answers to a
/// name is one lookup (ids are lowercase) and a scan of those few, not of every
/// record (issue 16). No entry for a container without aliases: an index of every
/// name cost more memory than the apiserver's budget allows at 1,000.
#[derive(Default)]
struct View {
    map: BTreeMap<String, ContainerRecord>,
    aliased: BTreeSet<String>,
}

impl View {
    fn get(&self, id: &str) -> Option<&ContainerRecord> {
        self.map.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut ContainerRecord> {
        self.map.get_mut(id)
    }

    fn insert(&mut self, id: String, r: ContainerRecord) {
        self.note(&id, &r.config);
        self.map.insert(id, r);
    }

    fn remove(&mut self, id: &str) {
        self.aliased.remove(id);
        self.map.remove(id);
    }

    /// Keeps `aliased` true for `id`, whose configuration is now `config`.
    fn note(&mut self, id: &str, config: &ContainerConfig) {
        if config.networks.iter().any(|n| !n.aliases.is_empty()) {
            self.aliased.insert(id.to_string());
        } else {
            self.aliased.remove(id);
        }
    }
}

pub struct Records {
    paths: Paths,
    containers: RwLock<View>,
    /// Records that could not be read at start, by id: reported, and removable by force.
    unreadable: RwLock<BTreeMap<String, (PathBuf, String)>>,
    networks: RwLock<BTreeMap<String, NetworkConfig>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Records {
    /// Reads every record. Unreadable network records are returned (by name, for the
    /// log); unreadable container records are kept by id.
    pub fn load(paths: &Paths) -> (Arc<Records>, Vec<StoreError>) {
        let mut containers = View::default();
        let mut unreadable = BTreeMap::new();
        for id in list_containers(paths) {
            let loaded = load_config(paths, &id).and_then(|c| Ok((c, load_state(paths, &id)?)));
            match loaded {
                Ok((config, state)) => {
                    containers.insert(id, ContainerRecord::new(Arc::new(config), Arc::new(state)));
                }
                Err(e) => {
                    tracing::error!("container {id}: unreadable record: {e}");
                    let path = paths
                        .container_dir(&id)
                        .map(|d| d.join("config.json"))
                        .unwrap_or_default();
                    unreadable.insert(id, (path, e.to_string()));
                }
            }
        }
        let (nets, errors) = load_networks(paths);
        let networks = nets.into_iter().map(|n| (n.id.clone(), n)).collect();
        (
            Arc::new(Records {
                paths: paths.clone(),
                containers: RwLock::new(containers),
                unreadable: RwLock::new(unreadable),
                networks: RwLock::new(networks),
            }),
            errors,
        )
    }

    // --- containers -------------------------------------------------------------

    pub fn container(&self, id: &str) -> Option<ContainerRecord> {
        read(&self.containers).get(id).cloned()
    }

    /// Why a record that exists on disk could not be read, if so.
    pub fn unreadable(&self, id: &str) -> Option<StoreError> {
        read(&self.unreadable)
            .get(id)
            .map(|(path, message)| StoreError::Json {
                path: path.clone(),
                message: message.clone(),
            })
    }

    pub fn container_ids(&self) -> Vec<String> {
        read(&self.containers).map.keys().cloned().collect()
    }

    /// Every container, in id order.
    pub fn containers(&self) -> Vec<(String, ContainerRecord)> {
        read(&self.containers)
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `f` over every container in id order, under the view's read lock: for the
    /// looks an operation takes at every record, which must not copy them (their cost
    /// would grow with the host's containers). `f` must not call back into `Records`.
    pub fn scan<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = (&str, &ContainerRecord)>) -> R,
    ) -> R {
        let view = read(&self.containers);
        let mut it = view.map.iter().map(|(k, v)| (k.as_str(), v));
        f(&mut it)
    }

    /// Whether a container of this id is in the view.
    pub fn has_container(&self, id: &str) -> bool {
        read(&self.containers).map.contains_key(id)
    }

    /// `f` over the containers with a network alias, in id order, as `scan`.
    pub fn scan_aliased<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = (&str, &ContainerRecord)>) -> R,
    ) -> R {
        let view = read(&self.containers);
        let mut it = view
            .aliased
            .iter()
            .filter_map(|id| Some((id.as_str(), view.map.get(id)?)));
        f(&mut it)
    }

    /// Writes a new container's records, or nothing: a failed write removes what it
    /// made, directory included.
    pub fn create_container(
        &self,
        config: ContainerConfig,
        state: ContainerState,
    ) -> Result<(), StoreError> {
        let id = config.id.clone();
        let written =
            save_config(&self.paths, &config).and_then(|()| save_state(&self.paths, &id, &state));
        if let Err(e) = written {
            if let Err(undo) = remove_container(&self.paths, &id) {
                tracing::warn!("container {id}: undo a failed create: {undo}");
            }
            return Err(e);
        }
        let mut config = config;
        config.version = container_store::container::CONTAINER_RECORD_VERSION;
        write(&self.containers).insert(id, ContainerRecord::new(Arc::new(config), Arc::new(state)));
        Ok(())
    }

    /// The new state is the truth from now on; the disk gets it if it can. `Err` when
    /// it could not (the state is then marked unsaved and written later).
    pub fn set_state(&self, id: &str, state: ContainerState) -> Result<(), StoreError> {
        // A container gone from the view writes nothing (that would make its directory
        // again).
        if self.container(id).is_none() {
            return Ok(());
        }
        let saved = save_state(&self.paths, id, &state);
        if let Some(r) = write(&self.containers).get_mut(id) {
            r.summary = Arc::new(summary(&r.config, &state));
            r.state = Arc::new(state);
            r.unsaved = saved.is_err();
        }
        saved
    }

    /// Writes a container's configuration (`network connect`, `disconnect`): disk
    /// first, then the view; nothing changes when the disk refuses it.
    pub fn set_config(&self, config: ContainerConfig) -> Result<(), StoreError> {
        let id = config.id.clone();
        if self.container(&id).is_none() {
            return Ok(());
        }
        save_config(&self.paths, &config)?;
        let mut config = config;
        config.version = container_store::container::CONTAINER_RECORD_VERSION;
        let mut view = write(&self.containers);
        view.note(&id, &config);
        if let Some(r) = view.get_mut(&id) {
            r.summary = Arc::new(summary(&config, &r.state));
            r.config = Arc::new(config);
        }
        Ok(())
    }

    /// Writes the states the disk refused before. `true` when none is left.
    pub fn flush(&self) -> bool {
        let pending: Vec<(String, ContainerState)> = read(&self.containers)
            .map
            .iter()
            .filter(|(_, r)| r.unsaved)
            .map(|(k, r)| (k.clone(), (*r.state).clone()))
            .collect();
        let mut left = 0;
        for (id, state) in pending {
            match save_state(&self.paths, &id, &state) {
                Ok(()) => {
                    tracing::info!("container {id}: its record is written at last");
                    if let Some(r) = write(&self.containers).get_mut(&id) {
                        if *r.state == state {
                            r.unsaved = false;
                        }
                    }
                }
                Err(e) => {
                    left += 1;
                    tracing::debug!("container {id}: record still unwritten: {e}");
                }
            }
        }
        left == 0
    }

    /// Writes a container's records again from the view (`check --fix` of a file that
    /// went bad on disk).
    pub fn rewrite_container(&self, id: &str) -> Result<(), StoreError> {
        let Some(r) = self.container(id) else {
            return Ok(());
        };
        save_config(&self.paths, &r.config)?;
        save_state(&self.paths, id, &r.state)?;
        if let Some(r) = write(&self.containers).get_mut(id) {
            r.unsaved = false;
        }
        Ok(())
    }

    /// Removes a container's records, disk first.
    pub fn remove_container(&self, id: &str) -> Result<(), StoreError> {
        remove_container(&self.paths, id)?;
        write(&self.containers).remove(id);
        write(&self.unreadable).remove(id);
        Ok(())
    }

    /// Drops a container from the view only (`check --fix` of a record gone from disk).
    pub fn forget_container(&self, id: &str) {
        write(&self.containers).remove(id);
    }

    /// Takes in a record found on disk that the view did not have (`check --fix`).
    pub fn adopt_container(&self, config: ContainerConfig, state: ContainerState) {
        write(&self.containers).insert(
            config.id.clone(),
            ContainerRecord::new(Arc::new(config), Arc::new(state)),
        );
    }

    // --- networks ---------------------------------------------------------------

    pub fn network(&self, name: &str) -> Option<NetworkConfig> {
        read(&self.networks).get(name).cloned()
    }

    /// Every network, in name order.
    pub fn networks(&self) -> Vec<NetworkConfig> {
        read(&self.networks).values().cloned().collect()
    }

    pub fn save_network(&self, config: &NetworkConfig) -> Result<(), StoreError> {
        save_network(&self.paths, config)?;
        let mut config = config.clone();
        config.version = container_store::network::NETWORK_RECORD_VERSION;
        write(&self.networks).insert(config.id.clone(), config);
        Ok(())
    }

    pub fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        remove_network(&self.paths, name)?;
        write(&self.networks).remove(name);
        Ok(())
    }
}
