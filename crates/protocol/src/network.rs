//! The network helper's service (one helper per network).
//!
//! Seed 001's vocabulary: an **attachment** is a container's request to join a network;
//! the network helper answers it with an **allocation** (addresses, gateway, routes,
//! MAC, MTU, DNS and the plugin's own data), which the sandbox realises as an
//! **interface** through the strategy of the allocation's plugin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::helper::HelperInfo;

pub const SERVICE: &str = "network-helper";

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

/// What the sandbox's interface strategy needs beyond addresses, per plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PluginData {
    /// A veth pair whose host end joins `bridge`.
    Bridge { bridge: String },
    /// A macvlan on host link `parent` in `mode` (bridge, private, vepa, passthru).
    Macvlan { parent: String, mode: String },
    /// Loopback only.
    None,
    /// The CNI plugins already built the interface; `result` is the CNI result JSON.
    Cni { result: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub network: String,
    /// The plugin that made the network: the sandbox picks its interface strategy by it.
    pub plugin: String,
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
    pub plugin: String,
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
