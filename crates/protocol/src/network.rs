//! The network helper's service (one helper per network).
//!
//! Seed 001's vocabulary: an **attachment** is a container's request to join a network;
//! the network helper answers it with an **allocation** (addresses, gateway, routes,
//! MAC, MTU, DNS and the plugin's own data), which the sandbox realises as an
//! **interface** through the strategy of the allocation's plugin data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::helper::HelperInfo;

pub const SERVICE: &str = "network-helper";

/// The search domain of the runtime's names: `web` and `web.dns.container` are one name.
pub const DNS_DOMAIN: &str = "dns.container";

/// What a network's name server answers for one attachment: each name (the container's
/// name, its hostname, its aliases on this network) gives each address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameEntry {
    pub container_id: String,
    pub names: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    /// Interface name inside the container (eth0, eth1, … unless given).
    pub ifname: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
    /// The container's network namespace (bind mount path). Plugins that build the
    /// interface themselves (cni) need it; the others ignore it.
    pub netns: Option<String>,
    /// Host ports forwarded to this attachment's address (`-p`). Only plugins that
    /// own a firewall (bridge) accept them.
    pub ports: Vec<PortMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    Tcp,
    Udp,
}

/// `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dest: IpNet,
    pub gateway: Option<IpAddr>,
}

/// The kinds of network plugin. Records and the wire carry the lowercase name
/// (`"bridge"`); a name this build does not know is refused when it is read, naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum PluginKind {
    Bridge,
    Macvlan,
    None,
    Cni,
}

impl PluginKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [PluginKind; 4] = [
        PluginKind::Bridge,
        PluginKind::Macvlan,
        PluginKind::None,
        PluginKind::Cni,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Bridge => "bridge",
            PluginKind::Macvlan => "macvlan",
            PluginKind::None => "none",
            PluginKind::Cni => "cni",
        }
    }

    /// `bridge, macvlan, none, cni`: what an "unknown plugin" message offers.
    pub fn known() -> String {
        let names: Vec<&str> = PluginKind::ALL.iter().map(|k| k.as_str()).collect();
        names.join(", ")
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin name that no [`PluginKind`] has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network plugin {name:?} (known: {})", PluginKind::known())]
pub struct UnknownPlugin {
    pub name: String,
}

impl std::str::FromStr for PluginKind {
    type Err = UnknownPlugin;

    fn from_str(name: &str) -> Result<Self, UnknownPlugin> {
        PluginKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownPlugin {
                name: name.to_string(),
            })
    }
}

impl TryFrom<String> for PluginKind {
    type Error = UnknownPlugin;

    fn try_from(name: String) -> Result<Self, UnknownPlugin> {
        name.parse()
    }
}

impl From<PluginKind> for &'static str {
    fn from(kind: PluginKind) -> &'static str {
        kind.as_str()
    }
}

/// Macvlan modes, named as `ip link … type macvlan mode MODE` names them. The one list:
/// the network helper parses `--opt mode=` with it and the sandbox realises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// The kernel's and Docker's default.
    #[default]
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl MacvlanMode {
    pub const ALL: [MacvlanMode; 4] = [
        MacvlanMode::Bridge,
        MacvlanMode::Private,
        MacvlanMode::Vepa,
        MacvlanMode::Passthru,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }

    /// The mode named exactly `name`, `None` for anything else.
    pub fn parse(name: &str) -> Option<MacvlanMode> {
        MacvlanMode::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// What the sandbox's interface strategy needs beyond addresses, per plugin. The
/// variant is the plugin: the sandbox picks its strategy by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PluginData {
    /// A veth pair whose host end joins `bridge`.
    Bridge { bridge: String },
    /// A macvlan on host link `parent` in `mode`.
    Macvlan { parent: String, mode: MacvlanMode },
    /// Loopback only.
    None,
    /// The CNI plugins already built the interface; `result` is the CNI result JSON.
    Cni { result: String },
}

impl PluginData {
    pub fn kind(&self) -> PluginKind {
        match self {
            PluginData::Bridge { .. } => PluginKind::Bridge,
            PluginData::Macvlan { .. } => PluginKind::Macvlan,
            PluginData::None => PluginKind::None,
            PluginData::Cni { .. } => PluginKind::Cni,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// Addresses with their prefix length.
    pub addresses: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<RouteSpec>,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub dns: Vec<IpAddr>,
    pub data: PluginData,
}

impl Allocation {
    /// The plugin that made the allocation, as its data says.
    pub fn plugin(&self) -> PluginKind {
        self.data.kind()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationInfo {
    pub ip: IpAddr,
    pub container_id: String,
    pub ifname: String,
}

/// The live state of a network, as its helper sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub helper: HelperInfo,
    pub plugin: PluginKind,
    /// Bridge (bridge plugin) or parent link (macvlan).
    pub link: Option<String>,
    pub link_up: Option<bool>,
    /// Reservations read from disk.
    pub reservations: Vec<ReservationInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum NetworkRequest {
    Info,
    Echo(u64),
    /// Create the network-wide resources if missing (idempotent). Sent after spawn.
    Setup,
    Allocate(Attachment),
    Release {
        container_id: String,
        ifname: String,
        /// For plugins that act in the container (cni DEL).
        netns: Option<String>,
    },
    /// Release every reservation whose (container id, ifname) is not in `live`.
    Gc {
        live: Vec<(String, String)>,
    },
    /// Puts back the reservation of a live attachment whose file went missing (system
    /// check --fix). Refused for an address someone else holds. Replies `Released` with
    /// the addresses now reserved.
    Restore {
        container_id: String,
        ifname: String,
        ips: Vec<IpAddr>,
    },
    State,
    /// Replaces the names the network's name server answers, the whole table (a new
    /// helper's, or one an update may have missed).
    Names(Vec<NameEntry>),
    /// Replaces what one container answers to on the network (nothing, when `entries`
    /// is empty): a start or a finish costs the same however many containers run.
    NamesOf {
        container_id: String,
        entries: Vec<NameEntry>,
    },
    /// Remove the network's resources and reservations (before `Shutdown`, on `rm`).
    Teardown,
    /// Exit, keeping the network's resources for the next helper.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum NetworkResponse {
    Info(HelperInfo),
    Echo(u64),
    Allocated(Allocation),
    Released(Vec<IpAddr>),
    Collected(Vec<ReservationInfo>),
    State(NetworkState),
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_kinds_travel_as_their_names() {
        for kind in PluginKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<PluginKind>(&json).unwrap(), kind);
        }
        let err = serde_json::from_str::<PluginKind>("\"weave\"").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "unknown network plugin \"weave\" (known: bridge, macvlan, none, cni)"
            ),
            "{err}"
        );
    }

    #[test]
    fn macvlan_modes_are_the_kernels_names_only() {
        for mode in MacvlanMode::ALL {
            assert_eq!(MacvlanMode::parse(mode.as_str()), Some(mode));
        }
        // Not "" nor "passthrough": one spelling per mode, the one `ip link` prints.
        for bad in ["", "passthrough", "Bridge", "sideways"] {
            assert_eq!(MacvlanMode::parse(bad), None, "{bad}");
        }
    }
}
