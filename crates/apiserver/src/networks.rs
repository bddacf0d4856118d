//! Networks: create (validate everything first, then persist, then start the helper,
//! undoing on failure), list, inspect, remove, prune, GC, and the explicit start of a
//! network's helper.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use container_network_helper::plugins;
use container_protocol::api::{NetworkCreate, NetworkSummary};
use container_protocol::fault;
use container_protocol::network::{NetworkRequest, NetworkResponse, ReservationInfo};
use container_store::container::{list_containers, load_config, load_state, Status};
use container_store::network::{load_networks, remove_network, save_network, DEFAULT_NETWORK};
use container_store::{validate_id, NameKind, NetworkConfig};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::daemon::{unix_now, ApiServer};
use crate::error::ApiError;
use crate::helpers::{Helper, NetworkProto};
use crate::subnets;

fn parse_net<T: std::str::FromStr>(what: &str, example: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid {what} {value:?}: expected a CIDR such as {example}"
        ))
    })
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}

impl ApiServer {
    /// The network's helper, started explicitly (with set-up and GC) if it is not alive.
    /// Nothing else ever starts a network helper.
    pub async fn network_helper(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Helper<NetworkProto>, ApiError> {
        if let Some(h) = self.networks.get(name).filter(|h| !h.client.is_closed()) {
            return Ok(h);
        }
        let _starting = self.network_starts.lock().await;
        if let Some(h) = self.networks.get(name).filter(|h| !h.client.is_closed()) {
            return Ok(h);
        }
        let config = self.network_config(name)?;
        // Records are only written after an overlap check, but files can be copied in
        // by hand: of two overlapping networks only the older one may come up.
        if let Some(older) = self.older_overlapping(&config) {
            return Err(ApiError::Conflict(format!(
                "network {name}: its subnet overlaps network {older}; not starting it"
            )));
        }
        let helper = self.networks.start(&self.spawner, &config.id, &[]).await?;
        let ready = async {
            expect_done(
                helper.client.call(NetworkRequest::Setup).await,
                name,
                "set up",
            )?;
            let live = self.live_attachments(name);
            match helper.client.call(NetworkRequest::Gc { live }).await? {
                NetworkResponse::Collected(released) => {
                    for r in released {
                        tracing::info!(
                            "network {name}: released stale reservation {} ({} {})",
                            r.ip,
                            r.container_id,
                            r.ifname
                        );
                    }
                    Ok(())
                }
                _ => Err(bad(format!("network {name}: unexpected answer to gc"))),
            }
        };
        if let Err(e) = ready.await {
            // Undo whatever set-up built before the failure, then stop the helper.
            let _ = helper.client.call(NetworkRequest::Teardown).await;
            let _ = self.networks.shutdown(name).await;
            return Err(e);
        }
        Ok(helper)
    }

    /// (container id, ifname) of every attachment held by a live container on `network`.
    pub fn live_attachments(&self, network: &str) -> Vec<(String, String)> {
        let mut live = Vec::new();
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
        live
    }

    /// Containers whose configuration names `network`.
    pub fn containers_on(&self, network: &str) -> Vec<String> {
        list_containers(&self.paths)
            .into_iter()
            .filter(|id| {
                load_config(&self.paths, id)
                    .map(|c| {
                        crate::containers::attachment_networks(&c)
                            .iter()
                            .any(|n| n == network)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Starts a helper for every persisted network that has none alive; reports
    /// unreadable records by name and goes on.
    pub async fn start_networks(self: &Arc<Self>) {
        if let Err(e) = self.ensure_default_network().await {
            tracing::error!("default network: {e}");
        }
        let (configs, errors) = load_networks(&self.paths);
        for e in errors {
            tracing::error!("skipping network record: {e}");
        }
        for config in configs {
            // Seed 004: at every start, release what no live container holds. A helper
            // started here collects as it starts; a reconnected one is collected now.
            if self.networks.get(&config.id).is_none() {
                if let Err(e) = self.network_helper(&config.id).await {
                    tracing::error!("network {}: {e}", config.id);
                }
                continue;
            }
            match self.network_gc(Some(config.id.clone())).await {
                Ok(released) => {
                    for (network, r) in released {
                        tracing::info!(
                            "network {network}: released {} ({} {})",
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
        let plugin = req
            .plugin
            .clone()
            .unwrap_or_else(|| container_store::network::DEFAULT_PLUGIN.to_string());
        if !plugins::PLUGINS.contains(&plugin.as_str()) {
            return Err(bad(format!(
                "unknown plugin {plugin:?}: use one of {}",
                plugins::PLUGINS.join(", ")
            )));
        }
        let uses_ipam = plugins::uses_ipam(&plugin);
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
        if req.gateway.is_some() && req.subnet.is_none() {
            return Err(bad("--gateway needs --subnet"));
        }
        if req.gateway_v6.is_some() && req.subnet_v6.is_none() {
            return Err(bad("--gateway-v6 needs --subnet-v6"));
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
        let taken: Vec<(String, IpNet)> = others
            .iter()
            .flat_map(|n| {
                n.subnet
                    .map(IpNet::V4)
                    .into_iter()
                    .chain(n.subnet_v6.map(IpNet::V6))
                    .map(|s| (n.id.clone(), s))
            })
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
            None if uses_ipam => {
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
        let gateway = match (&req.gateway, subnet) {
            (Some(g), Some(net)) => {
                let ip: std::net::Ipv4Addr = g
                    .parse()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?;
                if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() {
                    return Err(bad(format!(
                        "gateway {ip} is not a host address of subnet {net}"
                    )));
                }
                Some(ip)
            }
            (Some(_), None) => return Err(bad("--gateway needs --subnet")),
            (None, Some(net)) => subnets::default_gateway_v4(&net),
            (None, None) => None,
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
        let gateway_v6 = match (&req.gateway_v6, subnet_v6) {
            (Some(g), Some(net)) => {
                let ip: std::net::Ipv6Addr = g
                    .parse()
                    .map_err(|_| bad(format!("invalid IPv6 gateway {g:?}")))?;
                if !net.contains(&ip) || ip == net.network() {
                    return Err(bad(format!(
                        "gateway {ip} is not a host address of subnet {net}"
                    )));
                }
                Some(ip)
            }
            (Some(_), None) => return Err(bad("--gateway-v6 needs --subnet-v6")),
            // ipnet's IPv6 hosts() starts at the network address itself.
            (None, Some(net)) => Some(std::net::Ipv6Addr::from(u128::from(net.network()) + 1)),
            (None, None) => None,
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
        };
        plugins::validate(&config).map_err(|e| bad(format!("network {}: {e}", config.id)))?;
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

    pub async fn network_create(
        self: &Arc<Self>,
        req: NetworkCreate,
    ) -> Result<NetworkConfig, ApiError> {
        let _ops = self.network_ops.lock().await;
        let config = self.validate_network(req).await?;
        save_network(&self.paths, &config)?;
        fault::point("apiserver:network-after-record");
        if let Err(e) = self.network_helper(&config.id).await {
            // `network_helper` already tore down and stopped a helper whose set-up
            // failed; what is left to undo is the record.
            let _ = remove_network(&self.paths, &config.id);
            return Err(e);
        }
        tracing::info!("network {} created ({})", config.id, config.plugin);
        Ok(config)
    }

    pub async fn network_list(self: &Arc<Self>) -> Vec<NetworkSummary> {
        let (configs, _) = load_networks(&self.paths);
        configs
            .into_iter()
            .map(|c| NetworkSummary {
                helper_pid: self.networks.get(&c.id).map(|h| h.info.pid),
                containers: self.containers_on(&c.id),
                name: c.id,
                plugin: c.plugin,
                subnet: c.subnet.map(|s| s.to_string()),
                subnet_v6: c.subnet_v6.map(|s| s.to_string()),
                internal: c.internal,
                builtin: c.builtin,
            })
            .collect()
    }

    pub async fn network_inspect(self: &Arc<Self>, names: Vec<String>) -> Result<String, ApiError> {
        let mut out = Vec::new();
        for name in names {
            validate_id(NameKind::Network, &name)?;
            let config = self.network_config(&name)?;
            let helper = self.network_helper(&name).await?;
            let state = match helper.client.call(NetworkRequest::State).await? {
                NetworkResponse::State(s) => s,
                _ => return Err(bad(format!("network {name}: unexpected answer to state"))),
            };
            out.push(serde_json::json!({
                "config": config,
                "state": state,
                "containers": self.containers_on(&name),
            }));
        }
        serde_json::to_string_pretty(&out).map_err(|e| bad(format!("encode: {e}")))
    }

    pub async fn network_remove(
        self: &Arc<Self>,
        names: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let _ops = self.network_ops.lock().await;
        // Check them all before removing any, so a bad name leaves every network alone.
        for name in &names {
            validate_id(NameKind::Network, name)?;
            let config = self.network_config(name)?;
            if config.builtin {
                return Err(ApiError::Conflict(format!(
                    "network {name} is built in and cannot be removed"
                )));
            }
            let users = self.containers_on(name);
            if !users.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "network {name} is in use by container(s) {}",
                    users.join(", ")
                )));
            }
        }
        let mut removed = Vec::new();
        for name in names {
            self.network_destroy(&name).await?;
            removed.push(name);
        }
        Ok(removed)
    }

    async fn network_destroy(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let helper = self.network_helper(name).await?;
        expect_done(
            helper.client.call(NetworkRequest::Teardown).await,
            name,
            "tear down",
        )?;
        fault::point("apiserver:network-rm-after-teardown");
        self.networks.shutdown(name).await?;
        remove_network(&self.paths, name)?;
        self.spawner
            .remove_log(container_protocol::HelperKind::Network, name);
        tracing::info!("network {name} removed");
        Ok(())
    }

    pub async fn network_prune(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        let (configs, _) = load_networks(&self.paths);
        let unused: Vec<String> = configs
            .into_iter()
            .filter(|c| !c.builtin && self.containers_on(&c.id).is_empty())
            .map(|c| c.id)
            .collect();
        self.network_remove(unused).await
    }

    pub async fn network_gc(
        self: &Arc<Self>,
        name: Option<String>,
    ) -> Result<Vec<(String, ReservationInfo)>, ApiError> {
        let names = match name {
            Some(n) => {
                validate_id(NameKind::Network, &n)?;
                if !self.paths.network_config(&n)?.exists() {
                    return Err(ApiError::NotFound {
                        kind: "network",
                        name: n,
                    });
                }
                vec![n]
            }
            // Every network whose record is valid; the others are reported by name at
            // start and by any command that names them.
            None => load_networks(&self.paths)
                .0
                .into_iter()
                .filter(|c| match self.network_config(&c.id) {
                    Ok(config) => match self.older_overlapping(&config) {
                        None => true,
                        Some(other) => {
                            tracing::warn!(
                                "gc skips network {}: it overlaps network {other}",
                                c.id
                            );
                            false
                        }
                    },
                    Err(e) => {
                        tracing::warn!("gc skips {e}");
                        false
                    }
                })
                .map(|c| c.id)
                .collect(),
        };
        let mut released = Vec::new();
        let mut failed = Vec::new();
        // One broken network must not keep the others from being collected.
        for name in names {
            let collected = async {
                let helper = self.network_helper(&name).await?;
                let live = self.live_attachments(&name);
                match helper.client.call(NetworkRequest::Gc { live }).await? {
                    NetworkResponse::Collected(list) => Ok(list),
                    _ => Err(bad(format!("network {name}: unexpected answer to gc"))),
                }
            };
            match collected.await {
                Ok(list) => released.extend(list.into_iter().map(|r| (name.clone(), r))),
                Err(e) => failed.push(e.to_string()),
            }
        }
        if !failed.is_empty() {
            for (network, r) in &released {
                tracing::info!(
                    "network {network}: released {} ({} {})",
                    r.ip,
                    r.container_id,
                    r.ifname
                );
            }
            return Err(bad(format!(
                "gc released {} reservation(s) but failed on: {}",
                released.len(),
                failed.join("; ")
            )));
        }
        Ok(released)
    }

    /// A network's record, checked as a create would check it: a missing file is "not
    /// found", an unreadable or invalid one is reported by path and reason.
    pub fn network_config(&self, name: &str) -> Result<NetworkConfig, ApiError> {
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

pub fn expect_done(
    reply: Result<NetworkResponse, container_protocol::ProtocolError>,
    network: &str,
    step: &str,
) -> Result<(), ApiError> {
    match reply? {
        NetworkResponse::Done => Ok(()),
        _ => Err(bad(format!(
            "network {network}: unexpected answer to {step}"
        ))),
    }
}

/// Whether `ip` belongs to the network's subnets.
pub fn in_network(config: &NetworkConfig, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => config.subnet.is_some_and(|s| s.contains(&v4)),
        IpAddr::V6(v6) => config.subnet_v6.is_some_and(|s| s.contains(&v6)),
    }
}

pub fn unique(names: &[String]) -> bool {
    let mut seen = HashSet::new();
    names.iter().all(|n| seen.insert(n))
}

impl ApiServer {
    /// A network that overlaps `config` and takes precedence over it: one that is up,
    /// or an older one (created earlier, or the same second and a smaller name).
    fn older_overlapping(&self, config: &NetworkConfig) -> Option<String> {
        let nets = |c: &NetworkConfig| -> Vec<IpNet> {
            c.subnet
                .map(IpNet::V4)
                .into_iter()
                .chain(c.subnet_v6.map(IpNet::V6))
                .collect()
        };
        let mine = nets(config);
        load_networks(&self.paths)
            .0
            .into_iter()
            .filter(|o| o.id != config.id)
            // A network already up keeps its addresses; otherwise the older one wins.
            .filter(|o| {
                self.networks.get(&o.id).is_some()
                    || (o.created, &o.id) < (config.created, &config.id)
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
