//! Networks: create (validate everything first, then persist, then start the helper,
//! undoing on failure), list, inspect, remove (resumable), prune, GC, and the explicit
//! start of a network's helper.

mod gc;
mod remove;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use container_netlink::Netlink;
use container_network_helper::plugins;
use container_protocol::api::{NetworkCreate, NetworkSummary};
use container_protocol::fault;
use container_protocol::network::{PluginKind, UnknownPlugin};
use container_store::container::{list_containers, load_config, load_state, Status};
use container_store::network::{load_networks, remove_network, save_network, DEFAULT_NETWORK};
use container_store::{unix_now, validate_id, NameKind, NetworkConfig, Paths};
use container_supervise::{Helper, HelperTable, NetworkProto};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{bad, ApiError};
use crate::keyed::{KeyedGates, KeyedLocks};
use crate::ops::{Holds, Ops};
use crate::subnets;

fn parse_net<T: std::str::FromStr>(what: &str, example: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid {what} {value:?}: expected a CIDR such as {example}"
        ))
    })
}

/// The networks' side of the apiserver: records, their helpers, their GC. It reads the
/// container records to know what is live, and never calls into the containers' side.
pub struct Networks {
    paths: Paths,
    table: Arc<HelperTable<NetworkProto>>,
    host_netlink: Netlink,
    ops: Arc<Ops>,
    /// Serialises name and subnet checks with the record writes that make them true.
    /// Never held across a call to a helper.
    records: tokio::sync::Mutex<()>,
    /// One helper start, or removal, per network at a time.
    per_network: KeyedLocks,
    /// The GC gate: a start holds it shared from before it registers its attachments
    /// until they are allocated; a GC holds it alone while it computes its live set and
    /// collects. So a GC's live set always includes every attachment being made, and no
    /// address is released under a start in flight.
    gates: KeyedGates,
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
        table: Arc<HelperTable<NetworkProto>>,
        host_netlink: Netlink,
        ops: Arc<Ops>,
    ) -> Arc<Networks> {
        Arc::new(Networks {
            paths,
            table,
            host_netlink,
            ops,
            records: tokio::sync::Mutex::new(()),
            per_network: KeyedLocks::default(),
            gates: KeyedGates::default(),
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
        for id in list_containers(&self.paths) {
            let Ok(state) = load_state(&self.paths, &id) else {
                continue;
            };
            if state.status != Status::Running {
                continue;
            }
            for a in state.allocations.iter().filter(|a| a.network == network) {
                live.push((a.container_id.clone(), a.ifname.clone()));
            }
        }
        live.sort();
        live.dedup();
        live
    }

    /// Containers whose configuration names `network`.
    pub fn containers_on(&self, network: &str) -> Vec<String> {
        list_containers(&self.paths)
            .into_iter()
            .filter(|id| {
                load_config(&self.paths, id)
                    .map(|c| c.networks.iter().any(|n| n.network == network))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// At apiserver start: the default network exists, removals cut short are finished,
    /// every other network gets its helper, and (seed 004) every reservation no live
    /// container holds is released.
    pub async fn start_all(self: &Arc<Self>) {
        if let Err(e) = self.ensure_default_network().await {
            tracing::error!("default network: {e}");
        }
        let (configs, errors) = load_networks(&self.paths);
        for e in errors {
            tracing::error!("skipping network record: {e}");
        }
        for config in configs {
            if config.removing {
                tracing::info!("network {}: finishing its interrupted removal", config.id);
                if let Err(e) = self.finish_removal(&config.id).await {
                    tracing::error!("network {}: {e}", config.id);
                }
                continue;
            }
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
        save_network(&self.paths, &config)?;
        tracing::info!(
            "created the default network ({})",
            config.subnet.map(|s| s.to_string()).unwrap_or_default()
        );
        Ok(())
    }

    /// Every check a create makes, with nothing changed yet.
    pub async fn validate_network(&self, req: NetworkCreate) -> Result<NetworkConfig, ApiError> {
        validate_id(NameKind::Network, &req.name)?;
        if self.paths.network_config(&req.name)?.exists() {
            return Err(ApiError::Conflict(format!(
                "network {} already exists",
                req.name
            )));
        }
        let plugin: PluginKind = match &req.plugin {
            Some(name) => name
                .parse()
                .map_err(|e: UnknownPlugin| bad(e.to_string()))?,
            None => container_store::network::DEFAULT_PLUGIN,
        };
        let uses_ipam = plugins::uses_ipam(plugin);
        if !uses_ipam
            && (req.subnet.is_some()
                || req.subnet_v6.is_some()
                || req.gateway.is_some()
                || req.gateway_v6.is_some())
        {
            return Err(bad(format!(
                "plugin {plugin} takes no --subnet or --gateway"
            )));
        }
        let mut labels = BTreeMap::new();
        for (k, v) in &req.labels {
            if k.is_empty() {
                return Err(bad(format!("invalid label {k:?}={v:?}: empty key")));
            }
            labels.insert(k.clone(), v.clone());
        }
        let mut options = BTreeMap::new();
        for (k, v) in &req.options {
            if options.insert(k.clone(), v.clone()).is_some() {
                return Err(bad(format!("option {k} given twice")));
            }
        }

        let (others, _) = load_networks(&self.paths);
        // Other networks' subnets, a CNI conflist's declared ranges among them.
        let taken: Vec<(String, IpNet)> = others
            .iter()
            .flat_map(|n| plugins::subnets(n).into_iter().map(|s| (n.id.clone(), s)))
            .collect();
        let check_overlap = |net: IpNet| -> Result<(), ApiError> {
            if let Some((other, s)) = taken.iter().find(|(_, s)| subnets::overlaps(s, &net)) {
                return Err(ApiError::Conflict(format!(
                    "subnet {net} overlaps network {other} ({s})"
                )));
            }
            Ok(())
        };

        let subnet: Option<Ipv4Net> = match &req.subnet {
            Some(s) => {
                let net: Ipv4Net = parse_net("subnet", "10.1.2.0/24", s)?;
                if net.trunc() != net {
                    return Err(bad(format!(
                        "invalid subnet {s}: host bits are set (did you mean {}?)",
                        net.trunc()
                    )));
                }
                if net.prefix_len() > 30 {
                    return Err(bad(format!(
                        "invalid subnet {s}: a /{} leaves no room for containers (at most /30)",
                        net.prefix_len()
                    )));
                }
                check_overlap(IpNet::V4(net))?;
                Some(net)
            }
            // A gateway without a subnet is the plugins' `validate` to refuse below.
            None if uses_ipam && req.gateway.is_none() => {
                let routes = self.host_routes().await;
                let taken: Vec<IpNet> = taken.iter().map(|(_, s)| *s).collect();
                Some(subnets::pick_v4(&taken, &routes).ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "no free /24 left in the pool {}; give --subnet",
                        subnets::POOL
                    ))
                })?)
            }
            None => None,
        };
        // Parsed here, checked against the subnet by the plugins' `validate` below.
        let gateway = match &req.gateway {
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?,
            ),
            None => subnet.map(plugins::default_gateway_v4),
        };
        let subnet_v6: Option<Ipv6Net> = match &req.subnet_v6 {
            Some(s) => {
                let net: Ipv6Net = parse_net("IPv6 subnet", "fd00:1::/64", s)?;
                if net.trunc() != net {
                    return Err(bad(format!(
                        "invalid IPv6 subnet {s}: host bits are set (did you mean {}?)",
                        net.trunc()
                    )));
                }
                if net.prefix_len() > 126 {
                    return Err(bad(format!(
                        "invalid IPv6 subnet {s}: too small (at most /126)"
                    )));
                }
                check_overlap(IpNet::V6(net))?;
                Some(net)
            }
            None => None,
        };
        let gateway_v6 = match &req.gateway_v6 {
            Some(g) => Some(
                g.parse::<Ipv6Addr>()
                    .map_err(|_| bad(format!("invalid IPv6 gateway {g:?}")))?,
            ),
            None => subnet_v6.map(plugins::default_gateway_v6),
        };

        let config = NetworkConfig {
            version: container_store::network::NETWORK_RECORD_VERSION,
            id: req.name.clone(),
            plugin,
            subnet,
            gateway,
            subnet_v6,
            gateway_v6,
            internal: req.internal,
            labels,
            options,
            created: unix_now(),
            builtin: false,
            removing: false,
        };
        plugins::validate(&config).map_err(|e| bad(format!("network {}: {e}", config.id)))?;
        // What the plugin hands out beyond our IPAM (a conflist's ranges) must not
        // overlap either.
        let plugin = plugins::Plugin::for_config(&config)
            .map_err(|e| bad(format!("network {}: {e}", config.id)))?;
        for net in plugin.declared_subnets() {
            check_overlap(net)?;
        }
        for other in &others {
            if let (Some(a), Some(b)) = (plugins::bridge_name(&config), plugins::bridge_name(other))
            {
                if a == b {
                    return Err(ApiError::Conflict(format!(
                        "bridge {a} is already used by network {}",
                        other.id
                    )));
                }
            }
        }
        plugins::check_host(&config, &self.host_netlink)
            .await
            .map_err(|e| bad(format!("network {}: {e}", config.id)))?;
        Ok(config)
    }

    async fn host_routes(&self) -> Vec<IpNet> {
        match self
            .host_netlink
            .routes(container_netlink::IpFamily::V4)
            .await
        {
            Ok(routes) => routes.into_iter().map(|r| r.dest).collect(),
            Err(e) => {
                tracing::warn!("reading host routes: {e}");
                vec![]
            }
        }
    }

    pub async fn create(self: &Arc<Self>, req: NetworkCreate) -> Result<NetworkConfig, ApiError> {
        let _op = self.ops.begin(
            &format!("network create {}", req.name),
            Holds::networks(std::slice::from_ref(&req.name)),
        )?;
        let config = {
            let _records = self.records.lock().await;
            let config = self.validate_network(req).await?;
            save_network(&self.paths, &config)?;
            config
        };
        fault::point("apiserver:network-after-record");
        if let Err(e) = self.helper(&config.id).await {
            // `helper` already tore down and stopped a helper whose set-up failed; what
            // is left to undo is the record.
            let _ = remove_network(&self.paths, &config.id);
            return Err(e);
        }
        tracing::info!("network {} created ({})", config.id, config.plugin);
        Ok(config)
    }

    pub fn list(&self) -> Vec<NetworkSummary> {
        let (configs, _) = load_networks(&self.paths);
        configs
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
        let config =
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
            })?;
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
        load_networks(&self.paths)
            .0
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

/// Checks a record read from disk as a create would have: a hand-edited or corrupt file
/// must not reach a helper.
pub fn check_record(config: &NetworkConfig) -> Result<(), String> {
    if let Some(net) = config.subnet {
        if net.trunc() != net {
            return Err(format!("subnet {net}: host bits are set"));
        }
    }
    if let Some(net) = config.subnet_v6 {
        if net.trunc() != net {
            return Err(format!("IPv6 subnet {net}: host bits are set"));
        }
    }
    plugins::validate(config).map_err(|e| e.to_string())
}
