//! Network plugins, network side: one module per plugin, one line per plugin in the
//! [`registry!`] below.
//!
//! A plugin owns the network-wide resources (a bridge and its nftables rules, a parent
//! link check, a CNI result cache) and turns IPAM addresses into an [`Allocation`] the
//! sandbox's interface strategy for the same [`PluginData`] can realise. Every operation
//! is a required method of [`NetworkPlugin`], and what a plugin can do is asked of it
//! (`publishes_ports`, `host_device`, …), never guessed from its name.

pub mod bridge;
pub mod cni;
pub mod macvlan;
pub mod none;
mod options;

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;

use container_ipam::{Allocated, RangeSet};
use container_netlink::Netlink;
use container_protocol::network::{Allocation, Attachment, PluginKind, ReservationInfo, RouteSpec};
use container_store::{NetworkConfig, Paths};
use ipnet::IpNet;

use crate::error::PluginError;

pub use options::{MTU_MAX, MTU_MIN};

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

/// One network plugin. Nothing has a default: a new plugin says what it does for each.
pub trait NetworkPlugin: Sized + Send + Sync {
    const KIND: PluginKind;

    /// Whether networks of this plugin hand out addresses from our IPAM, and so need a
    /// subnet. Known before there is a subnet, so the apiserver can pick one.
    const USES_IPAM: bool;

    /// Whether `allocate` acts inside the container's network namespace (CNI plugins
    /// build the interface there), so the sandbox must exist first. Allocations of the
    /// other plugins may overlap the sandbox's start.
    const NEEDS_NETNS: bool;

    /// Checks options and subnets without touching the host. A missing subnet is not an
    /// error here: the apiserver picks one after validating.
    fn validate(config: &NetworkConfig) -> Result<(), PluginError>;

    /// Checks what only the host can tell. Read-only.
    fn check_host(
        config: &NetworkConfig,
        netlink: &Netlink,
    ) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// The plugin of a validated config; plugins that use IPAM need a subnet here.
    fn new(config: &NetworkConfig) -> Result<Self, PluginError>;

    /// Whether attachments may ask for host ports (`-p`).
    fn publishes_ports(&self) -> bool;

    /// Whether attachments may ask for a static address (`ip=`, `ip6=`).
    fn takes_static_addresses(&self) -> bool;

    /// Whether the plugin answers DNS for its containers.
    fn serves_dns(&self) -> bool;

    /// The host link the network is built on: a bridge it owns or shares (another
    /// network must not take it), a parent it only uses.
    fn host_device(&self) -> Option<HostDevice<'_>>;

    /// Subnets the network hands addresses from outside our IPAM (a conflist's), for the
    /// overlap check of every create.
    fn declared_subnets(&self) -> Vec<IpNet>;

    /// Creates whatever of the network-wide resources is missing.
    fn setup(&self, env: HostEnv<'_>) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// Removes every network-wide resource the plugin made, going on past failures.
    fn teardown(&self, env: HostEnv<'_>) -> impl Future<Output = Result<(), PluginError>> + Send;

    /// Turns the IPAM addresses of `att` (empty unless `USES_IPAM`) into an allocation.
    fn allocate(
        &self,
        env: HostEnv<'_>,
        att: &Attachment,
        addrs: &[Allocated],
    ) -> impl Future<Output = Result<Allocation, PluginError>> + Send;

    /// Undoes what `allocate` did beyond IPAM. Returns addresses released outside our
    /// IPAM. Idempotent.
    fn release(
        &self,
        env: HostEnv<'_>,
        container_id: &str,
        ifname: &str,
        netns: Option<&str>,
    ) -> impl Future<Output = Result<Vec<IpAddr>, PluginError>> + Send;

    /// Releases plugin-held attachments not in `live`. IPAM GC is the service's job.
    fn gc(
        &self,
        env: HostEnv<'_>,
        live: &HashSet<(String, String)>,
    ) -> impl Future<Output = Result<Vec<ReservationInfo>, PluginError>> + Send;

    /// Attachments the plugin holds outside our IPAM, for `state`.
    fn reservations(&self, env: HostEnv<'_>) -> Result<Vec<ReservationInfo>, PluginError>;

    fn state(
        &self,
        env: HostEnv<'_>,
    ) -> impl Future<Output = Result<LinkState, PluginError>> + Send;
}

/// A host link a network is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDevice<'a> {
    /// A bridge that carries the network: one network per bridge.
    Bridge(&'a str),
    /// A parent link that several networks may share (macvlan).
    Parent(&'a str),
}

/// Generates [`Plugin`] and the functions that dispatch on a [`PluginKind`] from one
/// list: registering a plugin is one line here. Every match is exhaustive.
macro_rules! registry {
    ($($kind:ident => $ty:ty),+ $(,)?) => {
        /// A network's plugin.
        pub enum Plugin {
            $($kind($ty),)+
        }

        /// Whether networks of `kind` hand out addresses from our IPAM.
        pub fn uses_ipam(kind: PluginKind) -> bool {
            match kind {
                $(PluginKind::$kind => <$ty as NetworkPlugin>::USES_IPAM,)+
            }
        }

        /// Whether allocations on `kind` act inside the container's network namespace.
        pub fn needs_netns(kind: PluginKind) -> bool {
            match kind {
                $(PluginKind::$kind => <$ty as NetworkPlugin>::NEEDS_NETNS,)+
            }
        }

        fn validate_options(config: &NetworkConfig) -> Result<(), PluginError> {
            match config.plugin {
                $(PluginKind::$kind => <$ty as NetworkPlugin>::validate(config),)+
            }
        }

        /// Checks what only the host can tell: a macvlan parent that exists, a bridge
        /// name not taken by a link of another kind. Read-only.
        pub async fn check_host(
            config: &NetworkConfig,
            netlink: &Netlink,
        ) -> Result<(), PluginError> {
            match config.plugin {
                $(PluginKind::$kind => <$ty as NetworkPlugin>::check_host(config, netlink).await,)+
            }
        }

        impl Plugin {
            /// Validates `config` and builds its plugin. Unlike [`validate`], plugins
            /// that use IPAM need a subnet here.
            pub fn for_config(config: &NetworkConfig) -> Result<Plugin, PluginError> {
                validate(config)?;
                Ok(match config.plugin {
                    $(PluginKind::$kind => Plugin::$kind(<$ty as NetworkPlugin>::new(config)?),)+
                })
            }

            pub fn kind(&self) -> PluginKind {
                match self {
                    $(Plugin::$kind(_) => <$ty as NetworkPlugin>::KIND,)+
                }
            }

            pub fn uses_ipam(&self) -> bool {
                uses_ipam(self.kind())
            }

            pub fn publishes_ports(&self) -> bool {
                match self {
                    $(Plugin::$kind(p) => p.publishes_ports(),)+
                }
            }

            pub fn takes_static_addresses(&self) -> bool {
                match self {
                    $(Plugin::$kind(p) => p.takes_static_addresses(),)+
                }
            }

            pub fn serves_dns(&self) -> bool {
                match self {
                    $(Plugin::$kind(p) => p.serves_dns(),)+
                }
            }

            pub fn host_device(&self) -> Option<HostDevice<'_>> {
                match self {
                    $(Plugin::$kind(p) => p.host_device(),)+
                }
            }

            pub fn declared_subnets(&self) -> Vec<IpNet> {
                match self {
                    $(Plugin::$kind(p) => p.declared_subnets(),)+
                }
            }

            pub async fn setup(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.setup(env).await,)+
                }
            }

            pub async fn teardown(&self, env: HostEnv<'_>) -> Result<(), PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.teardown(env).await,)+
                }
            }

            /// Refuses published ports on a plugin that cannot publish them, then
            /// allocates.
            pub async fn allocate(
                &self,
                env: HostEnv<'_>,
                att: &Attachment,
                addrs: &[Allocated],
            ) -> Result<Allocation, PluginError> {
                if !att.ports.is_empty() && !self.publishes_ports() {
                    return Err(PluginError::Unsupported {
                        plugin: self.kind(),
                        reason: "this network cannot publish ports (a bridge network can, and a \
                                 cni network whose conflist has a plugin with the \
                                 \"portMappings\" capability)"
                            .into(),
                    });
                }
                match self {
                    $(Plugin::$kind(p) => p.allocate(env, att, addrs).await,)+
                }
            }

            pub async fn release(
                &self,
                env: HostEnv<'_>,
                container_id: &str,
                ifname: &str,
                netns: Option<&str>,
            ) -> Result<Vec<IpAddr>, PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.release(env, container_id, ifname, netns).await,)+
                }
            }

            pub async fn gc(
                &self,
                env: HostEnv<'_>,
                live: &HashSet<(String, String)>,
            ) -> Result<Vec<ReservationInfo>, PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.gc(env, live).await,)+
                }
            }

            pub fn reservations(
                &self,
                env: HostEnv<'_>,
            ) -> Result<Vec<ReservationInfo>, PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.reservations(env),)+
                }
            }

            pub async fn state(&self, env: HostEnv<'_>) -> Result<LinkState, PluginError> {
                match self {
                    $(Plugin::$kind(p) => p.state(env).await,)+
                }
            }
        }
    };
}

registry! {
    Bridge => bridge::Bridge,
    Macvlan => macvlan::Macvlan,
    None => none::NoneNet,
    Cni => cni::Cni,
}

/// Checks plugin options and gateways without touching the host, so the apiserver can
/// refuse bad input before it creates anything. Host checks are [`check_host`].
pub fn validate(config: &NetworkConfig) -> Result<(), PluginError> {
    validate_options(config)?;
    check_gateways(config)
}

/// The bridge a network carries, for refusing a second network on it. `None` for other
/// plugins or invalid configs.
pub fn bridge_name(config: &NetworkConfig) -> Option<String> {
    match Plugin::for_config(config).ok()?.host_device()? {
        HostDevice::Bridge(name) => Some(name.to_string()),
        HostDevice::Parent(_) => None,
    }
}

/// Every subnet a network hands addresses from: its record's, and what its plugin
/// declares outside our IPAM (a conflist's ranges). What overlap and address checks
/// compare against.
pub fn subnets(config: &NetworkConfig) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = config
        .subnet
        .map(IpNet::V4)
        .into_iter()
        .chain(config.subnet_v6.map(IpNet::V6))
        .collect();
    if let Ok(plugin) = Plugin::for_config(config) {
        for net in plugin.declared_subnets() {
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    nets
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

/// The gateway addresses with their subnets' prefix length: what goes on a bridge.
pub fn gateway_addresses(config: &NetworkConfig) -> Vec<IpNet> {
    let mut out = Vec::new();
    if let Some(subnet) = config.subnet {
        let gw = config.gateway.unwrap_or_else(|| default_gateway_v4(subnet));
        if let Ok(net) = IpNet::new(IpAddr::V4(gw), subnet.prefix_len()) {
            out.push(net);
        }
    }
    if let Some(subnet) = config.subnet_v6 {
        let gw = config
            .gateway_v6
            .unwrap_or_else(|| default_gateway_v6(subnet));
        if let Ok(net) = IpNet::new(IpAddr::V6(gw), subnet.prefix_len()) {
            out.push(net);
        }
    }
    out
}

/// The gateway of a subnet given without one: its first host, as IPAM assumes.
pub fn default_gateway_v4(subnet: ipnet::Ipv4Net) -> std::net::Ipv4Addr {
    u32::from(subnet.network()).wrapping_add(1).into()
}

/// The IPv6 gateway of a subnet given without one: the address after the network's.
pub fn default_gateway_v6(subnet: ipnet::Ipv6Net) -> std::net::Ipv6Addr {
    u128::from(subnet.network()).wrapping_add(1).into()
}

/// Refuses gateways outside their subnet or without one: the bridge would get an address
/// the containers cannot reach on-link. The one owner of these checks: the apiserver's
/// create calls [`validate`].
fn check_gateways(config: &NetworkConfig) -> Result<(), PluginError> {
    let plugin = config.plugin;
    let bad = |reason: String| Err(PluginError::InvalidConfig { plugin, reason });
    match (config.subnet, config.gateway) {
        (None, Some(gw)) => return bad(format!("gateway {gw} needs --subnet")),
        (Some(net), Some(gw))
            if !net.contains(&gw) || gw == net.network() || gw == net.broadcast() =>
        {
            return bad(format!(
                "gateway {gw} is not a host address of subnet {net}"
            ))
        }
        _ => {}
    }
    match (config.subnet_v6, config.gateway_v6) {
        (None, Some(gw)) => bad(format!("IPv6 gateway {gw} needs --subnet-v6")),
        (Some(net), Some(gw)) if !net.contains(&gw) || gw == net.network() => bad(format!(
            "IPv6 gateway {gw} is not a host address of subnet {net}"
        )),
        _ => Ok(()),
    }
}

/// Fields every IPAM-backed allocation shares: addresses, gateways and, unless the
/// network is internal, a default route per family via its gateway.
pub(crate) fn ipam_allocation(
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
pub(crate) fn no_static_addresses(plugin: PluginKind, att: &Attachment) -> Result<(), PluginError> {
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
