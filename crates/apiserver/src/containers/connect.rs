//! `network connect` and `network disconnect` (issue 13). A stopped container's record
//! changes and nothing else. A running one's changes live, by the steps a start takes
//! (the network helper allocates, the sandbox realises the allocation by its plugin's
//! strategy), under the container's lock and its network's GC gate.
//!
//! Crash safety: the state records the change as pending before its first effect and
//! clears it with its last write, so an apiserver that finds it at start knows which
//! way to go: a connect is undone, a disconnect finished (`settle_pending`). Either way
//! the container ends fully attached or not at all, and IPAM GC (which runs after
//! reconciling) and `system check` see only what the records say.

use std::net::IpAddr;
use std::sync::Arc;

use container_network_helper::plugins;
use container_protocol::api::{EventType, NetworkConnect};
use container_protocol::fault;
use container_store::container::{
    ContainerConfig, ContainerState, NetworkAttachmentConfig, NetworkChange, PendingChange, Status,
};
use container_supervise::{Helper, SandboxProto};

use super::validate::{check_aliases, check_static_addresses, claims_of};
use super::Containers;
use crate::error::ApiError;
use crate::ops::Holds;
use crate::undo::Undo;

impl Containers {
    /// Holds again exactly what the container's record claims (ports, devices, MACs),
    /// after an attachment was added or taken away.
    fn reclaim(&self, id: &str) {
        if let Some(r) = self.records.container(id) {
            self.claims.release(id);
            if let Err(e) = self.claims.claim(id, claims_of(&r.config)) {
                tracing::warn!("{e}");
            }
        }
    }

    /// `network connect NET CONTAINER`.
    pub async fn connect(self: &Arc<Self>, req: NetworkConnect) -> Result<(), ApiError> {
        let id = req.container.clone();
        let network = req.network.clone();
        let op = self.ops.begin(
            &format!("network connect {network} {id}"),
            Holds::container(&id),
        )?;
        let lock = self.locks.get(&id);
        let _guard = lock.lock().await;
        let (config, state) = self.load(&id)?;
        let att = self
            .attachment_for(&config, &state, &req)
            .map_err(|e| e.context(format!("network connect {network} {id}")))?;
        let ifname = att.ifname.clone().unwrap_or_default();
        let mut wanted = config.clone();
        wanted.networks.push(att.clone());
        if state.status != Status::Running {
            self.records.set_config(wanted).map_err(|e| {
                ApiError::from(e).context(format!("network connect {network} {id}"))
            })?;
        } else {
            let helper = self.running_helper(&id)?;
            let _gate = self
                .networks
                .gc_gates_shared(std::slice::from_ref(&network))
                .await;
            op.hold(Holds {
                attachments: vec![(network.clone(), id.clone(), ifname.clone())],
                ..Holds::default()
            });
            self.connect_live(&helper, &config, wanted, &state, &att)
                .await
                .map_err(|e| e.context(format!("network connect {network} {id}")))?;
        }
        tracing::info!("container {id} connected to network {network} ({ifname})");
        self.network_event("connect", &network, &id);
        Ok(())
    }

    /// The checks of a connect, before anything changes; the attachment it makes, with
    /// its interface name (the first `ethN` the container does not use).
    fn attachment_for(
        &self,
        config: &ContainerConfig,
        state: &ContainerState,
        req: &NetworkConnect,
    ) -> Result<NetworkAttachmentConfig, ApiError> {
        let (id, network) = (&config.id, &req.network);
        container_store::validate_id(container_store::NameKind::Network, network)?;
        let net = self.networks.config(network)?;
        if net.removing {
            return Err(ApiError::Conflict(format!(
                "network {network} is being removed"
            )));
        }
        if config.networks.iter().any(|n| &n.network == network) {
            return Err(ApiError::Conflict(format!(
                "container {id} is already connected to network {network}"
            )));
        }
        if state.pending.is_some() {
            return Err(ApiError::Conflict(format!(
                "container {id}: another change of its networks is under way"
            )));
        }
        let used: Vec<String> = config
            .networks
            .iter()
            .filter_map(|n| n.ifname.clone())
            .chain(
                config
                    .net_devices
                    .iter()
                    .map(|(host, d)| d.name.clone().unwrap_or_else(|| host.clone())),
            )
            .collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_default();
        let att = NetworkAttachmentConfig {
            network: network.clone(),
            ip: req.ip,
            ip6: req.ip6,
            mac: req.mac,
            ifname: Some(ifname),
            aliases: req.aliases.clone(),
        };
        let statics = super::validate::static_addresses(&att);
        if !statics.is_empty() {
            check_static_addresses(id, network, &net, &statics)?;
            self.check_addresses_free(id, network, &statics)?;
        }
        check_aliases(&self.networks, id, &att)?;
        if let Some(holder) = self.networks.name_holder(network, id, id) {
            return Err(ApiError::Conflict(format!(
                "the name {id} is already taken by container {holder} on network {network}"
            )));
        }
        Ok(att)
    }

    /// A static address another running container holds on the network is refused
    /// here, with its holder's name, for a stopped container too (its start would fail).
    fn check_addresses_free(
        &self,
        id: &str,
        network: &str,
        wanted: &[IpAddr],
    ) -> Result<(), ApiError> {
        self.records.scan(|all| {
            for (other, r) in all {
                if other == id || r.state.status != Status::Running {
                    continue;
                }
                for a in r.state.allocations.iter().filter(|a| a.network == network) {
                    if let Some(ip) = a
                        .addresses
                        .iter()
                        .map(|n| n.addr())
                        .find(|ip| wanted.contains(ip))
                    {
                        return Err(ApiError::Conflict(format!(
                            "address {ip} is already taken on network {network} by container {other}"
                        )));
                    }
                }
            }
            Ok(())
        })
    }

    /// The live steps, each undo pushed before its step: claims, the pending change,
    /// the allocation, the interface, the configuration; the state last.
    async fn connect_live(
        self: &Arc<Self>,
        helper: &Helper<SandboxProto>,
        old: &ContainerConfig,
        wanted: ContainerConfig,
        state: &ContainerState,
        att: &NetworkAttachmentConfig,
    ) -> Result<(), ApiError> {
        let id = old.id.clone();
        let network = att.network.clone();
        let ifname = att.ifname.clone().unwrap_or_default();
        // A CNI plugin opens the netns by path: one held by the helper alone is bound
        // first (and stays bound until the helper goes, which is harmless).
        let mut state = state.clone();
        let plugin = self.networks.config(&network)?.plugin;
        let bound = state
            .netns
            .as_deref()
            .is_some_and(|p| self.netns_is_bound(&id, p));
        if plugins::needs_netns(plugin) && !bound {
            state.netns = Some(helper.bind_netns().await?);
        }
        let state = &state;
        let netns = state.netns.clone();
        let mut undo = Undo::new();
        let done = async {
            self.claims.claim(&id, claims_of(&wanted))?;
            {
                let (containers, id, old) = (self.clone(), id.clone(), claims_of(old));
                undo.push("give back what the connect claimed", async move {
                    containers.claims.release(&id);
                    containers.claims.claim(&id, old)
                });
            }
            let mut pending = state.clone();
            pending.pending = Some(PendingChange {
                change: NetworkChange::Connect,
                network: network.clone(),
                ifname: ifname.clone(),
            });
            self.persist(&id, &pending)?;
            {
                let (containers, id, back) = (self.clone(), id.clone(), state.clone());
                undo.push("record the connect undone", async move {
                    containers.persist(&id, &back)
                });
            }
            fault::point("apiserver:connect-after-intent");
            {
                let (containers, id, network, ifname, netns) = (
                    self.clone(),
                    id.clone(),
                    network.clone(),
                    ifname.clone(),
                    netns.clone(),
                );
                undo.push(format!("release {network} {ifname}"), async move {
                    containers.release(&network, &id, &ifname, netns).await
                });
            }
            let nh = self.networks.helper(&network).await?;
            let alloc = nh
                .allocate(super::start::attachment(&id, att, netns.clone(), vec![]))
                .await
                .map_err(ApiError::from)?;
            fault::point("apiserver:connect-after-allocate");
            {
                let (helper, network, ifname) = (helper.clone(), network.clone(), ifname.clone());
                undo.push(format!("detach {ifname}"), async move {
                    helper
                        .detach(&network, &ifname)
                        .await
                        .map_err(ApiError::from)
                });
            }
            // The first addressed interface takes the default route, as at start.
            let default_route = state.interfaces.iter().all(|i| i.addresses.is_empty());
            let report = helper.attach(alloc.clone(), default_route).await?;
            fault::point("apiserver:connect-after-attach");
            self.records.set_config(wanted.clone())?;
            {
                let (containers, old) = (self.clone(), old.clone());
                undo.push("write the configuration back", async move {
                    containers.records.set_config(old).map_err(ApiError::from)
                });
            }
            fault::point("apiserver:connect-after-config");
            let mut attached = state.clone();
            attached.allocations.push(alloc);
            attached.interfaces.push(report);
            attached.pending = None;
            self.persist(&id, &attached)?;
            fault::point("apiserver:connect-after-record");
            Ok::<_, ApiError>(())
        }
        .await;
        match done {
            Ok(()) => {
                undo.commit();
                self.networks.sync_names(&network, &id, false).await;
                Ok(())
            }
            Err(e) => Err(undo.rollback(e).await),
        }
    }

    /// `network disconnect [-f] NET CONTAINER`.
    pub async fn disconnect(
        self: &Arc<Self>,
        network: &str,
        id: &str,
        force: bool,
    ) -> Result<(), ApiError> {
        let what = format!("network disconnect {network} {id}");
        let op = self.ops.begin(&what, Holds::container(id))?;
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (config, state) = self.load(id)?;
        self.networks.config(network)?;
        let Some(att) = config
            .networks
            .iter()
            .find(|n| n.network == network)
            .cloned()
        else {
            return Err(ApiError::Conflict(format!(
                "{what}: container {id} is not connected to network {network}"
            )));
        };
        if state.pending.is_some() {
            return Err(ApiError::Conflict(format!(
                "{what}: another change of its networks is under way"
            )));
        }
        let mut wanted = config.clone();
        wanted.networks.retain(|n| n.network != network);
        if state.status != Status::Running {
            self.records
                .set_config(wanted)
                .map_err(|e| ApiError::from(e).context(what.clone()))?;
        } else {
            if wanted.networks.is_empty() && !force {
                return Err(ApiError::Conflict(format!(
                    "{what}: it is the last network of running container {id}; give -f to leave it with loopback only"
                )));
            }
            let helper = self.running_helper(id)?;
            let ifname = att.ifname.clone().unwrap_or_default();
            op.hold(Holds {
                attachments: vec![(network.to_string(), id.to_string(), ifname.clone())],
                ..Holds::default()
            });
            let mut pending = state.clone();
            pending.pending = Some(PendingChange {
                change: NetworkChange::Disconnect,
                network: network.to_string(),
                ifname,
            });
            self.persist(id, &pending)
                .map_err(|e| e.context(what.clone()))?;
            fault::point("apiserver:disconnect-after-intent");
            self.complete_disconnect(id, Some(&helper))
                .await
                .map_err(|e| e.context(what.clone()))?;
        }
        tracing::info!("container {id} disconnected from network {network}");
        self.network_event("disconnect", network, id);
        Ok(())
    }

    /// The rest of a disconnect whose intent is recorded, from its names to its record;
    /// each step idempotent, so an apiserver that finds it pending runs it again whole.
    /// `helper`: the sandbox, if it still lives (the interface goes with it otherwise).
    async fn complete_disconnect(
        self: &Arc<Self>,
        id: &str,
        helper: Option<&Helper<SandboxProto>>,
    ) -> Result<(), ApiError> {
        let (config, mut state) = self.load(id)?;
        let Some(p) = state.pending.clone() else {
            return Ok(());
        };
        // Its names go before its address can be handed to someone else.
        self.networks.sync_names(&p.network, id, true).await;
        fault::point("apiserver:disconnect-after-names");
        if let Some(helper) = helper {
            if let Err(e) = helper.detach(&p.network, &p.ifname).await {
                // Still attached: the change is not made, and its names come back.
                state.pending = None;
                if let Err(w) = self.persist(id, &state) {
                    tracing::warn!("{w}");
                }
                self.networks.sync_names(&p.network, id, false).await;
                return Err(ApiError::from(e));
            }
        }
        fault::point("apiserver:disconnect-after-detach");
        if let Err(e) = self
            .release(&p.network, id, &p.ifname, state.netns.clone())
            .await
        {
            // Not live once the record drops it: the next GC releases it.
            tracing::warn!("container {id}: release {} {}: {e}", p.network, p.ifname);
        }
        fault::point("apiserver:disconnect-after-release");
        self.forget_attachment(&config, &p)?;
        fault::point("apiserver:disconnect-after-config");
        state
            .allocations
            .retain(|a| !(a.network == p.network && a.ifname == p.ifname));
        state
            .interfaces
            .retain(|i| !(i.network == p.network && i.ifname == p.ifname));
        state.pending = None;
        self.persist(id, &state)?;
        // What it holds now, without the network's MAC.
        self.reclaim(id);
        self.networks.sync_names(&p.network, id, false).await;
        Ok(())
    }

    /// Drops the attachment a pending change names from the configuration, if it is
    /// still there.
    fn forget_attachment(
        &self,
        config: &ContainerConfig,
        p: &PendingChange,
    ) -> Result<(), ApiError> {
        let named = |n: &NetworkAttachmentConfig| {
            n.network == p.network && n.ifname.as_deref() == Some(p.ifname.as_str())
        };
        if config.networks.iter().any(named) {
            let mut config = config.clone();
            config.networks.retain(|n| !named(n));
            self.records.set_config(config)?;
        }
        Ok(())
    }

    /// A change of networks an apiserver crash cut short, found at start (or by a
    /// finish): a connect is undone (its interface detached, its address released, its
    /// attachment dropped), a disconnect is finished. The caller holds the container's
    /// lock or runs before anything else can.
    pub(super) async fn settle_pending(
        self: &Arc<Self>,
        id: &str,
        helper: Option<&Helper<SandboxProto>>,
    ) {
        let Ok((config, mut state)) = self.load(id) else {
            return;
        };
        let Some(p) = state.pending.clone() else {
            return;
        };
        let settled = match p.change {
            NetworkChange::Disconnect => {
                tracing::info!(
                    "container {id}: finishing its disconnect from {} cut short",
                    p.network
                );
                self.complete_disconnect(id, helper).await
            }
            NetworkChange::Connect => {
                tracing::info!(
                    "container {id}: undoing its connect to {} cut short",
                    p.network
                );
                async {
                    if let Some(helper) = helper {
                        helper.detach(&p.network, &p.ifname).await?;
                    }
                    if let Err(e) = self
                        .release(&p.network, id, &p.ifname, state.netns.clone())
                        .await
                    {
                        tracing::warn!("container {id}: release {} {}: {e}", p.network, p.ifname);
                    }
                    self.forget_attachment(&config, &p)?;
                    state.pending = None;
                    self.persist(id, &state)?;
                    self.reclaim(id);
                    Ok::<_, ApiError>(())
                }
                .await
            }
        };
        if let Err(e) = settled {
            tracing::error!("container {id}: settle its cut-short network change: {e}");
        }
    }

    fn network_event(&self, action: &str, network: &str, id: &str) {
        self.events.publish(
            EventType::Network,
            action,
            network,
            &[("container", id.to_string())],
        );
    }
}
