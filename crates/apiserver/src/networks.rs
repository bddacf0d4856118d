//! Networks: create (validate everything first, then persist, then start the helper,
//! undoing on failure), list, inspect, remove (resumable), prune, GC, and the explicit
//! start of a network's helper.

mod gc;
mod names;
mod remove;
mod validate;

pub use validate::check_record;

use std::sync::Arc;

use container_netlink::Netlink;
use container_network_helper::plugins;
use container_protocol::api::{NetworkCreate, NetworkSummary};
use container_protocol::fault;
use container_store::container::Status;
use container_store::network::DEFAULT_NETWORK;
use container_store::{validate_id, NameKind, NetworkConfig, Paths};
use container_supervise::{Helper, HelperTable, NetworkProto};

use crate::error::{bad, ApiError};
use crate::events::Events;
use crate::keyed::{KeyedGates, KeyedLocks};
use crate::ops::{Holds, Ops};
use crate::records::Records;
use crate::subnets;

/// The networks' side of the apiserver: records, their helpers, their GC. It reads the
/// container records to know what is live, and never calls into the containers' side.
pub struct Networks {
    paths: Paths,
    records: Arc<Records>,
    events: Arc<Events>,
    table: Arc<HelperTable<NetworkProto>>,
    host_netlink: Netlink,
    ops: Arc<Ops>,
    /// Serialises name and subnet checks with the record writes that make them true.
    /// Never held across a call to a helper.
    checks: tokio::sync::Mutex<()>,
    /// One helper start, or removal, per network at a time.
    per_network: KeyedLocks,
    /// The GC gate: a start holds it shared from before it registers its attachments
    /// until they are allocated; a GC holds it alone while it computes its live set and
    /// collects. So a GC's live set always includes every attachment being made, and no
    /// address is released under a start in flight.
    gates: KeyedGates,
    /// One send of a network's names at a time (names.rs).
    names: KeyedLocks,
    /// Networks whose helper may have missed a names update (names.rs).
    names_stale: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Why a helper is wanted: only a removal may use the helper of a network being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Use,
    Remove,
}

impl Networks {
    pub fn new(
        paths: Paths,
        records: Arc<Records>,
        events: Arc<Events>,
        table: Arc<HelperTable<NetworkProto>>,
        host_netlink: Netlink,
        ops: Arc<Ops>,
    ) -> Arc<Networks> {
        Arc::new(Networks {
            paths,
            records,
            events,
            table,
            host_netlink,
            ops,
            checks: tokio::sync::Mutex::new(()),
            per_network: KeyedLocks::default(),
            gates: KeyedGates::default(),
            names: KeyedLocks::default(),
            names_stale: Default::default(),
        })
    }

    pub fn table(&self) -> &Arc<HelperTable<NetworkProto>> {
        &self.table
    }

    pub fn host_netlink(&self) -> &Netlink {
        &self.host_netlink
    }

    /// The network's helper, started explicitly (with set-up and GC) if none is alive.
    /// Nothing else ever starts a network helper.
    pub async fn helper(self: &Arc<Self>, name: &str) -> Result<Helper<NetworkProto>, ApiError> {
        self.helper_for(name, Purpose::Use).await
    }

    async fn helper_for(
        self: &Arc<Self>,
        name: &str,
        purpose: Purpose,
    ) -> Result<Helper<NetworkProto>, ApiError> {
        let config = self.config(name)?;
        if config.removing && purpose == Purpose::Use {
            return Err(ApiError::Conflict(format!(
                "network {name} is being removed"
            )));
        }
        if let Some(h) = self.table.get(name) {
            return Ok(h);
        }
        let lock = self.per_network.get(name);
        let _starting = lock.lock().await;
        if let Some(h) = self.table.get(name) {
            return Ok(h);
        }
        // Records are only written after an overlap check, but files can be copied in
        // by hand: of two overlapping networks only the older one may come up.
        if let Some(older) = self.older_overlapping(&config) {
            return Err(ApiError::Conflict(format!(
                "network {name}: its subnet overlaps network {older}; not starting it"
            )));
        }
        let helper = self
            .table
            .start(&config.id, &[])
            .await
            .map_err(|e| ApiError::from(e).context(format!("network {name}")))?;
        let ready = async {
            helper.setup().await?;
            // No gate here: nothing allocates on a network whose helper is starting, and
            // what a start allocated on the helper before (registered in ops first) is
            // in the live set. A start holding the gate may be waiting for this helper.
            let released = helper.gc(self.live_attachments(name)).await?;
            for r in released {
                tracing::info!(
                    "network {name}: released stale reservation {} ({} {})",
                    r.ip,
                    r.container_id,
                    r.ifname
                );
            }
            Ok::<_, ApiError>(())
        };
        if let Err(e) = ready.await {
            // Undo whatever set-up built before the failure (unless removal will), then
            // stop the helper.
            if purpose == Purpose::Use {
                let _ = helper.teardown().await;
            }
            let _ = self
                .table
                .shutdown(name, self.table.deadlines().quick)
                .await;
            return Err(e);
        }
        // A new helper knows no names yet. Under `per_network`, which no names send
        // takes, so this waits for no one; the helper is in the table already.
        self.sync_all_names(name).await;
        Ok(helper)
    }

    /// Holds the GC gates of `networks` shared, for a start that is about to register
    /// and allocate attachments on them. In name order, so two starts never wait on
    /// each other.
    pub async fn gc_gates_shared(
        &self,
        networks: &[String],
    ) -> Vec<tokio::sync::OwnedRwLockReadGuard<()>> {
        let mut names = networks.to_vec();
        names.sort();
        names.dedup();
        let mut guards = Vec::new();
        for n in names {
            guards.push(self.gates.get(&n).read_owned().await);
        }
        guards
    }

    /// Holds one network's GC gate alone, for a GC.
    pub async fn gc_gate(&self, network: &str) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gates.get(network).write_owned().await
    }

    /// (container id, ifname) of every attachment that must survive a GC of `network`:
    /// those of operations in flight (read first: an operation that ends meanwhile has
    /// recorded its container as running by then), and those of running containers.
    pub fn live_attachments(&self, network: &str) -> Vec<(String, String)> {
        let mut live = self.ops.attachments_on(network);
        self.records.scan(|all| {
            for (_, r) in all.filter(|(_, r)| r.state.status == Status::Running) {
                for a in r.state.allocations.iter().filter(|a| a.network == network) {
                    live.push((a.container_id.clone(), a.ifname.clone()));
                }
            }
        });
        live.sort();
        live.dedup();
        live
    }

    /// Containers whose configuration names `network`.
    pub fn containers_on(&self, network: &str) -> Vec<String> {
        self.records.scan(|all| {
            all.filter(|(_, r)| r.config.networks.iter().any(|n| n.network == network))
                .map(|(id, _)| id.to_string())
                .collect()
        })
    }

    /// At apiserver start: the default network exists, removals cut short are finished,
    /// every other network gets its helper, and (seed 004) every reservation no live
    /// container holds is released.
    pub async fn start_all(self: &Arc<Self>) {
        if let Err(e) = self.ensure_default_network().await {
            tracing::error!("default network: {e}");
        }
        for config in self.records.networks() {
            if config.removing {
                tracing::info!("network {}: finishing its interrupted removal", config.id);
                if let Err(e) = self.finish_removal(&config.id).await {
                    tracing::error!("network {}: {e}", config.id);
                }
                continue;
            }
            // An adopted helper may have been cut short before its set-up (an apiserver
            // killed during `network create`): set-up is idempotent, so run it again.
            if let Some(h) = self.table.get(&config.id) {
                if let Err(e) = h.setup().await {
                    tracing::error!("network {}: set up: {e}", config.id);
                }
            }
            self.sync_all_names(&config.id).await;
            match self.gc_one(&config.id).await {
                Ok(released) => {
                    for r in released {
                        tracing::info!(
                            "network {}: released {} ({} {})",
                            config.id,
                            r.ip,
                            r.container_id,
                            r.ifname
                        );
                    }
                }
                Err(e) => tracing::error!("network {}: {e}", config.id),
            }
        }
    }

    async fn ensure_default_network(self: &Arc<Self>) -> Result<(), ApiError> {
        if self.paths.network_config(DEFAULT_NETWORK)?.exists() {
            return Ok(());
        }
        let req = NetworkCreate {
            name: DEFAULT_NETWORK.to_string(),
            ..Default::default()
        };
        let mut config = self.validate_network(req).await?;
        config.builtin = true;
        self.records.save_network(&config)?;
        tracing::info!(
            "created the default network ({})",
            config.subnet.map(|s| s.to_string()).unwrap_or_default()
        );
        Ok(())
    }

    pub async fn create(self: &Arc<Self>, req: NetworkCreate) -> Result<NetworkConfig, ApiError> {
        let _op = self.ops.begin(
            &format!("network create {}", req.name),
            Holds::networks(std::slice::from_ref(&req.name)),
        )?;
        let config = {
            let _checks = self.checks.lock().await;
            let config = self.validate_network(req).await?;
            self.records.save_network(&config)?;
            config
        };
        fault::point("apiserver:network-after-record");
        if let Err(e) = self.helper(&config.id).await {
            // `helper` already tore down and stopped a helper whose set-up failed; what
            // is left to undo is the record.
            let _ = self.records.remove_network(&config.id);
            return Err(e);
        }
        tracing::info!("network {} created ({})", config.id, config.plugin);
        self.events.publish(
            container_protocol::api::EventType::Network,
            "create",
            &config.id,
            &[("plugin", config.plugin.to_string())],
        );
        Ok(config)
    }

    pub fn list(&self) -> Vec<NetworkSummary> {
        self.records
            .networks()
            .into_iter()
            .map(|c| NetworkSummary {
                helper_pid: self.table.get(&c.id).map(|h| h.info.pid),
                containers: self.containers_on(&c.id),
                name: c.id,
                plugin: c.plugin.to_string(),
                subnet: c.subnet.map(|s| s.to_string()),
                subnet_v6: c.subnet_v6.map(|s| s.to_string()),
                internal: c.internal,
                builtin: c.builtin,
            })
            .collect()
    }

    pub async fn inspect(self: &Arc<Self>, names: Vec<String>) -> Result<String, ApiError> {
        let mut out = Vec::new();
        for name in names {
            let config = self.config(&name)?;
            let helper = self.helper(&name).await?;
            let state = helper.state().await?;
            out.push(serde_json::json!({
                "config": config,
                "state": state,
                "containers": self.containers_on(&name),
            }));
        }
        serde_json::to_string_pretty(&out).map_err(|e| bad(format!("encode: {e}")))
    }

    /// A network's record, checked as a create would check it: a missing file is "not
    /// found", an unreadable or invalid one is reported by path and reason.
    pub fn config(&self, name: &str) -> Result<NetworkConfig, ApiError> {
        validate_id(NameKind::Network, name)?;
        let config = match self.records.network(name) {
            Some(config) => config,
            // Not in the view: missing, or a file that could not be read at start
            // (said by path and reason).
            None => {
                container_store::network::load_network(&self.paths, name).map_err(|e| match e {
                    container_store::StoreError::Io { ref source, .. }
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        ApiError::NotFound {
                            kind: "network",
                            name: name.to_string(),
                        }
                    }
                    other => other.into(),
                })?
            }
        };
        check_record(&config).map_err(|e| {
            bad(format!(
                "network {name}: record {}: {e}",
                self.paths
                    .network_config(name)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ))
        })?;
        Ok(config)
    }
}

impl Networks {
    /// A network that overlaps `config` and takes precedence over it: one that is up,
    /// or an older one (created earlier, or the same second and a smaller name).
    fn older_overlapping(&self, config: &NetworkConfig) -> Option<String> {
        // A conflist's ranges count as much as a record's subnet.
        let nets = plugins::subnets;
        let mine = nets(config);
        self.records
            .networks()
            .into_iter()
            .filter(|o| o.id != config.id)
            // A network already up keeps its addresses; otherwise the older one wins.
            .filter(|o| {
                self.table.get(&o.id).is_some() || (o.created, &o.id) < (config.created, &config.id)
            })
            .find(|o| {
                nets(o)
                    .iter()
                    .any(|a| mine.iter().any(|b| subnets::overlaps(a, b)))
            })
            .map(|o| o.id)
    }
}
