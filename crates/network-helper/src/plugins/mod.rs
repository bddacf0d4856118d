//! Network plugins, network side: one module per plugin, one match arm per plugin here.
//!
//! A plugin owns the network-wide resources (a bridge and its nftables rules, a parent
//! link check, a CNI result cache) and turns IPAM addresses into an [`Allocation`] the
//! sandbox's interface strategy of the same name can realise. Adding a plugin means a
//! new file, a variant, and one arm in each `match` below.

pub mod bridge;
pub mod cni;
pub mod macvlan;
pub mod none;
mod options;

use std::collections::HashSet;
use std::net::IpAddr;

use container_ipam::{Allocated, RangeSet};
use container_netlink::Netlink;
use container_protocol::network::{Allocation, Attachment, ReservationInfo, RouteSpec};
use container_store::{NetworkConfig, Paths};
use ipnet::IpNet;

use crate::error::PluginError;

pub use options::{MTU_MAX, MTU_MIN};

/// Every plugin name this helper knows, in the order messages list them.
pub const PLUGINS: &[&str] = &[bridge::NAME, macvlan::NAME, none::NAME, cni::NAME];

/// What plugins act on besides their own config: the host's links and the state tree.
#[derive(Clone, Copy)]
pub struct HostEnv<'a> {
    pub netlink: &'a Netlink,
    pub paths: &'a Paths,
}

/// The link a network is built on, as `state` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    pub link: Option<String>,
    pub up: Option<bool>,
}

pub enum Plugin {
    Bridge(bridge::Bridge),
    Macvlan(macvlan::Macvlan),
    None(none::NoneNet),
    Cni(cni::Cni),
}

/// Checks plugin name, options and subnets without touching the host, so the apiserver
/// can refuse bad input before it creates anything. Host checks are [`check_host`].
///
/// A missing subnet is not an error here: the apiserver picks one after validating
/// (see [`uses_ipam`]); [`Plugin::for_config`] requires it.
pub fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
    match config.plugin.as_str() {
        bridge::NAME => bridge::Options::parse(config).map(drop),
        macvlan::NAME => macvlan::Options::parse(config).map(drop),
        none::NAME => none::Options::parse(config).map(drop),
        cni::NAME => cni::Options::parse(config).map(drop),
        other => Err(PluginError::UnknownPlugin {
            name: other.to_string(),
        }),
    }?;
    check_gateways(config)
}

/// Whether networks of `plugin` hand out addresses from our IPAM, and so need a subnet.
/// `none` and `cni` do not (a conflist carries its own IPAM).
pub fn uses_ipam(plugin: &str) -> bool {
    matches!(plugin, bridge::NAME | macvlan::NAME)
}

/// Checks what only the host can tell: a macvlan parent that exists, a bridge name not
/// taken by a link of another kind. Read-only.
pub async fn check_host(config: &NetworkConfig, netlink: &Netlink) -> Result<(), PluginError> {
    match config.plugin.as_str() {
        bridge::NAME => bridge::check_host(&bridge::Options::parse(config)?, netlink).await,
        macvlan::NAME => macvlan::check_host(&macvlan::Options::parse(config)?, netlink).await,
        none::NAME | cni::NAME => Ok(()),
        other => Err(PluginError::UnknownPlugin {
            name: other.to_string(),
        }),
    }
}

/// The bridge a bridge network uses: `--opt bridge=` or the derived name. `None` for
/// other plugins or invalid options.
pub fn bridge_name(config: &NetworkConfig) -> Option<String> {
    if config.plugin != bridge::NAME {
        return None;
    }
    bridge::Options::parse(config).ok().map(|o| o.bridge)
}

impl Plugin {
    /// Validates `config` and builds its plugin. Unlike [`validate`], plugins that use
    /// IPAM need a subnet here.
    pub fn for_config(config: &NetworkConfig) -> Result<Plugin, PluginError> {
        validate(config)?;
        Ok(match config.plugin.as_str() {
            bridge::NAME => Plugin::Bridge(bridge::Bridge::new(config)?),
            macvlan::NAME => Plugin::Macvlan(macvlan::Macvlan::new(config)?),
            none::NAME => Plugin::None(none::NoneNet::new(config)),
            cni::NAME => Plugin::Cni(cni::Cni::new(config)?),
            other => {
                return Err(PluginError::UnknownPlugin {
                    name: other.to_string(),
                })
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Plugin::Bridge(_) => bridge::NAME,
            Plugin::Macvlan(_) => macvlan::NAME,
            Plugin::None(_) => none::NAME,
            Plugin::Cni(_) => cni::NAME,
        }
    }

    pub fn uses_ipam(&self) -> bool {
        uses_ipam(self.name())
    }

    /// Creates whatever of the network-wide resources is missing.
    pub async fn setup(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        match self {
            Plugin::Bridge(p) => p.setup(env).await,
            Plugin::Macvlan(p) => p.setup(env).await,
            Plugin::None(_) => Ok(()),
            Plugin::Cni(p) => p.setup(env).await,
        }
    }

    /// Removes every network-wide resource, going on past failures and reporting all.
    pub async fn teardown(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
        match self {
            Plugin::Bridge(p) => p.teardown(env).await,
            Plugin::Macvlan(_) | Plugin::None(_) => Ok(()),
            Plugin::Cni(p) => p.teardown(env).await,
        }
    }

    /// Turns the IPAM addresses of `att` (empty for plugins without IPAM) into an
    /// allocation.
    pub async fn allocate(
        &self,
        env: HostEnv<'_>,
        att: &Attachment,
        addrs: &[Allocated],
    ) -> Result<Allocation, PluginError> {
        if !att.ports.is_empty() && !matches!(self, Plugin::Bridge(_)) {
            return Err(PluginError::Unsupported {
                plugin: self.name(),
                reason: "this plugin cannot publish ports (use a bridge network)".into(),
            });
        }
        match self {
            Plugin::Bridge(p) => {
                let alloc = p.allocate(att, addrs)?;
                if !att.ports.is_empty() {
                    p.publish(&att.container_id, &att.ports, &alloc).await?;
                }
                Ok(alloc)
            }
            Plugin::Macvlan(p) => p.allocate(env, att, addrs).await,
            Plugin::None(p) => p.allocate(att),
            Plugin::Cni(p) => p.allocate(env, att).await,
        }
    }

    /// Undoes what `allocate` did beyond IPAM. Returns addresses released outside our
    /// IPAM (cni). Idempotent.
    pub async fn release(
        &self,
        env: HostEnv<'_>,
        container_id: &str,
        ifname: &str,
        netns: Option<&str>,
    ) -> Result<Vec<IpAddr>, PluginError> {
        match self {
            Plugin::Cni(p) => p.release(env, container_id, ifname, netns).await,
            Plugin::Bridge(p) => p.unpublish(container_id).await.map(|()| Vec::new()),
            _ => Ok(Vec::new()),
        }
    }

    /// Releases plugin-held attachments not in `live` (cni: its result cache). IPAM GC
    /// is the service's job.
    pub async fn gc(
        &self,
        env: HostEnv<'_>,
        live: &HashSet<(String, String)>,
    ) -> Result<Vec<ReservationInfo>, PluginError> {
        match self {
            Plugin::Cni(p) => p.gc(env, live).await,
            _ => Ok(Vec::new()),
        }
    }

    /// Attachments the plugin holds outside our IPAM (cni), for `state`.
    pub fn reservations(&self, env: HostEnv<'_>) -> Result<Vec<ReservationInfo>, PluginError> {
        match self {
            Plugin::Cni(p) => p.reservations(env),
            _ => Ok(Vec::new()),
        }
    }

    pub async fn state(&self, env: HostEnv<'_>) -> Result<LinkState, PluginError> {
        match self {
            Plugin::Bridge(p) => p.state(env).await,
            Plugin::Macvlan(p) => p.state(env).await,
            Plugin::None(_) | Plugin::Cni(_) => Ok(LinkState::default()),
        }
    }
}

/// IPAM range sets of a network: IPv4 first, then IPv6. The order is part of the on-disk
/// format (`last_reserved_ip.<index>`), so it must never change.
pub fn range_sets(config: &NetworkConfig) -> Vec<RangeSet> {
    let mut sets = Vec::new();
    if let Some(subnet) = config.subnet {
        let mut set = RangeSet::new(IpNet::V4(subnet));
        if let Some(gw) = config.gateway {
            set = set.with_gateway(IpAddr::V4(gw));
        }
        sets.push(set);
    }
    if let Some(subnet) = config.subnet_v6 {
        let mut set = RangeSet::new(IpNet::V6(subnet));
        if let Some(gw) = config.gateway_v6 {
            set = set.with_gateway(IpAddr::V6(gw));
        }
        sets.push(set);
    }
    sets
}

/// The gateway addresses with their subnets' prefix length: what goes on a bridge. The
/// default is the first host of the subnet, as IPAM's.
pub fn gateway_addresses(config: &NetworkConfig) -> Vec<IpNet> {
    let mut out = Vec::new();
    if let Some(subnet) = config.subnet {
        let gw = config
            .gateway
            .unwrap_or_else(|| first_host_v4(subnet.network()));
        if let Ok(net) = IpNet::new(IpAddr::V4(gw), subnet.prefix_len()) {
            out.push(net);
        }
    }
    if let Some(subnet) = config.subnet_v6 {
        let gw = config
            .gateway_v6
            .unwrap_or_else(|| (u128::from(subnet.network()) + 1).into());
        if let Ok(net) = IpNet::new(IpAddr::V6(gw), subnet.prefix_len()) {
            out.push(net);
        }
    }
    out
}

fn first_host_v4(network: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    u32::from(network).wrapping_add(1).into()
}

/// Refuses gateways outside their subnet or without one: the bridge would get an address
/// the containers cannot reach on-link.
fn check_gateways(config: &NetworkConfig) -> Result<(), PluginError> {
    let plugin = plugin_static(&config.plugin);
    let bad = |reason: String| Err(PluginError::InvalidConfig { plugin, reason });
    match (config.subnet, config.gateway) {
        (None, Some(gw)) => return bad(format!("gateway {gw} given without a subnet")),
        (Some(net), Some(gw)) if !net.contains(&gw) => {
            return bad(format!("gateway {gw} is outside subnet {net}"))
        }
        (Some(net), Some(gw)) if gw == net.network() || gw == net.broadcast() => {
            return bad(format!(
                "gateway {gw} is the network or broadcast address of {net}"
            ))
        }
        _ => {}
    }
    match (config.subnet_v6, config.gateway_v6) {
        (None, Some(gw)) => bad(format!("IPv6 gateway {gw} given without an IPv6 subnet")),
        (Some(net), Some(gw)) if !net.contains(&gw) => {
            bad(format!("IPv6 gateway {gw} is outside subnet {net}"))
        }
        (Some(net), Some(gw)) if gw == net.network() => {
            bad(format!("IPv6 gateway {gw} is the network address of {net}"))
        }
        _ => Ok(()),
    }
}

/// Error messages want a `&'static str` plugin name; unknown names were refused before.
fn plugin_static(name: &str) -> &'static str {
    PLUGINS
        .iter()
        .copied()
        .find(|p| *p == name)
        .unwrap_or("unknown")
}

/// Fields every IPAM-backed allocation shares: addresses, gateways and, unless the
/// network is internal, a default route per family via its gateway.
pub(crate) fn ipam_allocation(
    plugin: &'static str,
    att: &Attachment,
    addrs: &[Allocated],
    internal: bool,
    data: container_protocol::network::PluginData,
) -> Allocation {
    let mut gateways = Vec::new();
    let mut routes = Vec::new();
    // Internal networks get neither: a sandbox strategy that turns gateways into routes
    // must not give them a way out.
    if !internal {
        for gw in addrs.iter().filter_map(|a| a.gateway) {
            gateways.push(gw);
            let dest = match gw {
                IpAddr::V4(_) => IpNet::V4(Default::default()),
                IpAddr::V6(_) => IpNet::V6(Default::default()),
            };
            routes.push(RouteSpec {
                dest,
                gateway: Some(gw),
            });
        }
    }
    Allocation {
        network: att.network.clone(),
        plugin: plugin.to_string(),
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        addresses: addrs.iter().map(|a| a.address).collect(),
        gateways,
        routes,
        mac: att.mac,
        mtu: None,
        // The apiserver fills DNS: it knows the host's resolvers and the container's.
        dns: Vec::new(),
        data,
    }
}

/// Refuses static addresses on plugins that hand out none of their own.
pub(crate) fn no_static_addresses(
    plugin: &'static str,
    att: &Attachment,
) -> Result<(), PluginError> {
    match (att.ipv4, att.ipv6) {
        (None, None) => Ok(()),
        (v4, v6) => Err(PluginError::Unsupported {
            plugin,
            reason: format!(
                "static address {} requested, but this plugin assigns no addresses",
                v4.map(IpAddr::V4)
                    .or(v6.map(IpAddr::V6))
                    .map(|ip| ip.to_string())
                    .unwrap_or_default()
            ),
        }),
    }
}
